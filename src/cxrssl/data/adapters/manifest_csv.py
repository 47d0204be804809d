"""A ready manifest (columns path, patient_id, label[, split]), validated and re-rooted.

Rows whose path leaves the manifest's folder (absolute, or through ``..``) are listed as
skipped, like every adapter does with such rows: metadata is data, and must not make
the tool read outside the dataset.
"""

from __future__ import annotations

from pathlib import Path

from cxrssl.data.adapters.common import IndexOptions, IndexResult, safe_relative
from cxrssl.data.manifest import read_manifest, validate_manifest


def index_csv(root: Path, options: IndexOptions) -> IndexResult:
    manifest = read_manifest(root, check_files=False)
    inside = [index for index, row in enumerate(manifest.rows) if safe_relative(row.path) is not None]
    skipped = [(row.path, "leaves the manifest's folder (absolute or through ..)") for row in manifest.rows if safe_relative(row.path) is None]
    kept = manifest.select(inside)
    validate_manifest(kept)  # every remaining problem: one ManifestError naming the line
    return IndexResult(kept, skipped, ["validated: every listed file exists", "rows whose path leaves the manifest's folder are skipped"])
