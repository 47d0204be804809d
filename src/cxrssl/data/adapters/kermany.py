"""Kermany et al., "Identifying medical diagnoses and treatable diseases by image-based
deep learning", Cell 2018 (the paper's "Cell" set): paediatric pneumonia vs normal.

Expected layout (ROOT = ``chest_xray/`` or the folder that holds it)::

    ROOT/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg

The official split is kept in ``split``. Patient ids come from the file names:

- ``person<P>_bacteria_<I>.jpeg`` / ``person<P>_virus_<I>[_<k>].jpeg`` -> ``person<P>``
  (the pathogen is kept in a ``pathogen`` column);
- ``IM-<P>-<S>[-<k>].jpeg`` -> ``IM-<P>``; ``NORMAL2-IM-<P>-<S>[-<k>].jpeg`` ->
  ``NORMAL2-IM-<P>`` (a second batch with its own numbering).

A name matching neither pattern gets an empty patient id (it is its own patient) and
is counted in the notes. Paper task: PNEUMONIA (positive) vs NORMAL.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from cxrssl.data.adapters.common import IndexOptions, IndexResult, LayoutError, find_images, finish, require_folder
from cxrssl.data.manifest import ManifestRow

LAYOUT = "chest_xray/ with {train,val,test}/{NORMAL,PNEUMONIA}/ image folders"
SPLITS = {"train": "train", "val": "val", "test": "test"}
CLASSES = ("NORMAL", "PNEUMONIA")
PNEUMONIA_NAME = re.compile(r"^(person\d+)_(bacteria|virus)_\d+(?:_\d+)?$", re.IGNORECASE)
NORMAL_NAME = re.compile(r"^((?:NORMAL2-)?IM-\d+)-\d+(?:-\d+)?$", re.IGNORECASE)


def parse_patient(label: str, stem: str) -> tuple[str, str]:
    """(patient id, pathogen) from a Kermany file name; ('', '') when it does not parse."""
    if label == "PNEUMONIA":
        match = PNEUMONIA_NAME.match(stem)
        return (match.group(1), match.group(2).lower()) if match else ("", "")
    match = NORMAL_NAME.match(stem)
    return (match.group(1), "") if match else ("", "")


def index_kermany(root: Path, options: IndexOptions) -> IndexResult:
    require_folder(root, LAYOUT)
    if (root / "chest_xray").is_dir() and not any((root / split).is_dir() for split in SPLITS):
        root = root / "chest_xray"
    folders = [(root / split / label, SPLITS[split], label) for split in SPLITS for label in CLASSES if (root / split / label).is_dir()]
    if not folders:
        raise LayoutError(f"{root}: no train/NORMAL, train/PNEUMONIA, test/... folders; expected {LAYOUT}")
    rows, unparsed = [], 0
    for folder, split, label in folders:
        for image in find_images(folder):
            patient, pathogen = parse_patient(label, image.stem)
            unparsed += not patient
            extra = {"pathogen": pathogen} if label == "PNEUMONIA" else {}
            rows.append(ManifestRow(image.relative_to(root).as_posix(), patient, label, split, extra))
    notes = ["official train/val/test split kept"]
    if unparsed:
        notes.append(f"{unparsed} file name(s) did not match Kermany's naming; each is treated as its own patient")
    notes += _split_crossings(rows)
    return finish(root, rows, [], notes, "the class folders")


def _split_crossings(rows: list[ManifestRow]) -> list[str]:
    splits_of = defaultdict(set)
    for row in rows:
        if row.patient_id:
            splits_of[row.patient_id].add(row.split)
    crossing = sorted(patient for patient, splits in splits_of.items() if len(splits) > 1)
    if not crossing:
        return []
    return [
        f"{len(crossing)} patient(s) appear in two official splits (e.g. {', '.join(crossing[:3])}); the probe refuses such a split: "
        f"drop the split column and run `cxrssl split` for a patient-level one"
    ]
