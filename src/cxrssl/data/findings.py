"""Findings: multi-label labels carried by a manifest's extra columns.

Two forms, one per manifest:

- NIH form: one column ``findings`` holding the image's finding names joined by ``|``
  (``Infiltration|Pneumonia``), as NIH ChestX-ray14's ``Finding Labels``. ``No Finding``
  (or ``No Findings``, any case) or an empty cell means none of them. Every finding is
  labelled on every row: an image is negative for each finding it does not name. The
  vocabulary is the sorted union of the names over all rows.
- Per-finding form: one column ``finding:<Name>`` per finding (``finding:Pleural Effusion``),
  ``1`` positive, ``0`` negative, empty = not labelled (``1.0`` / ``0.0`` are accepted).
  The vocabulary is those columns in header order. This is what ``cxrssl index chexpert``
  writes, after applying its uncertainty policy.

The ``label`` column is then optional. Rows keep these columns in ``ManifestRow.extra``,
so ``write_manifest`` writes them back unchanged. ``read_manifest`` validates them
(:func:`parse_findings_form`); :func:`finding_labels` gives the matrix.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cxrssl.errors import ManifestError

if TYPE_CHECKING:  # no run-time import: manifest.py imports this module
    from cxrssl.data.manifest import Manifest

FINDINGS_COLUMN = "findings"
FINDING_PREFIX = "finding:"
NO_FINDING_NAMES = ("no finding", "no findings")  # compared lower-cased
POSITIVE_VALUES = ("1", "1.0")
NEGATIVE_VALUES = ("0", "0.0")
NIH_FORM, PER_FINDING_FORM = "nih", "per-finding"
FIRST_LINE = 2  # line 1 of a manifest is its header


@dataclass(frozen=True, eq=False)
class FindingLabels:
    """One row per manifest row, one column per finding: 1.0 positive, 0.0 negative, nan not labelled."""

    names: tuple[str, ...]
    values: np.ndarray  # float32 (n_rows, len(names))

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float32)
        if values.ndim != 2 or values.shape[1] != len(self.names):
            raise ValueError(f"values must be (n_rows, {len(self.names)}), not {values.shape}")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"finding names must be unique: {self.names}")
        known = np.isnan(values) | (values == 0.0) | (values == 1.0)
        if not known.all():
            raise ValueError("finding values must be 1.0, 0.0 or nan")
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "values", values)

    def __len__(self) -> int:
        return self.values.shape[0]

    def __eq__(self, other) -> bool:
        if not isinstance(other, FindingLabels):
            return NotImplemented
        return self.names == other.names and np.array_equal(self.values, other.values, equal_nan=True)

    def select(self, rows) -> FindingLabels:
        """The labels of ``rows`` (an index array or a boolean mask), in that order."""
        rows = np.asarray(rows)
        if rows.dtype != bool:
            rows = rows.astype(np.int64, copy=False).reshape(-1)
        return FindingLabels(self.names, self.values[rows])

    def subset(self, names: str | Iterable[str]) -> FindingLabels:
        """Only the findings ``names``, in that order."""
        names = (names,) if isinstance(names, str) else tuple(dict.fromkeys(names))  # a name given twice is kept once
        unknown = [name for name in names if name not in self.names]
        if unknown:
            raise ManifestError(
                f"unknown finding {', '.join(repr(name) for name in unknown)}; the manifest has "
                f"{', '.join(self.names) if self.names else 'no findings'}"
            )
        columns = [self.names.index(name) for name in names]
        return FindingLabels(names, self.values[:, columns])

    def column(self, name: str) -> np.ndarray:
        """One finding's values (1.0 / 0.0 / nan), one per row."""
        return self.subset((name,)).values[:, 0]

    def labelled_rows(self) -> np.ndarray:
        """Indices of the rows with at least one labelled entry."""
        return np.flatnonzero(~np.isnan(self.values).all(axis=1))

    def counts(self, patient_keys: Sequence[str]) -> list[dict]:
        """Per finding: positive / negative / unlabelled images and patients.

        A patient is positive for a finding if any of their images is, negative if at
        least one of their images is labelled and none is positive, else unlabelled.
        """
        if len(patient_keys) != len(self):
            raise ValueError(f"one patient key per row is needed ({len(patient_keys)} for {len(self)} rows)")
        patients, inverse = np.unique(np.asarray(list(patient_keys), dtype=object).astype(str), return_inverse=True)
        result = []
        for j, name in enumerate(self.names):
            column = self.values[:, j]
            positive, negative = column == 1.0, column == 0.0
            labelled = positive | negative
            patient_positive = np.bincount(inverse, weights=positive, minlength=len(patients)) > 0
            patient_labelled = np.bincount(inverse, weights=labelled, minlength=len(patients)) > 0
            result.append(
                {
                    "finding": name,
                    "positive_images": int(positive.sum()),
                    "negative_images": int(negative.sum()),
                    "unlabelled_images": int((~labelled).sum()),
                    "positive_patients": int(patient_positive.sum()),
                    "negative_patients": int((patient_labelled & ~patient_positive).sum()),
                    "unlabelled_patients": int((~patient_labelled).sum()),
                }
            )
        return result


def is_finding_column(column: str) -> bool:
    return column == FINDINGS_COLUMN or column.startswith(FINDING_PREFIX)


def findings_form(columns: Iterable[str], name: str) -> str | None:
    """``"nih"``, ``"per-finding"`` or None for the manifest's ``columns``; both forms: ManifestError."""
    columns = list(columns)
    nih = FINDINGS_COLUMN in columns
    per_finding = any(column.startswith(FINDING_PREFIX) for column in columns)
    if nih and per_finding:
        raise ManifestError(
            f"{name}: has both a {FINDINGS_COLUMN!r} column and {FINDING_PREFIX}<Name> columns; keep one form: "
            f"either {FINDINGS_COLUMN} (names joined by |, 'No Finding' for none) or one {FINDING_PREFIX}<Name> column per finding (1, 0 or empty)"
        )
    return NIH_FORM if nih else PER_FINDING_FORM if per_finding else None


def parse_findings_form(columns: Iterable[str], extras: Sequence[Mapping[str, str]], name: str) -> FindingLabels | None:
    """Validate and parse the findings columns of a table.

    ``columns``: the table's column names in header order; ``extras``: each row's
    values by column (stripped); ``name``: the file, for messages. Row ``i`` is reported
    as line ``i + 2`` (line 1 is the header). None when the table has no findings columns.
    """
    columns = list(columns)
    form = findings_form(columns, name)
    if form is None:
        return None
    if form == NIH_FORM:
        return _parse_nih_form(extras, name)
    return _parse_per_finding_form([c for c in columns if c.startswith(FINDING_PREFIX)], extras, name)


def finding_labels(manifest: Manifest) -> FindingLabels | None:
    """The manifest's findings, one row per manifest row; None when it carries none."""
    columns = dict.fromkeys(key for row in manifest.rows for key in row.extra)
    return parse_findings_form(columns, [row.extra for row in manifest.rows], manifest.name)


def per_finding_columns(names: Sequence[str], values_row: Sequence[float | None]) -> dict[str, str]:
    """``{"finding:<Name>": "1" | "0" | ""}`` for one image: what adapters put into ``ManifestRow.extra``."""
    if len(names) != len(values_row):
        raise ValueError(f"{len(names)} names but {len(values_row)} values")
    columns = {}
    for finding, value in zip(names, values_row):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            text = ""
        elif value == 1:
            text = "1"
        elif value == 0:
            text = "0"
        else:
            raise ValueError(f"finding {finding!r}: value {value!r} is not 1, 0 or nan")
        columns[FINDING_PREFIX + finding] = text
    return columns


def is_no_finding(name: str) -> bool:
    return name.strip().lower() in NO_FINDING_NAMES


def split_findings(text: str) -> set[str]:
    """The finding names of one NIH-form cell (``No Finding`` and empty parts dropped)."""
    return {part.strip() for part in text.split("|") if part.strip() and not is_no_finding(part)}


def _parse_nih_form(extras: Sequence[Mapping[str, str]], name: str) -> FindingLabels:
    per_row = []
    for line, extra in enumerate(extras, start=FIRST_LINE):
        text = (extra.get(FINDINGS_COLUMN) or "").strip()
        parts = [part.strip() for part in text.split("|") if part.strip()]
        found = {part for part in parts if not is_no_finding(part)}
        if any("," in part for part in found):
            raise ManifestError(
                f"{name}: line {line} has {FINDINGS_COLUMN} {text!r}: findings are joined by '|', not ','; write e.g. 'Edema|Effusion'"
            )
        if found and any(is_no_finding(part) for part in parts):
            raise ManifestError(
                f"{name}: line {line} has {FINDINGS_COLUMN} {text!r}: 'No Finding' together with a finding; "
                f"keep only the findings, or only 'No Finding' if the image has none"
            )
        per_row.append(found)
    names = tuple(sorted(set().union(*per_row)))
    index = {finding: j for j, finding in enumerate(names)}
    values = np.zeros((len(per_row), len(names)), np.float32)
    for i, found in enumerate(per_row):
        values[i, [index[finding] for finding in found]] = 1.0
    return FindingLabels(names, values)


def _parse_per_finding_form(columns: list[str], extras: Sequence[Mapping[str, str]], name: str) -> FindingLabels:
    names = [column[len(FINDING_PREFIX) :].strip() for column in columns]
    for column, finding in zip(columns, names):
        if not finding:
            raise ManifestError(f"{name}: column {column!r} names no finding; call it {FINDING_PREFIX}<Name>, e.g. {FINDING_PREFIX}Edema")
        if "|" in finding or "," in finding:  # '|' joins findings (NIH form, predict), ',' separates them in --findings
            raise ManifestError(
                f"{name}: column {column!r}: a finding's name may not hold '|' or ','; rename it, e.g. {FINDING_PREFIX}{finding.replace('|', '_').replace(',', '_')}"
            )
    if len(set(names)) != len(names):
        twice = next(finding for finding in names if names.count(finding) > 1)
        raise ManifestError(f"{name}: finding {twice!r} has two {FINDING_PREFIX} columns; keep one")
    values = np.full((len(extras), len(columns)), np.nan, np.float32)
    for i, extra in enumerate(extras):
        for j, column in enumerate(columns):
            text = (extra.get(column) or "").strip()
            if text in POSITIVE_VALUES:
                values[i, j] = 1.0
            elif text in NEGATIVE_VALUES:
                values[i, j] = 0.0
            elif text:
                hint = " (map CheXpert's -1 'uncertain' with `cxrssl index chexpert --uncertain`)" if text in ("-1", "-1.0") else ""
                raise ManifestError(
                    f"{name}: line {i + FIRST_LINE}, column {column!r} has {text!r}; "
                    f"use 1 (positive), 0 (negative) or leave it empty (not labelled){hint}"
                )
    return FindingLabels(tuple(names), values)
