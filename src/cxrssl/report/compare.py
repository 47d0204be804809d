"""The files of a ``cxrssl compare`` run: JSON, CSV, markdown table and the two figures.

compare.json is written last: a folder without it holds an interrupted comparison.
"""

from __future__ import annotations

import json
from pathlib import Path

from cxrssl.errors import CxrsslError
from cxrssl.eval.compare import discard_journal
from cxrssl.fileio import atomic_write_json, atomic_write_text
from cxrssl.report.plots import plot_label_efficiency, plot_paired_differences
from cxrssl.report.tables import (
    compare_csv_table,
    compare_folds_csv,
    compare_markdown_table,
    compare_tables,
    findings_csv_table,
    findings_markdown_table,
    paper_csv_table,
    paper_markdown_table,
)

# What write_compare_outputs writes, in that order.
COMPARE_FILES = ("compare.csv", "compare_folds.csv", "compare.md", "compare_efficiency.png", "compare_differences.png", "compare.json")


def write_compare_outputs(payload: dict, out_dir: str | Path) -> list[Path]:
    """Write ``COMPARE_FILES`` of a ``compare_backbones`` result into ``out_dir``, compare.json last.

    Once compare.json is written, the comparison's journal of finished folds (and its
    fine-tune states) in ``out_dir`` is removed: the result holds everything now.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [
        atomic_write_text(out_dir / "compare.csv", compare_csv_table(payload)),
        atomic_write_text(out_dir / "compare_folds.csv", compare_folds_csv(payload)),
        atomic_write_text(out_dir / "compare.md", compare_markdown_table(payload)),
        plot_label_efficiency(payload, out_dir / "compare_efficiency.png"),
        plot_paired_differences(payload, out_dir / "compare_differences.png"),
    ]
    files.append(atomic_write_json(out_dir / "compare.json", payload))
    discard_journal(out_dir)
    return files


def read_result(path: str | Path) -> dict:
    """A result file of ``probe``, ``finetune`` or ``compare``, checked; one clear line when it is none of them."""
    try:
        found = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CxrsslError(f"{path}: cannot read a result ({error}); pass the -o files of `cxrssl probe` or a compare.json") from None
    if not isinstance(found, dict) or not (is_compare(found) or is_findings_result(found) or "metrics" in found):
        raise CxrsslError(f"{path}: neither a probe result nor a compare.json; pass the -o files of `cxrssl probe` or `cxrssl compare`")
    try:  # every field the tables read is there and of its type: checked by making its table once
        results_tables([found])
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
        raise CxrsslError(f"{path}: a damaged or edited result ({type(error).__name__}: {error}); run the command that wrote it again") from None
    return found


def is_compare(result: dict) -> bool:
    return result.get("kind") == "cxrssl-compare"


def is_findings_result(result: dict) -> bool:
    """A per-finding probe or fine-tune result (``eval.multilabel``)."""
    return result.get("kind") == "cxrssl-findings-probe"


def results_tables(found: list[dict]) -> tuple[str, str]:
    """``cxrssl table``: the Markdown and CSV tables of probe results (binary or per finding)
    or of compare results; refuses a mix, which would make different tables."""
    results, compares = [r for r in found if not is_compare(r)], [r for r in found if is_compare(r)]
    if results and compares:
        raise CxrsslError("give probe results or compare.json files, not both: they make different tables")
    per_finding = [r for r in results if is_findings_result(r)]
    if per_finding and len(per_finding) != len(results):
        raise CxrsslError("give per-finding results or binary results, not both: they make different tables")
    if per_finding:
        return findings_markdown_table(results), findings_csv_table(results)
    if results:
        return paper_markdown_table(results), paper_csv_table(results)
    return compare_tables(compares)
