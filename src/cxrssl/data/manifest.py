"""The manifest: the one table every verb reads.

Columns (see DESIGN.md):

- ``path``: the image file, relative to the manifest's folder or absolute;
- ``patient_id``: who the image belongs to. Every split is made by patient. An empty
  value means "unknown patient": the image is then treated as its own patient;
- ``label``: the class name, empty when the image is unlabelled; optional when the
  manifest carries findings;
- ``split`` (optional): ``train``, ``val``, ``test`` or empty.

Findings (multi-label labels) are extra columns in one of two forms, a ``findings``
column of ``|``-joined names (NIH's) or one ``finding:<Name>`` column per finding with
1 / 0 / empty; see :mod:`cxrssl.data.findings`. They are validated when read.

Other columns (``source``, a severity grade, ...) are kept and written back unchanged.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from cxrssl.data.findings import FINDING_PREFIX, is_finding_column, parse_findings_form
from cxrssl.errors import ManifestError
from cxrssl.fileio import atomic_write_text, csv_text

REQUIRED_COLUMNS = ("path", "patient_id", "label")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ManifestRow:
    path: str
    patient_id: str = ""
    label: str = ""
    split: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def patient_key(self) -> str:
        """The patient id, or the image itself when the patient is unknown."""
        return self.patient_id if self.patient_id else f"image:{self.path}"


@dataclass
class Manifest:
    rows: list[ManifestRow]
    root: Path  # relative paths are resolved against this folder
    path: Path | None = None  # the file the rows were read from, for messages

    def __len__(self) -> int:
        return len(self.rows)

    def resolve(self, row: ManifestRow) -> Path:
        path = Path(row.path)
        return path if path.is_absolute() else self.root / path

    @property
    def files(self) -> list[Path]:
        return [self.resolve(row) for row in self.rows]

    @property
    def labels(self) -> list[str]:
        return [row.label for row in self.rows]

    @property
    def patient_keys(self) -> list[str]:
        return [row.patient_key for row in self.rows]

    @property
    def splits(self) -> list[str]:
        return [row.split for row in self.rows]

    @property
    def name(self) -> str:
        return str(self.path) if self.path else str(self.root)

    def select(self, indices) -> Manifest:
        return Manifest([self.rows[i] for i in indices], self.root, self.path)

    def with_splits(self, splits: list[str]) -> Manifest:
        if len(splits) != len(self.rows):
            raise ValueError("one split per row is needed")
        rows = [replace(row, split=split) for row, split in zip(self.rows, splits)]
        return Manifest(rows, self.root, self.path)

    def label_counts(self) -> Counter:
        return Counter(self.labels)


def read_manifest(path: str | os.PathLike, check_files: bool = True) -> Manifest:
    """Read and validate a manifest CSV; every problem is one clear ManifestError."""
    path = Path(path)
    if path.is_dir():
        raise ManifestError(f"{path}: is a folder, not a manifest CSV; pass the manifest file inside it (e.g. {path / 'labels.csv'})")
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file; make one with `cxrssl phantom` or write a CSV with columns path, patient_id, label")
    try:
        columns, records = _read_rows(path)
    except UnicodeDecodeError as error:
        raise ManifestError(
            f"{path}: is not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset {error.start}); save it as UTF-8, e.g. iconv -f latin1 -t utf-8"
        ) from None
    except csv.Error as error:
        raise ManifestError(f"{path}: is not a readable CSV ({error}); check that it is a comma-separated text table") from None
    manifest = Manifest(_parse_rows(records, path), root=path.parent, path=path)
    validate_manifest(manifest, check_files=check_files)
    parse_findings_form(columns, [row.extra for row in manifest.rows], str(path))  # findings errors name their line
    return manifest


def _read_rows(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [name.strip() for name in (reader.fieldnames or [])]
        twice = sorted({name for name in columns if columns.count(name) > 1 and name})
        if twice:
            raise ManifestError(
                f"{path}: column {', '.join(repr(name) for name in twice)} appears twice in the header; keep one (the reader would use only the last)"
            )
        missing = [name for name in REQUIRED_COLUMNS if name not in columns]
        if missing == ["label"] and any(is_finding_column(name) for name in columns):
            missing = []  # a manifest of findings needs no label column
        if missing:
            raise ManifestError(
                f"{path}: missing column {', '.join(repr(m) for m in missing)}; "
                f"a manifest needs the columns path, patient_id, label (and optionally split)"
            )
        reader.fieldnames = columns
        return columns, list(reader)


def _parse_rows(raw_rows: list[dict], path: Path) -> list[ManifestRow]:
    rows = []
    for line_number, raw in enumerate(raw_rows, start=2):  # line 1 is the header
        if None in raw:
            raise ManifestError(f"{path}: line {line_number} has more fields than the header; quote values that contain commas")
        values = {key: (value or "").strip() for key, value in raw.items()}
        split = values.pop("split", "").lower()
        rows.append(
            ManifestRow(
                path=values.pop("path"),
                patient_id=values.pop("patient_id"),
                label=values.pop("label", ""),
                split=split,
                extra=values,
            )
        )
    return rows


def validate_manifest(manifest: Manifest, check_files: bool = True) -> None:
    name = manifest.name
    if not manifest.rows:
        raise ManifestError(f"{name}: the manifest has no rows; list at least one image under the header")
    first_line: dict[str, int] = {}
    for line_number, row in enumerate(manifest.rows, start=2):
        if not row.path:
            raise ManifestError(f"{name}: line {line_number} has an empty path; give every row the image's file path")
        if row.split and row.split not in SPLITS:
            raise ManifestError(f"{name}: line {line_number} has split {row.split!r}; use one of train, val, test, or leave it empty")
        if row.path in first_line:
            raise ManifestError(
                f"{name}: image {row.path!r} is listed twice (lines {first_line[row.path]} and {line_number}); keep one row per image"
            )
        first_line[row.path] = line_number
    if check_files:
        missing = [(first_line[row.path], row.path) for row in manifest.rows if not manifest.resolve(row).is_file()]
        if missing:
            line_number, missing_path = missing[0]
            others = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise ManifestError(
                f"{name}: line {line_number} points at {missing_path!r}, which is not a file under {manifest.root}{others}; "
                f"fix the path (relative to the manifest's folder) or remove the row"
            )


def write_manifest(manifest: Manifest, path: str | os.PathLike) -> Path:
    """Write the manifest atomically.

    Relative paths are rewritten relative to the new file's folder, so a manifest
    written elsewhere (e.g. into a run folder) still points at the same images.
    """
    path = Path(path)
    keys = dict.fromkeys(key for row in manifest.rows for key in row.extra)  # first-seen order
    # other extras sorted, as always; finding:<Name> columns last, in their own order (the vocabulary's)
    extra_columns = sorted(key for key in keys if not key.startswith(FINDING_PREFIX)) + [key for key in keys if key.startswith(FINDING_PREFIX)]
    columns = ["path", "patient_id", "label", "split", *extra_columns]
    lines = []
    same_folder = manifest.root.resolve() == path.parent.resolve()
    for row in manifest.rows:
        image = row.path if same_folder or Path(row.path).is_absolute() else os.path.relpath(manifest.resolve(row), path.parent)
        lines.append([image, row.patient_id, row.label, row.split, *(row.extra.get(c, "") for c in extra_columns)])
    atomic_write_text(path, csv_text(columns, lines, for_spreadsheets=False))  # read back as written: no formula guard
    return path
