from pathlib import Path

import pytest

from cxrssl.errors import CxrsslError
from cxrssl.report.compare import read_result, results_tables
from cxrssl.report.tables import compare_tables
from tests.report.results import compare_payload, findings_result, probe_result


def test_the_tables_of_several_comparisons_share_one_csv_header():
    first, second = compare_payload(["random init", "pretrained"], "nih"), compare_payload(["random init", "pretrained"], "cell")
    markdown, csv_text = results_tables([first, second])
    assert (markdown, csv_text) == compare_tables([first, second])
    lines = csv_text.splitlines()
    assert lines[0].startswith("task,design,budget,backbone") and sum(line.startswith("task,") for line in lines) == 1
    assert [line.split(",")[0] for line in lines[1:]] == ["nih"] * 4 + ["cell"] * 4
    assert "**nih**" in markdown and "**cell**" in markdown


def test_probe_and_per_finding_results_make_their_own_tables():
    markdown, csv_text = results_tables([probe_result("nih", "random init"), probe_result("nih", "1 %, epoch 100")])
    assert markdown.startswith("| dataset | pretext | ACC | AUC |") and csv_text.startswith("dataset,pretext,ACC,")
    markdown, csv_text = results_tables([{**findings_result("nih", "random init"), "kind": "cxrssl-findings-probe"}])
    assert "mean AUC" in markdown.splitlines()[0] and csv_text.startswith("dataset,pretext,finding,")


def test_kinds_of_results_do_not_mix():
    probe, findings = probe_result("nih", "random init"), {**findings_result("nih", "x"), "kind": "cxrssl-findings-probe"}
    with pytest.raises(CxrsslError, match="not both"):
        results_tables([probe, compare_payload(["a", "b"], "nih")])
    with pytest.raises(CxrsslError, match="per-finding results or binary results, not both"):
        results_tables([probe, findings])


def test_a_file_that_is_no_result_is_one_line_naming_it(tmp_path: Path):
    (tmp_path / "other.json").write_text('{"epochs": 3}')
    with pytest.raises(CxrsslError, match=r"other\.json: neither a probe result nor a compare\.json"):
        read_result(tmp_path / "other.json")
    (tmp_path / "torn.json").write_text("{")
    with pytest.raises(CxrsslError, match=r"torn\.json: cannot read a result"):
        read_result(tmp_path / "torn.json")
