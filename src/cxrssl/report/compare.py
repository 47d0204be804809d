"""The files of a ``cxrssl compare`` run: JSON, CSV, markdown table and the two figures.

compare.json is written last: a folder without it holds an interrupted comparison.
"""

from __future__ import annotations

import json
from pathlib import Path

from cxrssl.errors import CxrsslError
from cxrssl.fileio import atomic_write_json, atomic_write_text
from cxrssl.report.plots import plot_label_efficiency, plot_paired_differences
from cxrssl.report.tables import compare_csv_table, compare_folds_csv, compare_markdown_table


# What write_compare_outputs writes, in that order.
COMPARE_FILES = ("compare.csv", "compare_folds.csv", "compare.md", "compare_efficiency.png", "compare_differences.png", "compare.json")


def write_compare_outputs(payload: dict, out_dir: str | Path) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [
        atomic_write_text(out_dir / "compare.csv", compare_csv_table(payload)),
        atomic_write_text(out_dir / "compare_folds.csv", compare_folds_csv(payload)),
        atomic_write_text(out_dir / "compare.md", compare_markdown_table(payload)),
        plot_label_efficiency(payload, out_dir / "compare_efficiency.png"),
        plot_paired_differences(payload, out_dir / "compare_differences.png"),
    ]
    return files + [atomic_write_json(out_dir / "compare.json", payload)]


def read_result(path: str | Path) -> dict:
    """A result file of ``probe``, ``finetune`` or ``compare``, checked; one clear line when it is none of them."""
    try:
        found = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CxrsslError(f"{path}: cannot read a result ({error}); pass the -o files of `cxrssl probe` or a compare.json") from None
    if not isinstance(found, dict) or not (is_compare(found) or is_findings_result(found) or "metrics" in found):
        raise CxrsslError(f"{path}: neither a probe result nor a compare.json; pass the -o files of `cxrssl probe` or `cxrssl compare`")
    return found


def is_compare(result: dict) -> bool:
    return result.get("kind") == "cxrssl-compare"


def is_findings_result(result: dict) -> bool:
    """A per-finding probe or fine-tune result (``eval.multilabel``)."""
    return result.get("kind") == "cxrssl-findings-probe"
