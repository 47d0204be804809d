"""A ready manifest (columns path, patient_id, label[, split]), validated and re-rooted."""

from __future__ import annotations

from pathlib import Path

from cxrssl.data.manifest import read_manifest
from cxrssl.data.sources.common import IndexOptions, IndexResult


def index_csv(root: Path, options: IndexOptions) -> IndexResult:
    manifest = read_manifest(root)  # every problem is one ManifestError naming the line
    return IndexResult(manifest, [], ["validated: every listed file exists"])
