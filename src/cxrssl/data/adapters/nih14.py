"""NIH ChestX-ray14 (Wang et al., "ChestX-ray8: hospital-scale chest X-ray database and
benchmarks...", CVPR 2017).

Expected layout (ROOT = the dataset's top folder)::

    ROOT/Data_Entry_2017.csv   (or Data_Entry_2017_v2020.csv)
    ROOT/train_val_list.txt  ROOT/test_list.txt   (optional: the official split)
    ROOT/images/*.png   or   ROOT/images_001/images/*.png ... images_012/images/*.png

Images are found by name anywhere below ROOT, so either download layout works, and
a partial download is indexed with the missing images listed. Patient id =
``Patient ID``; ``view`` (PA/AP), ``age``, ``sex`` and ``follow_up`` are kept.

``--task pneumonia`` (default, the paper's): positives are the images whose Finding
Labels include Pneumonia (alone or with other findings). Negatives are an equal
number of images labelled exactly 'No Finding' from patients with no Pneumonia image
at all. They are matched reproducibly by ``--seed``: the eligible patients are
shuffled, then one image per patient is taken in that order (a patient's images in
a seeded order too), round after round, until the counts are equal, so the negatives
spread over as many patients as possible. Only images present on disk take part.
``--task all``: every image, unlabelled (a pretext pool).
``--task findings``: every image, ``label`` empty, its findings in the ``findings``
column (NIH form: the Finding Labels, sorted and ``|``-joined; 'No Finding' = negative
for each of the 14 findings; see :mod:`cxrssl.data.findings`), for per-finding
evaluation; the notes give the images and patients per finding.

Every task keeps the ``findings`` column and the official split (``train`` for
train_val_list.txt, ``test`` for test_list.txt; empty when the lists are absent). A
row whose Finding Labels join 'No Finding' with a finding contradicts itself: it is
skipped and listed (the real release has none).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from cxrssl.data.adapters.common import IndexOptions, IndexResult, LayoutError, column, finish, read_table, require_file
from cxrssl.data.findings import finding_labels, is_no_finding, split_findings
from cxrssl.data.manifest import ManifestRow

LAYOUT = "ChestX-ray14's folder with Data_Entry_2017.csv and its images/ (or images_001/images/ ...) folders"
ENTRY_FILES = ("Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv")
POSITIVE, NEGATIVE = "Pneumonia", "No Finding"
TASKS = ("pneumonia", "all", "findings")
DEFAULT_TASK = "pneumonia"


def index_nih14(root: Path, options: IndexOptions) -> IndexResult:
    entry = require_file(root, ENTRY_FILES, LAYOUT)
    task = options.task_or(DEFAULT_TASK)
    if options.uncertain is not None:
        raise LayoutError(f"--uncertain {options.uncertain}: NIH ChestX-ray14 has no uncertain labels (the flag is CheXpert's); drop it")
    if task not in TASKS:
        raise LayoutError(
            f"--task {task!r}: use pneumonia (the paper's task), all (every image, unlabelled) or findings (every image, its 14 findings)"
        )
    header, records = read_table(entry)
    name_col, findings_col, patient_col = (column(header, entry, name) for name in ("Image Index", "Finding Labels", "Patient ID"))
    on_disk = {path.name: path for path in root.rglob("*.png")}
    split_of = _official_split(root)
    rows, skipped = {}, []
    for record in records:
        name = record[name_col].strip()
        if name not in on_disk:
            skipped.append((name, f"listed in {entry.name} but not found under {root}"))
            continue
        findings = {finding.strip() for finding in record[findings_col].split("|") if finding.strip()}
        if any(is_no_finding(finding) for finding in findings) and split_findings(record[findings_col]):
            skipped.append((name, f"Finding Labels {record[findings_col].strip()!r} in {entry.name} join 'No Finding' with a finding"))
            continue
        extra = {
            "view": record.get("View Position", "").strip(),
            "age": record.get("Patient Age", "").strip(),
            "sex": record.get("Patient Gender", "").strip(),
            "follow_up": record.get("Follow-up #", "").strip(),
            "findings": "|".join(sorted(findings)),
        }
        if split_of.get(name) == IN_BOTH_LISTS:
            skipped.append((name, "listed in both train_val_list.txt and test_list.txt: no split to put it in"))
            continue
        relative = on_disk[name].relative_to(root).as_posix()
        rows[name] = ManifestRow(relative, record[patient_col].strip(), "", split_of.get(name, ""), extra)
    notes = ["official split from train_val_list.txt / test_list.txt" if split_of else "no official split lists found: split left empty"]
    if task == "all":
        chosen = list(rows.values())
        notes.append("task all: every image, unlabelled")
    elif task == "findings":
        chosen = list(rows.values())
        notes.append("task findings: every image, label empty, its Finding Labels in the findings column ('No Finding' = negative for all)")
    else:
        chosen, rule = _pneumonia_task(list(rows.values()), options.seed)
        notes.append(rule)
    result = finish(root, chosen, skipped, notes, entry.name)
    if task == "findings":
        result.notes += finding_notes(result)
    return result


def finding_notes(result: IndexResult) -> list[str]:
    """One line per finding: its positive images and patients (every other image is a negative)."""
    labels = finding_labels(result.manifest)
    if labels is None or not labels.names:
        return ["no finding is named: every image is 'No Finding'"]
    counts = labels.counts(result.manifest.patient_keys)
    width = max(len(entry["finding"]) for entry in counts)
    return [f"{entry['finding']:<{width}}  {entry['positive_images']} images / {entry['positive_patients']} patients positive" for entry in counts]


IN_BOTH_LISTS = "in both lists"


def _official_split(root: Path) -> dict[str, str]:
    """Image name -> train or test, from the official lists; ``IN_BOTH_LISTS`` for a name that both hold."""
    split_of: dict[str, str] = {}
    for name, split in (("train_val_list.txt", "train"), ("test_list.txt", "test")):
        if (root / name).is_file():
            for line in (root / name).read_text().splitlines():
                if line.strip():
                    split_of[line.strip()] = IN_BOTH_LISTS if split_of.get(line.strip(), split) != split else split
    return split_of


def _pneumonia_task(rows: list[ManifestRow], seed: int) -> tuple[list[ManifestRow], str]:
    findings = [set(row.extra["findings"].split("|")) for row in rows]
    positives = [row for row, found in zip(rows, findings) if POSITIVE in found]
    sick_patients = {row.patient_id for row in positives}
    healthy_by_patient = defaultdict(list)
    for row, found in zip(rows, findings):
        if found == {NEGATIVE} and row.patient_id not in sick_patients:
            healthy_by_patient[row.patient_id].append(row)
    negatives = match_negatives(healthy_by_patient, len(positives), seed)
    rule = (
        f"task pneumonia: {len(positives)} images with Pneumonia among their findings vs {len(negatives)} 'No Finding' images "
        f"of {len({row.patient_id for row in negatives})} patients without any Pneumonia image, matched with seed {seed}"
    )
    labelled = [replace(row, label=POSITIVE) for row in positives] + [replace(row, label=NEGATIVE) for row in negatives]
    return sorted(labelled, key=lambda row: row.path), rule


def match_negatives(images_by_patient: dict[str, list], count: int, seed: int) -> list:
    """``count`` images, one per patient per round over a seeded patient order (see the module docstring)."""
    rng = np.random.default_rng([seed, 14])
    patients = sorted(images_by_patient)
    order = [patients[i] for i in rng.permutation(len(patients))]
    queues = {}
    for patient in order:
        images = sorted(images_by_patient[patient], key=lambda r: r.path)
        queues[patient] = [images[i] for i in rng.permutation(len(images))]
    chosen = []
    while len(chosen) < count and any(queues.values()):
        for patient in order:
            if queues[patient] and len(chosen) < count:
                chosen.append(queues[patient].pop(0))
    return chosen
