"""CheXpert (Irvin et al., "CheXpert: a large chest radiograph dataset with uncertainty
labels and expert comparison", AAAI 2019): the paper's unlabelled pretext pool.

Expected layout (ROOT = the folder holding the CSVs, e.g. ``CheXpert-v1.0-small/``)::

    ROOT/train.csv   ROOT/valid.csv   (either or both)
    ROOT/train/patient00001/study1/view1_frontal.jpg
    ROOT/valid/patient64541/study1/view1_frontal.jpg

The CSV's ``Path`` column repeats the dataset folder's own name
(``CheXpert-v1.0-small/train/patient00001/...``); that first component is dropped,
so a renamed ROOT still works. Patient id = the ``patientNNNNN`` path component.
Frontal films only by default (``--views``); labels are left empty because the
pretext task ignores them. ``split`` is ``train`` for train.csv and ``val`` for
valid.csv; the CSV's Sex, Age and AP/PA are kept as columns.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from cxrssl.data.manifest import ManifestRow
from cxrssl.data.sources.common import IndexOptions, IndexResult, SourceError, column, finish, read_table, require_folder, safe_relative

LAYOUT = "CheXpert's folder holding train.csv and/or valid.csv and the train/ and valid/ image folders"
CSV_SPLITS = (("train.csv", "train"), ("valid.csv", "val"))
PATIENT = re.compile(r"^patient\d+$")
DATASET_PARTS = ("train", "valid", "test")


def index_chexpert(root: Path, options: IndexOptions) -> IndexResult:
    require_folder(root, LAYOUT)
    if options.views not in ("frontal", "lateral", "all"):
        raise SourceError(f"--views {options.views!r}: use frontal, lateral or all")
    tables = [(root / name, split) for name, split in CSV_SPLITS if (root / name).is_file()]
    if not tables:
        raise SourceError(f"{root}: no train.csv or valid.csv found; expected {LAYOUT}")
    rows, skipped = [], []
    for table, split in tables:
        header, records = read_table(table)
        path_column, view_column = column(header, table, "Path"), column(header, table, "Frontal/Lateral")
        for record in records:
            listed = record[path_column].strip()
            if options.views != "all" and record[view_column].strip().lower() != options.views:
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
            rows.append(ManifestRow(relative, patient, "", split, {k: (v or "").strip() for k, v in extra.items()}))
    notes = [f"views: {options.views}; labels left empty (pretext pool)"]
    return finish(root, rows, skipped, notes, " and ".join(table.name for table, _ in tables))
