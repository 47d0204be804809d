"""CheXpert (Irvin et al., "CheXpert: a large chest radiograph dataset with uncertainty
labels and expert comparison", AAAI 2019): the paper's unlabelled pretext pool, or its
14 observations as findings.

Expected layout (ROOT = the folder holding the CSVs, e.g. ``CheXpert-v1.0-small/``)::

    ROOT/train.csv   ROOT/valid.csv   (either or both)
    ROOT/train/patient00001/study1/view1_frontal.jpg
    ROOT/valid/patient64541/study1/view1_frontal.jpg

The CSVs' header is ``Path,Sex,Age,Frontal/Lateral,AP/PA`` then the 14 observations
(No Finding, Enlarged Cardiomediastinum, Cardiomegaly, Lung Opacity, Lung Lesion, Edema,
Consolidation, Pneumonia, Atelectasis, Pneumothorax, Pleural Effusion, Pleural Other,
Fracture, Support Devices), each ``1.0`` (positive), ``0.0`` (negative), ``-1.0``
(uncertain) or blank (not mentioned in the report). The ``Path`` column repeats the
dataset folder's own name (``CheXpert-v1.0-small/train/patient00001/...``); that first
component is dropped, so a renamed ROOT still works. Patient id = the ``patientNNNNN``
path component. Frontal films only by default (``--views``); the CSV's Sex, Age and
AP/PA are kept as columns.

``--task pool`` (default): labels left empty because the pretext task ignores them;
``split`` is ``train`` for train.csv and ``val`` for valid.csv.

``--task competition``: the five competition findings (Atelectasis, Cardiomegaly,
Consolidation, Edema, Pleural Effusion); ``--task all-findings``: the 14 observations,
in header order. Each becomes a ``finding:<Name>`` column (1 / 0 / empty = not
labelled; see :mod:`cxrssl.data.findings`) and ``label`` is left empty. A blank cell is
a negative, as in the paper. An uncertain (-1) cell follows ``--uncertain``, the
paper's policies: ``ignore`` (U-Ignore, default: not labelled), ``ones`` (U-Ones: 1)
or ``zeros`` (U-Zeros: 0). train.csv rows are ``train`` and valid.csv rows (the
radiologists' consensus, 0/1 only) ``test``. A header lacking one of the task's
columns is an error; a row with another value in one of them is skipped and listed.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path, PurePosixPath

from cxrssl.data.adapters.common import IndexOptions, IndexResult, LayoutError, column, finish, read_table, require_folder, safe_relative
from cxrssl.data.findings import finding_labels, per_finding_columns
from cxrssl.data.manifest import ManifestRow

LAYOUT = "CheXpert's folder holding train.csv and/or valid.csv and the train/ and valid/ image folders"
CSV_FILES = ("train.csv", "valid.csv")
POOL_SPLITS = {"train.csv": "train", "valid.csv": "val"}
LABELLED_SPLITS = {"train.csv": "train", "valid.csv": "test"}  # valid.csv is the test split
PATIENT = re.compile(r"^patient\d+$")
STUDY = re.compile(r"^study\d+$")
DATASET_PARTS = ("train", "valid", "test")

OBSERVATIONS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
COMPETITION = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
TASK_FINDINGS = {"pool": (), "competition": COMPETITION, "all-findings": OBSERVATIONS}
DEFAULT_TASK = "pool"
UNCERTAIN_POLICIES = {"ignore": math.nan, "ones": 1.0, "zeros": 0.0}  # Irvin et al.: U-Ignore, U-Ones, U-Zeros
POLICY_WORDS = {"ignore": "not labelled (U-Ignore)", "ones": "positive (U-Ones)", "zeros": "negative (U-Zeros)"}
CELL_VALUES = {"1.0": 1.0, "1": 1.0, "0.0": 0.0, "0": 0.0, "": 0.0}  # blank = not mentioned = negative
UNCERTAIN_CELLS = ("-1.0", "-1")


def index_chexpert(root: Path, options: IndexOptions) -> IndexResult:
    require_folder(root, LAYOUT)
    task = options.task_or(DEFAULT_TASK)
    if task not in TASK_FINDINGS:
        raise LayoutError(
            f"--task {task!r}: use pool (unlabelled, the default), competition (the five competition findings) or all-findings (the 14 observations)"
        )
    if options.views not in ("frontal", "lateral", "all"):
        raise LayoutError(f"--views {options.views!r}: use frontal, lateral or all")
    findings = TASK_FINDINGS[task]
    if options.uncertain is not None and not findings:
        raise LayoutError(f"--uncertain {options.uncertain}: the pool task has no labels; use it with --task competition or all-findings")
    options = replace(options, uncertain=options.uncertain or "ignore")
    if options.uncertain not in UNCERTAIN_POLICIES:
        raise LayoutError(f"--uncertain {options.uncertain!r}: use ignore (-1 = not labelled), ones (-1 = 1) or zeros (-1 = 0)")
    splits = LABELLED_SPLITS if findings else POOL_SPLITS
    tables = [(root / name, splits[name]) for name in CSV_FILES if (root / name).is_file()]
    if not tables:
        raise LayoutError(f"{root}: no train.csv or valid.csv found; expected {LAYOUT}")
    rows, skipped = [], []
    for table, split in tables:
        header, records = read_table(table)
        path_column, view_column = column(header, table, "Path"), column(header, table, "Frontal/Lateral")
        finding_columns = [column(header, table, name) for name in findings]
        for record in records:
            listed = (record[path_column] or "").strip()
            if options.views != "all" and (record[view_column] or "").strip().lower() != options.views:
                continue
            parts = PurePosixPath(listed).parts
            relative = safe_relative(str(PurePosixPath(*parts[1:])) if parts and parts[0] not in DATASET_PARTS else listed)
            if relative is None:
                skipped.append((listed, f"path in {table.name} leaves the dataset root"))
                continue
            patient = next((part for part in PurePosixPath(relative).parts if PATIENT.match(part)), None)
            if patient is None:
                skipped.append((listed, f"no patientNNNNN component in the path in {table.name}"))
                continue
            extra = {"sex": record.get("Sex", ""), "age": record.get("Age", ""), "view": record.get("AP/PA", "")}
            extra = {k: (v or "").strip() for k, v in extra.items()}
            # The study (a visit: its frontal and lateral films), for ``positives: study`` in pretraining.
            study = next((part for part in PurePosixPath(relative).parts if STUDY.match(part)), "")
            extra["study_id"] = f"{patient}/{study}" if study else ""
            if findings:
                values, problem = _finding_values(record, finding_columns, options.uncertain)
                if problem:
                    skipped.append((listed, f"{problem} in {table.name}"))
                    continue
                extra.update(per_finding_columns(findings, values))
            rows.append(ManifestRow(relative, patient, "", split, extra))
    metadata = " and ".join(table.name for table, _ in tables)
    if not findings:
        return finish(root, rows, skipped, [f"views: {options.views}; labels left empty (pretext pool)"], metadata)
    notes = [
        f"views: {options.views}; task {task}: {len(findings)} findings as finding:<Name> columns ({', '.join(findings)}), label empty; "
        f"train.csv rows are train, valid.csv rows test",
        f"uncertain (-1) = {POLICY_WORDS[options.uncertain]} (--uncertain {options.uncertain}); blank (not mentioned) = negative",
    ]
    result = finish(root, rows, skipped, notes, metadata)
    result.notes += _count_notes(result)
    return result


def _finding_values(record: dict, columns: list[str], policy: str) -> tuple[list[float], str | None]:
    """The row's value per finding column under the uncertainty policy, or why the row cannot be used."""
    values = []
    for name in columns:
        cell = record.get(name)
        if cell is None:
            return [], "fewer fields than the header"
        cell = cell.strip()
        if cell in UNCERTAIN_CELLS:
            values.append(UNCERTAIN_POLICIES[policy])
        elif cell in CELL_VALUES:
            values.append(CELL_VALUES[cell])
        else:
            return [], f"{name} is {cell!r}, not 1.0, 0.0, -1.0 or blank"
    return values, None


def _count_notes(result: IndexResult) -> list[str]:
    counts = finding_labels(result.manifest).counts(result.manifest.patient_keys)
    width = max(len(entry["finding"]) for entry in counts)
    return [
        f"{entry['finding']:<{width}}  {entry['positive_images']} positive / {entry['negative_images']} negative / "
        f"{entry['unlabelled_images']} unlabelled images ({entry['positive_patients']} / {entry['negative_patients']} / "
        f"{entry['unlabelled_patients']} patients)"
        for entry in counts
    ]
