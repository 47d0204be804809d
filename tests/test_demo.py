import json

import pytest

from cxrssl.demo import quick_settings, run_demo


@pytest.mark.slow
def test_demo_pipeline_end_to_end(tmp_path):
    settings, config = quick_settings()
    results = run_demo(tmp_path, settings, config, progress=False)
    rows = results["rows"]
    assert list(rows) == ["SimCLR pretrained (2 epochs)", "random initialisation"]
    for row in rows.values():
        assert 0 <= row["metrics"]["auc"] <= 1
        assert row["chosen_c"] in (0.01, 0.05, 0.1, 0.2, 0.5, 1.0)
    table = (tmp_path / "table.md").read_text()
    assert "| SimCLR pretrained (2 epochs) |" in table and "| random initialisation |" in table
    assert 'class="table3"' in (tmp_path / "report.html").read_text()
    for name in ("table.csv", "loss.png", "config.yaml", "predictions_pretrained.csv", "predictions_random_init.csv"):
        assert (tmp_path / name).is_file(), name
    assert json.loads((tmp_path / "results.json").read_text())["losses"] == results["losses"]
    # The pool (pretraining) and the task (probe) are different patients' films.
    pool = (tmp_path / "phantoms" / "pool" / "labels.csv").read_text()
    task = (tmp_path / "phantoms" / "task" / "labels.csv").read_text()
    assert pool != task
