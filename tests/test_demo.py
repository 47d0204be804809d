import hashlib
import json
from dataclasses import replace

import pytest

from cxrssl.config import load_pretrain_config
from cxrssl.demo import DemoSettings, demo_claim, run_demo


def quick_settings():
    """A seconds-long version of the demo."""
    settings = DemoSettings(
        pool_images=96, task_images=120, phantom_size=64, bootstrap=50, budgets=(5, None), folds=3, repeats=2, findings_budgets=(20, None)
    )
    config = replace(load_pretrain_config("demo"), image_size=32, batch_size=32, epochs=2, hidden_features=64, out_features=16)
    return settings, config


@pytest.mark.slow
def test_demo_pipeline_end_to_end(tmp_path):
    settings, config = quick_settings()
    results = run_demo(tmp_path, settings, config, progress=False)
    rows = results["rows"]
    assert [(row["backbone"], row["budget"]) for row in rows] == [
        ("SimCLR 2 epochs", "5"),
        ("random init", "5"),
        ("SimCLR 2 epochs", "all"),
        ("random init", "all"),
    ]
    for row in rows:
        assert 0 <= row["metrics"]["auc"]["value"] <= 1 and row["n_folds"] == 6
    # The claim printed is the one the paired intervals support.
    compared = json.loads((tmp_path / "compare" / "compare.json").read_text())
    findings_payload = json.loads((tmp_path / "compare_findings" / "compare.json").read_text())
    assert results["claim"] == demo_claim(compared) + " Per finding (macro mean AUC): " + demo_claim(findings_payload)
    assert results["claim"] in (tmp_path / "table.md").read_text()
    table = (tmp_path / "table.md").read_text()
    assert "| 5 | SimCLR 2 epochs |" in table and "| all | random init |" in table and "Δ AUC vs random init" in table
    page = (tmp_path / "report.html").read_text()
    assert 'class="table3"' in page and 'class="compare"' in page
    for name in ("table.csv", "loss.png", "config.yaml", "compare/compare_efficiency.png", "compare/compare_differences.png"):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["losses"] == results["losses"]
    # Every stage is timed, and the stages add up to the whole (each rounded to 0.1 s).
    assert list(results["stages_s"]) == ["phantoms", "pretraining", "comparison", "findings comparison", "tables", "report"]  # in the order they ran
    # The multi-label stage: the macro mean AUC of the phantom findings per budget, per finding in its compare.json.
    assert [(row["backbone"], row["budget"], row["finding"]) for row in results["findings_rows"]] == [
        ("SimCLR 2 epochs", "20", "mean"),
        ("random init", "20", "mean"),
        ("SimCLR 2 epochs", "all", "mean"),
        ("random init", "all", "mean"),
    ]
    findings = json.loads((tmp_path / "compare_findings" / "compare.json").read_text())["tasks"][0]
    assert findings["findings"] == ["Cardiomegaly", "Consolidation", "Edema", "Effusion"] and findings["finding_rows"]
    assert "Per finding (macro mean AUC): " + demo_claim({"reference": "random init", "tasks": [findings]}) in results["claim"]
    assert "| labelled patients | backbone | Cardiomegaly | Consolidation | Edema | Effusion | mean AUC |" in table
    assert saved["stages_s"] == results["stages_s"]
    assert abs(sum(saved["stages_s"].values()) - saved["wall_s"]) <= 0.3

    # The pool (pretraining) and the task (probe) are different films: no task image is a pool image.
    def digests(folder):
        return {hashlib.sha256(path.read_bytes()).hexdigest() for path in (tmp_path / "phantoms" / folder / "images").glob("*.png")}

    pool, task = digests("pool"), digests("task")
    assert len(pool) == 96 and len(task) == 120 and not pool & task


def _payload(differences):
    rows = [
        {"backbone": "SimCLR", "budget": budget, "difference": {"auc": {"value": (low + high) / 2, "low": low, "high": high}}}
        for budget, (low, high) in differences.items()
    ]
    return {"reference": "random init", "tasks": [{"rows": rows + [{"backbone": "random init", "budget": "all", "difference": None}]}]}


def test_the_demo_claims_exactly_what_the_intervals_show():
    assert demo_claim(_payload({"10": (0.01, 0.05), "25": (-0.01, 0.03), "all": (0.002, 0.02)})) == (
        "SimCLR beats random init at 10, all labelled patients per class (paired 95 % CI of the AUC difference above 0)."
    )
    assert (
        demo_claim(_payload({"10": (-0.01, 0.05)})) == "SimCLR is not distinguishable from random init at any budget (every paired 95 % CI holds 0)."
    )
    assert "is worse than random init at 10" in demo_claim(_payload({"10": (-0.05, -0.01)}))
