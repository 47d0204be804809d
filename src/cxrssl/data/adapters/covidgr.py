"""COVIDGR-1.0 (Tabik et al., "COVIDGR dataset and COVID-SDNet methodology for
predicting COVID-19 based on chest X-ray images", IEEE JBHI 2020).

Expected layout (ROOT = the dataset folder)::

    ROOT/P/*.jpg   COVID-19 positive (RT-PCR confirmed)
    ROOT/N/*.jpg   negative
    ROOT/<any>.csv optional severity table

Task (the paper's): COVID-19 (positive) vs Normal. Each patient contributed one
image, so the file is the patient: patient id = ``P/<stem>`` or ``N/<stem>``.
A severity table beside the folders, if present, is a CSV with a column naming the
image (``name``, ``image``, ``file`` or ``filename``, with or without extension)
and a ``severity`` (or ``level``) column; its grades (Normal-PCR+, Mild, Moderate,
Severe) go into a ``severity`` column.
"""

from __future__ import annotations

from pathlib import Path

from cxrssl.data.adapters.common import IndexOptions, IndexResult, LayoutError, find_images, finish, read_table, require_folder
from cxrssl.data.manifest import ManifestRow

LAYOUT = "COVIDGR-1.0's folder with P/ (COVID-19 positive) and N/ (negative) image folders"
CLASSES = (("P", "COVID-19"), ("N", "Normal"))
IMAGE_COLUMNS = ("name", "image", "file", "filename", "image_name", "imagename")
SEVERITY_COLUMNS = ("severity", "level", "grade")


def index_covidgr(root: Path, options: IndexOptions) -> IndexResult:
    require_folder(root, LAYOUT)
    if not all((root / folder).is_dir() for folder, _ in CLASSES):
        raise LayoutError(f"{root}: no P/ and N/ folders found; expected {LAYOUT}")
    severity, notes = _severity_table(root)
    rows = []
    for folder, label in CLASSES:
        for image in find_images(root / folder):
            patient = f"{folder}/{image.stem}"
            extra = {"severity": severity.get(image.stem.lower(), "")} if severity else {}
            rows.append(ManifestRow(image.relative_to(root).as_posix(), patient, label, "", extra))
    notes.insert(0, "task: COVID-19 (P/) vs Normal (N/); one image per patient")
    return finish(root, rows, [], notes, "P/ and N/")


def _severity_table(root: Path) -> tuple[dict[str, str], list[str]]:
    for table in sorted(root.glob("*.csv")):
        header, records = read_table(table)
        lowered = {name.lower(): name for name in header}
        image_col = next((lowered[name] for name in IMAGE_COLUMNS if name in lowered), None)
        severity_col = next((lowered[name] for name in SEVERITY_COLUMNS if name in lowered), None)
        if image_col and severity_col:
            grades = {Path(r[image_col].strip()).stem.lower(): r[severity_col].strip() for r in records if r[image_col].strip()}
            return grades, [f"severity grades from {table.name} ({len(grades)} images)"]
    return {}, []
