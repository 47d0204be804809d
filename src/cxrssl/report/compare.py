"""The files of a ``cxrssl compare`` run: JSON, CSV, markdown table and the two figures.

compare.json is written last: a folder without it holds an interrupted comparison.
"""

from __future__ import annotations

from pathlib import Path

from cxrssl.fileio import atomic_write_json, atomic_write_text
from cxrssl.report.plots import plot_label_efficiency, plot_paired_differences
from cxrssl.report.tables import compare_csv_table, compare_folds_csv, compare_markdown_table


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
