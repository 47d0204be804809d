"""covid-chestxray-dataset (Cohen et al., "COVID-19 image data collection: prospective
predictions are the future", MELBA 2020; the paper's "C19-Cohen").

Expected layout (ROOT = the repository's top folder)::

    ROOT/metadata.csv
    ROOT/images/<filename>     (or the folder named in metadata.csv's ``folder`` column)

Task (the paper's): COVID-19 (positive) vs other pneumonia, X-ray modality, frontal
views only (PA, AP, AP Supine, AP erect). A ``finding`` counts as COVID-19 when it
names COVID-19, in the early flat spelling (``COVID-19``, ``COVID-19, ARDS``) or the
later hierarchical one (``Pneumonia/Viral/COVID-19``). It counts as other pneumonia
when it is hierarchical under ``Pneumonia/`` or one of the early flat names of a
pneumonia's cause (SARS, Streptococcus, Pneumocystis, ...). Everything else (No
Finding, ARDS alone, Tuberculosis, todo, Unknown) is outside the task; the notes
count what was left out and why. ``patientid`` is kept, as are finding, view and
offset (days since symptoms).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path, PurePosixPath

from cxrssl.data.adapters.common import IndexOptions, IndexResult, column, finish, read_table, require_file, safe_relative
from cxrssl.data.manifest import ManifestRow

LAYOUT = "the covid-chestxray-dataset folder with metadata.csv and images/"
FRONTAL_VIEWS = {"pa", "ap", "ap supine", "ap erect"}
COVID, OTHER = "COVID-19", "Other pneumonia"
# Early (flat) spellings of a pneumonia's cause in metadata.csv, before the
# hierarchical "Pneumonia/<kind>/<cause>" labels.
FLAT_PNEUMONIA_CAUSES = {
    "pneumonia",
    "sars",
    "mers",
    "mers-cov",
    "streptococcus",
    "pneumocystis",
    "klebsiella",
    "legionella",
    "chlamydophila",
    "e.coli",
    "mycoplasma bacterial pneumonia",
    "mycoplasma",
    "influenza",
    "h1n1",
    "varicella",
    "herpes pneumonia",
    "lipoid",
    "aspergillosis",
    "nocardia",
    "staphylococcus",
    "mrsa",
    "bacterial",
    "viral",
    "fungal",
    "aspiration",
}


def task_label(finding: str) -> str | None:
    """COVID-19, Other pneumonia, or None when the finding is outside the task."""
    text = finding.strip().lower()
    if "covid-19" in text or "covid19" in text:
        return COVID
    if text.startswith("pneumonia/") or text in FLAT_PNEUMONIA_CAUSES:
        return OTHER
    return None


def index_cohen(root: Path, options: IndexOptions) -> IndexResult:
    metadata = require_file(root, ("metadata.csv",), LAYOUT)
    header, records = read_table(metadata)
    patient_col, finding_col, view_col, file_col = (column(header, metadata, name) for name in ("patientid", "finding", "view", "filename"))
    modality_col = column(header, metadata, "modality") if "modality" in {h.lower() for h in header} else None
    folder_col = column(header, metadata, "folder") if "folder" in {h.lower() for h in header} else None
    rows, skipped, left_out = [], [], Counter()
    for record in records:
        if modality_col and record[modality_col].strip().lower() != "x-ray":
            left_out["not X-ray (CT)"] += 1
            continue
        if record[view_col].strip().lower() not in FRONTAL_VIEWS:
            left_out["not a frontal view"] += 1
            continue
        label = task_label(record[finding_col])
        if label is None:
            left_out[f"finding {record[finding_col].strip() or '(empty)'!r}"] += 1
            continue
        folder = (record[folder_col].strip() if folder_col else "") or "images"
        listed = str(PurePosixPath(folder, record[file_col].strip()))
        relative = safe_relative(listed)
        if relative is None:
            skipped.append((listed, "path in metadata.csv leaves the dataset root"))
            continue
        extra = {"finding": record[finding_col].strip(), "view": record[view_col].strip(), "offset": record.get("offset", "").strip()}
        rows.append(ManifestRow(relative, record[patient_col].strip(), label, "", extra))
    notes = [f"task: {COVID} vs {OTHER}, X-ray, frontal views (PA, AP, AP Supine, AP erect)"]
    notes += [f"left out {count} row(s): {reason}" for reason, count in left_out.most_common()]
    return finish(root, rows, skipped, notes, metadata.name)
