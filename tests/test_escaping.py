"""Hostile names through every writer: Markdown and HTML stay inert and keep their shape, CSV cells are not formulas.

Backbone, dataset, label, task and finding names come from the user's files and flags.
The result dicts are built by hand in the form the writers read, so this runs in seconds.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import cxrssl.explain.tsne as tsne_module
from cxrssl.eval.compare import PARTIAL
from cxrssl.eval.metrics import METRICS
from cxrssl.eval.sweep import Sweep
from cxrssl.fileio import FORMULA_PREFIXES
from cxrssl.report.compare import COMPARE_FILES, write_compare_outputs
from cxrssl.report.html import _compare_section, _findings_table, _table
from cxrssl.report.markdown import md_row, md_text
from cxrssl.report.sweep import SWEEP_FILES, sweep_csv, write_sweep_outputs
from cxrssl.report.tables import (
    compare_csv_table,
    compare_folds_csv,
    compare_markdown_table,
    findings_csv_table,
    findings_markdown_table,
    paper_csv_table,
    paper_markdown_table,
)
from tests.report.results import FINDINGS, HOSTILE, IMAGE, SCRIPT, compare_payload, findings_result, metrics, probe_result


def _cells(line: str) -> list[str]:
    """The cells of a Markdown table row: split at every ``|`` not escaped as ``\\|``."""
    return re.split(r"(?<!\\)\|", line.strip())[1:-1]


def assert_inert_markdown(text: str, rows: int | None = None) -> None:
    """No raw tag; every row of every table as many cells as its header; ``rows`` body rows in all when given."""
    assert "<script" not in text and "<img" not in text and "`tick`" not in text
    lines, body = text.split("\n"), 0
    for i, line in enumerate(lines):
        if line.startswith("|---"):
            width = len(_cells(lines[i - 1]))
            for following in lines[i + 1 :]:
                if not following.startswith("|"):
                    break
                assert len(_cells(following)) == width, following
                body += 1
    if rows is not None:
        assert body == rows


def assert_safe_csv(text: str, rows: int | None = None) -> list[list[str]]:
    """Every line as wide as the header; no cell a spreadsheet would run; numbers as they were."""
    lines = list(csv.reader(io.StringIO(text)))
    assert all(len(line) == len(lines[0]) for line in lines)
    for cell in (cell for line in lines for cell in line):
        if cell.startswith(FORMULA_PREFIXES):  # only a number may start with = + - @ (e.g. -0.5, +1)
            try:
                float(cell)
            except ValueError:
                pytest.fail(f"a spreadsheet would run the cell {cell!r}")
    if rows is not None:
        assert len(lines) == 1 + rows
    return lines


def test_md_text_makes_every_hostile_name_plain_text():
    assert md_text(SCRIPT) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert md_text("a|b") == "a\\|b" and md_text("two\nlines") == "two lines" and md_text("`x` & y") == "&#96;x&#96; &amp; y"
    assert len(_cells(md_row(HOSTILE))) == len(HOSTILE)


def test_probe_tables_escape_datasets_and_labels():
    results = [probe_result(dataset, label) for dataset, label in zip(HOSTILE, reversed(HOSTILE))]
    text = paper_markdown_table(results)
    assert_inert_markdown(text, rows=len(HOSTILE))
    assert "a\\|b" in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    lines = assert_safe_csv(paper_csv_table(results), rows=len(HOSTILE))
    datasets = [line[0] for line in lines[1:]]
    assert '\'=HYPERLINK("http://x")' in datasets and "'-2+3" in datasets and "'@SUM(A1)" in datasets and "+1" in datasets
    assert "two\nlines" in datasets  # a newline stays inside its quoted cell


def test_per_finding_tables_escape_findings_and_reasons():
    results = [findings_result(dataset, "random init") for dataset in HOSTILE[:3]]
    text = findings_markdown_table(results)
    assert_inert_markdown(text, rows=3)
    assert "&lt;script&gt;" in text  # the reason a finding was left out, in a note
    header = text.splitlines()[0]
    assert len(_cells(header)) == 2 + len(FINDINGS) + 2
    lines = assert_safe_csv(findings_csv_table(results), rows=3 * (len(FINDINGS) + 1))
    assert "'@SUM(A1)" in {line[2] for line in lines}


@pytest.mark.parametrize("findings", [None, FINDINGS], ids=["binary", "per finding"])
def test_compare_writers_escape_backbones_tasks_and_findings(tmp_path, findings):
    backbones = HOSTILE[:4] if findings else HOSTILE
    payload = compare_payload(backbones, task_name="=cmd|' /C calc'!A0 <b>", findings=findings)
    (tmp_path / PARTIAL).write_text("{}\n")  # the journal of the comparison: gone once the results are written
    files = write_compare_outputs(payload, tmp_path)
    assert [path.name for path in files] == list(COMPARE_FILES) and not (tmp_path / PARTIAL).exists()
    markdown = (tmp_path / "compare.md").read_text()
    assert markdown == compare_markdown_table(payload)
    tables = 2 if findings else 1
    assert_inert_markdown(markdown, rows=tables * 2 * len(backbones))
    assert "<b>" not in markdown and "**=cmd\\|' /C calc'!A0 &lt;b&gt;**" in markdown
    assert "| &lt;0.001 |" not in markdown and "| <0.001 |" in markdown  # cxrssl's own text is left as it is
    rows = len(payload["tasks"][0]["rows"]) + len(payload["tasks"][0].get("finding_rows", []))
    lines = assert_safe_csv((tmp_path / "compare.csv").read_text(), rows=rows)
    assert lines[1][0] == "'=cmd|' /C calc'!A0 <b>" and lines[2][3] == IMAGE  # CSV holds the names as they are, only disarmed
    assert compare_csv_table(payload) == (tmp_path / "compare.csv").read_text()
    folds = assert_safe_csv((tmp_path / "compare_folds.csv").read_text(), rows=len(payload["folds"]))
    assert {line[folds[0].index("auc")] for line in folds[1:]} == {"-0.5"}  # a number stays a number
    assert compare_folds_csv(payload) == (tmp_path / "compare_folds.csv").read_text()
    assert json.loads((tmp_path / "compare.json").read_text())["reference"] == backbones[0]
    assert all(path.stat().st_size > 5_000 for path in files if path.suffix == ".png")  # a $ in a name is no formula to matplotlib


def test_sweep_csv_and_files_keep_numbers_and_disarm_text(tmp_path):
    rows = [
        {"epoch": epoch, "dataset": r"$\frac$ <script>", "metrics": metrics(), "intervals_95": {m: [0.1, 0.9] for m in METRICS}, "chosen_c": c}
        for epoch, c in [(0, 0.1), (1, "=1+1"), (2, "per finding")]
    ]
    log = [{"epoch": "1", "loss": "-0.5", "rankme": "@x", "alignment": "", "uniformity": ""}, {"epoch": "2", "loss": "-0.75"}]
    lines = assert_safe_csv(sweep_csv(rows, log), rows=3)
    assert [line[1] for line in lines[1:]] == ["", "-0.5", "-0.75"] and lines[2][2] == "'@x" and lines[2][-len(METRICS) * 3 - 1] == "'=1+1"
    sweep = Sweep(rows, [], [], {}, tmp_path / "run <img>", "task.csv", log)
    files = write_sweep_outputs(sweep, tmp_path / "out")
    assert [path.name for path in files] == list(SWEEP_FILES) and files[1].stat().st_size > 5_000
    assert write_sweep_outputs(sweep)[0].parent == tmp_path / "run <img>" / r"sweep_$\frac$ <script>"


def test_tsne_coordinates_disarm_labels_and_paths(tmp_path, monkeypatch):
    labels = ["=HYPERLINK(1)", "-2+3"] * 8
    rows = [SimpleNamespace(path=f"@img{i}.png" if i == 0 else f"img{i}.png") for i in range(len(labels))]
    task = SimpleNamespace(manifest=SimpleNamespace(labels=labels, rows=rows, name="task"))
    monkeypatch.setattr(tsne_module, "features_for", lambda spec, images, progress=False: np.random.default_rng(spec.epoch).normal(size=(16, 4)))
    specs = [SimpleNamespace(description=name, epoch=i, checkpoint=Path("c.json"), init_label="random init") for i, name in enumerate([SCRIPT, "+x"])]
    _, coordinates = tsne_module.tsne_panels(specs, task, tmp_path / "tsne.png")
    lines = assert_safe_csv(coordinates.read_text(), rows=2 * len(labels))
    assert {line[3] for line in lines[1:]} == {"'=HYPERLINK(1)", "'-2+3"} and lines[1][2] == "'@img0.png" and lines[-1][0] == "'+x"


def test_report_html_escapes_every_name(tmp_path):
    page = _compare_section(compare_payload(HOSTILE[:4], task_name=SCRIPT, findings=FINDINGS), tmp_path, 0)
    page += _compare_section(compare_payload(HOSTILE, task_name=IMAGE), tmp_path, 1)
    page += _findings_table([findings_result(SCRIPT, IMAGE)], SCRIPT)
    page += _table(HOSTILE, [HOSTILE, list(range(len(HOSTILE)))])
    assert "<script" not in page and "<img src=x" not in page
    assert page.count("&lt;script&gt;") >= 4 and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_the_statistic_is_shown_as_cxrssl_wrote_it_and_anything_else_escaped():
    from cxrssl.eval.stats import CORRECTED_T

    payload = compare_payload(["random init", "pretrained"], "nih")
    payload["tasks"][0]["statistic"] = CORRECTED_T
    assert "(Nadeau & Bengio 2003)" in compare_markdown_table(payload)
    payload["tasks"][0]["statistic"] = SCRIPT
    assert_inert_markdown(compare_markdown_table(payload))
