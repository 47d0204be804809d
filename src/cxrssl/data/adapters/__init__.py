"""Dataset adapters: one public layout each, to the manifest every verb reads.

``index_dataset(kind, root)`` dispatches on ``kind``; each adapter's module
docstring documents the exact layout it expects, its citation and the paper's
task definition.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cxrssl.data.adapters.chexpert import index_chexpert
from cxrssl.data.adapters.cohen import index_cohen
from cxrssl.data.adapters.common import IndexOptions, IndexResult, LayoutError
from cxrssl.data.adapters.covidgr import index_covidgr
from cxrssl.data.adapters.folder import index_folder
from cxrssl.data.adapters.kermany import index_kermany
from cxrssl.data.adapters.manifest_csv import index_csv
from cxrssl.data.adapters.nih14 import index_nih14

ADAPTERS: dict[str, Callable[[Path, IndexOptions], IndexResult]] = {
    "chexpert": index_chexpert,
    "kermany": index_kermany,
    "nih14": index_nih14,
    "cohen": index_cohen,
    "covidgr": index_covidgr,
    "folder": index_folder,
    "csv": index_csv,
}


def index_dataset(kind: str, root: str | Path, options: IndexOptions = IndexOptions()) -> IndexResult:
    if kind not in ADAPTERS:
        raise LayoutError(f"unknown dataset kind {kind!r}; use one of {', '.join(ADAPTERS)}")
    return ADAPTERS[kind](Path(root), options)


__all__ = ["ADAPTERS", "IndexOptions", "IndexResult", "LayoutError", "index_dataset"]
