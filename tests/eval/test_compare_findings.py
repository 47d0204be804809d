"""``compare`` on multi-label tasks: folds stratified over findings, budgets in patients, per-finding and macro rows, paired."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import cxrssl.eval.compare.run as compare_module
from cxrssl.data.manifest import Manifest, ManifestRow
from cxrssl.eval.compare import CompareSettings, NamedBackbone, compare_backbones, plan_for
from cxrssl.eval.features import BackboneSpec
from cxrssl.eval.multilabel import MACRO
from cxrssl.eval.probe import ProbeSettings
from cxrssl.report.compare import write_compare_outputs

NAMES = ("Cardiomegaly", "Edema", "Effusion")


def _findings_task(patients=120, seed=0, prevalence=(0.45, 0.3, 0.02), splits=None):
    """Two films per patient in NIH form; Effusion is too rare to score anywhere."""
    rng = np.random.default_rng(seed)
    present = rng.random((patients, len(NAMES))) < np.array(prevalence)
    rows = []
    for i in range(2 * patients):
        found = [name for name, hit in zip(NAMES, present[i // 2]) if hit]
        rows.append(ManifestRow(f"img{i}.png", f"p{i // 2}", "", (splits or [""] * (2 * patients))[i], {"findings": "|".join(found) or "No Finding"}))
    manifest = Manifest(rows, Path("."))
    targets = np.repeat(present, 2, axis=0).astype(float)
    return SimpleNamespace(manifest=manifest, digest=f"findings{seed}{patients}"), targets


def _features(targets, signal, seed=100, dims=8):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(len(targets), dims))
    features[:, : targets.shape[1]] += signal * targets
    return features


@pytest.fixture
def planted(monkeypatch):
    table = {}
    monkeypatch.setattr(compare_module, "features_for", lambda spec, images, progress=False: table[(spec.seed, images.digest)])

    def make(task, signals):
        images, targets = task
        named = []
        for seed, (name, signal) in enumerate(signals.items()):
            table[(seed, images.digest)] = _features(targets, signal)
            named.append(NamedBackbone(name, BackboneSpec.random("resnet18", 32, seed)))
        return named

    return make


FAST = CompareSettings(budgets=(30, None), folds=3, repeats=2, probe=ProbeSettings(bootstrap=0, folds=3), jobs=1, bootstrap=300)


def test_findings_folds_are_patient_disjoint_and_budgets_count_patients():
    images, targets = _findings_task()
    plan = plan_for("toy", images, FAST)
    assert plan.findings.names == NAMES and plan.budget_unit == "patients"
    patients = np.asarray(images.manifest.patient_keys)
    for fold in plan.folds:
        assert not set(patients[fold.test]) & set(patients[fold.train[None]])
        assert len(set(patients[fold.train[30]])) == 30
        assert set(patients[fold.train[30]]) <= set(patients[fold.train[None]])
        # stratified over findings: each fold's test part holds about a third of each finding's positive patients
        for j in range(2):
            share = len(set(patients[fold.test][targets[fold.test, j] == 1])) / len(set(patients[targets[:, j] == 1]))
            assert abs(share - 1 / 3) < 0.05


def test_macro_rows_are_the_mean_of_the_scored_findings_and_rare_ones_are_named(tmp_path, planted):
    task = _findings_task()
    named = planted(task, {"random init": 0.0, "pretrained": 1.5})
    payload = compare_backbones(named, [("toy", task[0])], tmp_path, FAST, progress=False).payload
    write_compare_outputs(payload, tmp_path)
    summary = payload["tasks"][0]
    assert summary["findings"] == list(NAMES)
    assert summary["macro_over"]["probe|all"] == ["Cardiomegaly", "Edema"]
    assert "Effusion" in summary["excluded"]["probe|all"]
    folds = payload["folds"]
    for budget in ("30", "all"):
        for backbone in ("random init", "pretrained"):
            per_fold = {}
            for record in folds:
                if record["budget"] == budget and record["backbone"] == backbone and record["finding"] in summary["macro_over"][f"probe|{budget}"]:
                    per_fold.setdefault((record["repeat"], record["fold"]), []).append(record["auc"])
            macro = next(r for r in summary["rows"] if r["budget"] == budget and r["backbone"] == backbone)
            assert macro["finding"] == MACRO
            assert macro["metrics"]["auc"]["value"] == pytest.approx(np.mean([np.mean(v) for v in per_fold.values()]))
    gain = next(r for r in summary["rows"] if r["budget"] == "all" and r["backbone"] == "pretrained")["difference"]["auc"]
    assert gain["low"] > 0
    finding_rows = {(r["finding"], r["budget"], r["backbone"]) for r in summary["finding_rows"]}
    assert ("Edema", "all", "pretrained") in finding_rows and not any(f == "Effusion" for f, _, _ in finding_rows)
    text = (tmp_path / "compare.md").read_text()
    assert "| labelled patients | backbone | Cardiomegaly | Edema | Effusion | mean AUC |" in text
    assert "left out: Effusion" in text
    assert "finding" in (tmp_path / "compare.csv").read_text().splitlines()[0]


def test_a_backbone_against_itself_differs_by_zero_per_finding_also_on_a_fixed_test_part(tmp_path, planted):
    splits = ["test" if (i // 2) % 4 == 0 else "train" for i in range(240)]
    task = _findings_task(splits=splits)
    named = planted(task, {"a": 1.0, "b": 1.0})
    payload = compare_backbones(named, [("official", task[0])], tmp_path, FAST, progress=False).payload
    summary = payload["tasks"][0]
    assert summary["design"] == "fixed_test"
    for row in summary["rows"] + summary["finding_rows"]:
        if row["backbone"] == "b":
            assert row["difference"]["auc"] == {"value": 0.0, "low": 0.0, "high": 0.0, "p_value": 1.0}


@pytest.mark.parametrize("official", [False, True])
def test_a_budget_without_any_scorable_finding_gives_empty_rows_not_a_crash(tmp_path, planted, official):
    splits = ["test" if (i // 2) % 4 == 0 else "train" for i in range(240)] if official else None
    task = _findings_task(splits=splits)
    named = planted(task, {"random init": 0.0, "pretrained": 1.0})
    settings = CompareSettings(budgets=(4, None), folds=3, repeats=1, probe=ProbeSettings(bootstrap=0, folds=2), jobs=1, bootstrap=200)
    summary = compare_backbones(named, [("toy", task[0])], tmp_path, settings, progress=False).payload["tasks"][0]
    assert summary["macro_over"]["probe|4"] == []  # 4 patients: no finding has 2 positive and 2 negative ones in every draw
    rows = [row for row in summary["rows"] if row["budget"] == "4"]
    assert all(np.isnan(row["metrics"]["auc"]["value"]) for row in rows)
    assert summary["macro_over"]["probe|all"] == ["Cardiomegaly", "Edema"]


def test_budgets_above_the_smallest_training_part_are_refused_with_its_size():
    images, _ = _findings_task(patients=60)
    with pytest.raises(Exception, match=r"label budget 50 patients: the smallest training part has (\d+); lower --labels to at most \1"):
        plan_for("toy", images, CompareSettings(budgets=(50, None), folds=3, repeats=2, probe=ProbeSettings(bootstrap=0), jobs=1))


def test_a_task_where_no_finding_can_ever_be_scored_is_refused_before_any_fit(tmp_path, planted):
    task = _findings_task()
    named = planted(task, {"random init": 0.0, "pretrained": 1.0})
    settings = CompareSettings(budgets=(30, None), folds=3, repeats=1, probe=ProbeSettings(bootstrap=0, min_patients=500), jobs=1)
    with pytest.raises(Exception, match="no finding has 2 positive and negative patients in every training part and 500"):
        compare_backbones(named, [("toy", task[0])], tmp_path, settings, progress=False)
    assert not (tmp_path / ".compare.partial.jsonl").exists()
