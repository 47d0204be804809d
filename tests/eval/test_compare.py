from collections import Counter
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

import cxrssl.eval.compare.run as compare_module
from cxrssl.data.splits import patient_classes
from cxrssl.eval.compare import (
    PARTIAL,
    CompareError,
    CompareSettings,
    NamedBackbone,
    compare_backbones,
    plan_task,
)
from cxrssl.eval.features import BackboneSpec
from cxrssl.eval.probe import ProbeSettings
from cxrssl.report.compare import COMPARE_FILES, write_compare_outputs


def _task(patients=80, seed=0, splits=None):
    """Two films per patient; a patient's films share the label."""
    rng = np.random.default_rng(seed)
    y = np.repeat(rng.permutation(np.arange(patients) % 2), 2)
    keys = [f"p{i // 2}" for i in range(2 * patients)]
    labels = ["PNEUMONIA" if v else "NORMAL" for v in y]
    manifest = SimpleNamespace(labels=labels, patient_keys=keys, splits=splits or [""] * len(keys))
    return SimpleNamespace(manifest=manifest, digest=f"toy{seed}{patients}"), y


def _features(y, signal, seed=0, dims=8):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(len(y), dims))
    features[:, 0] += signal * y
    return features


@pytest.fixture
def backbones(monkeypatch):
    """Backbones told apart by seed; their features are planted per (seed, task)."""
    planted = {}

    def features_for(spec, images, progress=False):
        return planted[(spec.seed, images.digest)]

    monkeypatch.setattr(compare_module, "features_for", features_for)

    def make(task, signals):
        named = []
        for seed, (name, signal) in enumerate(signals.items()):
            images, y = task
            planted[(seed, images.digest)] = _features(y, signal, seed=100) if signal is not None else _features(y, 1.0, seed=100)
            named.append(NamedBackbone(name, BackboneSpec.random("resnet18", 32, seed)))
        return named

    return make


FAST = CompareSettings(budgets=(5, 15, None), folds=3, repeats=2, probe=ProbeSettings(bootstrap=0, folds=3), jobs=1, bootstrap=300)


def test_folds_are_patient_disjoint_and_budgets_stratified_nested_by_patient():
    (images, y) = _task(patients=90)
    manifest = images.manifest
    plan = plan_task("toy", manifest.labels, manifest.patient_keys, manifest.splits, FAST)
    classes = patient_classes(manifest.patient_keys, manifest.labels)
    patients = np.asarray(manifest.patient_keys)
    assert len(plan.folds) == 6
    tested = Counter()
    for fold in plan.folds:
        test_patients = set(patients[fold.test])
        for budget, rows in fold.train.items():
            train_patients = set(patients[rows])
            assert not train_patients & test_patients
            if budget is not None:
                assert Counter(classes[p] for p in train_patients) == {"NORMAL": budget, "PNEUMONIA": budget}
                assert sorted(rows) == sorted(i for i in fold.train[None] if patients[i] in train_patients)  # whole patients
        assert set(patients[fold.train[5]]) <= set(patients[fold.train[15]])
        assert set(fold.train[None]) | set(fold.test) == set(range(len(y)))
        tested.update(fold.test.tolist())
    assert set(tested.values()) == {2}  # every image tested once per repetition
    again = plan_task("toy", manifest.labels, manifest.patient_keys, manifest.splits, FAST)
    assert all(np.array_equal(a.train[15], b.train[15]) and np.array_equal(a.test, b.test) for a, b in zip(plan.folds, again.folds))
    other = plan_task(
        "toy", manifest.labels, manifest.patient_keys, manifest.splits, CompareSettings(**{**FAST.__dict__, "probe": ProbeSettings(seed=1)})
    )
    assert not np.array_equal(plan.folds[0].test, other.folds[0].test)


def test_a_backbone_against_itself_differs_by_exactly_zero_with_p_one(tmp_path, backbones):
    task = _task()
    named = backbones(task, {"a": 1.0, "b": 1.0})  # same planted features
    payload = compare_backbones(named, [("toy", task[0])], tmp_path, FAST, progress=False).payload
    others = [row for row in payload["tasks"][0]["rows"] if row["backbone"] == "b"]
    assert payload["reference"] == "a" and len(others) == 3
    for row in others:
        assert row["difference"]["auc"] == {"value": 0.0, "low": 0.0, "high": 0.0, "p_value": 1.0}
    # identical draws for every backbone: the per-fold training sets match record by record
    folds = payload["folds"]

    def shape(name):
        return [(r["budget"], r["repeat"], r["fold"], r["n_train"], r["n_train_patients"]) for r in folds if r["backbone"] == name]

    assert shape("a") == shape("b")


def test_a_planted_difference_is_detected_and_chance_is_not(tmp_path, backbones):
    task = _task(patients=100)
    named = backbones(task, {"random init": 0.0, "pretrained": 1.5, "also random": 0.0})
    payload = compare_backbones(named, [("toy", task[0])], tmp_path, FAST, progress=False).payload
    rows = {(row["backbone"], row["budget"]): row for row in payload["tasks"][0]["rows"]}
    assert payload["reference"] == "random init"
    for budget in ("15", "all"):
        gain = rows[("pretrained", budget)]["difference"]["auc"]
        assert gain["low"] > 0 and gain["p_value"] < 0.05 and gain["value"] > 0.2
    assert all(rows[("also random", b)]["difference"]["auc"]["p_value"] > 0.01 for b in ("5", "15", "all"))
    assert payload["tasks"][0]["statistic"].startswith("corrected resampled t-test")


def test_official_test_split_is_kept_and_compared_by_paired_bootstrap(tmp_path, backbones):
    splits = ["test" if i % 10 < 4 else "train" for i in range(200)]  # patients are pairs (2i, 2i+1): whole
    task = _task(patients=100, splits=splits)
    named = backbones(task, {"random init": 0.0, "pretrained": 1.5, "same": 0.0})
    settings = CompareSettings(budgets=(10, None), folds=5, repeats=3, probe=ProbeSettings(bootstrap=0, folds=3), jobs=1, bootstrap=400)
    payload = compare_backbones(named, [("official", task[0])], tmp_path, settings, progress=False).payload
    summary = payload["tasks"][0]
    assert summary["design"] == "fixed_test" and "bootstrap" in summary["statistic"]
    test_rows = {i for i, s in enumerate(splits) if s == "test"}
    assert {r["n_test"] for r in payload["folds"]} == {len(test_rows)}
    rows = {(row["backbone"], row["budget"]): row for row in summary["rows"]}
    assert rows[("pretrained", "all")]["difference"]["auc"]["low"] > 0
    assert rows[("same", "all")]["difference"]["auc"] == {"value": 0.0, "low": 0.0, "high": 0.0, "p_value": 1.0}


def test_purge_policy_runs_an_official_split_that_shares_patients(tmp_path, backbones):
    splits = ["test" if i % 10 < 4 else "train" for i in range(200)]
    splits[5] = "test"  # patient p2 (rows 4 and 5) now in both parts
    task = _task(patients=100, splits=splits)
    named = backbones(task, {"random init": 0.0, "other": 0.5})
    with pytest.raises(Exception, match="--split-policy purge"):
        compare_backbones(named, [("official", task[0])], tmp_path / "a", FAST, progress=False)
    settings = CompareSettings(**{**FAST.__dict__, "probe": ProbeSettings(bootstrap=0, folds=3, split_policy="purge")})
    payload = compare_backbones(named, [("official", task[0])], tmp_path / "b", settings, progress=False).payload
    write_compare_outputs(payload, tmp_path / "b")
    assert (payload["tasks"][0]["purged_images"], payload["tasks"][0]["purged_patients"]) == (1, 1)
    assert "purge dropped 1 training image(s) of 1 patient(s)" in (tmp_path / "b" / "compare.md").read_text()


def test_outputs_are_written_and_reproducible(tmp_path, backbones):
    task = _task()
    named = backbones(task, {"random init": 0.0, "pretrained": 1.0})
    first = compare_backbones(named, [("toy", task[0])], tmp_path / "one", FAST, progress=False)
    second = compare_backbones(named, [("toy", task[0])], tmp_path / "two", FAST, progress=False)
    assert first.payload == second.payload
    assert (tmp_path / "one" / PARTIAL).is_file() and not (tmp_path / "one" / "compare.json").exists()  # the library writes no result file
    files = write_compare_outputs(first.payload, first.folder)
    names = {p.name for p in (tmp_path / "one").iterdir()}
    assert names == {"compare.json", "compare.csv", "compare_folds.csv", "compare.md", "compare_efficiency.png", "compare_differences.png"}
    assert [path.name for path in files] == list(COMPARE_FILES)
    lines = (tmp_path / "one" / "compare.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 * 3  # backbones × budgets
    assert len((tmp_path / "one" / "compare_folds.csv").read_text().splitlines()) == 1 + 2 * 3 * 6
    with pytest.raises(CompareError, match="already holds compare.json"):
        compare_backbones(named, [("toy", task[0])], tmp_path / "one", FAST, progress=False)


def test_parallel_workers_give_the_same_result(tmp_path, backbones):
    task = _task(patients=60)
    named = backbones(task, {"random init": 0.0, "pretrained": 1.0})
    settings = CompareSettings(budgets=(10, None), folds=3, repeats=1, probe=ProbeSettings(bootstrap=0, folds=3), jobs=1)
    serial = compare_backbones(named, [("toy", task[0])], tmp_path / "serial", settings, progress=False).payload
    parallel = compare_backbones(
        named, [("toy", task[0])], tmp_path / "parallel", CompareSettings(**{**settings.__dict__, "jobs": 2}), progress=False
    ).payload

    def key(r):
        return (r["backbone"], r["budget"], r["repeat"], r["fold"])

    assert sorted(serial["folds"], key=key) == sorted(parallel["folds"], key=key)
    assert serial["tasks"] == parallel["tasks"]


def test_a_killed_comparison_resumes_from_its_finished_folds(tmp_path, backbones, monkeypatch):
    task = _task()
    named = backbones(task, {"random init": 0.0, "pretrained": 1.0})
    whole = compare_backbones(named, [("toy", task[0])], tmp_path / "whole", FAST, progress=False).payload
    real_fit, calls = compare_module.fit_fold, []

    def dies_after_four(plan, fold, features, settings):
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append((fold.repeat, fold.fold))
        return real_fit(plan, fold, features, settings)

    monkeypatch.setattr(compare_module, "fit_fold", dies_after_four)
    with pytest.raises(KeyboardInterrupt):
        compare_backbones(named, [("toy", task[0])], tmp_path / "killed", FAST, progress=False)
    assert not (tmp_path / "killed" / "compare.json").exists()  # nothing that looks complete
    partial = (tmp_path / "killed" / PARTIAL).read_text().splitlines()
    assert len(partial) == 1 + 4
    with open(tmp_path / "killed" / PARTIAL, "a") as handle:
        handle.write('{"task": "toy", "repe')  # a line torn by the kill
    calls.clear()
    monkeypatch.setattr(compare_module, "fit_fold", lambda *a: (calls.append(a[1]), real_fit(*a))[1])
    resumed = compare_backbones(named, [("toy", task[0])], tmp_path / "killed", FAST, progress=False).payload
    assert len(calls) == 2  # only the folds that were not finished
    assert resumed["tasks"] == whole["tasks"]
    write_compare_outputs(resumed, tmp_path / "killed")
    assert not (tmp_path / "killed" / PARTIAL).exists()


def test_bad_inputs_get_one_clear_line(tmp_path, backbones):
    task = _task(patients=12)
    named = backbones(task, {"random init": 0.0, "pretrained": 1.0})
    with pytest.raises(CompareError, match="has only 6 patient"):
        compare_backbones(named, [("toy", task[0])], tmp_path, CompareSettings(budgets=(5,), folds=7, repeats=1, jobs=1), progress=False)
    with pytest.raises(CompareError, match=r"budget 50 patients per class: class '\w+' has only \d+ patient"):
        compare_backbones(named, [("toy", task[0])], tmp_path, CompareSettings(budgets=(50,), folds=3, repeats=1, jobs=1), progress=False)
    single = SimpleNamespace(
        manifest=SimpleNamespace(labels=["NORMAL"] * 24, patient_keys=[f"p{i}" for i in range(24)], splits=[""] * 24), digest="one"
    )
    with pytest.raises(Exception, match="exactly two classes, found 1"):
        compare_backbones(named, [("one", single)], tmp_path, FAST, progress=False)
    bigger = [named[0], NamedBackbone("big", BackboneSpec.random("resnet18", 64, 9))]
    with pytest.raises(CompareError, match="different image sizes"):
        compare_backbones(bigger, [("toy", task[0])], tmp_path, FAST, progress=False)
    with pytest.raises(CompareError, match="at least two backbones"):
        compare_backbones(named[:1], [("toy", task[0])], tmp_path, FAST, progress=False)
    with pytest.raises(CompareError, match="--reference 'x' is not one of"):
        compare_backbones(named, [("toy", task[0])], tmp_path, CompareSettings(reference="x"), progress=False)
    with pytest.raises(CompareError, match="two tasks share a name"):
        compare_backbones(named, [("toy", task[0]), ("toy", task[0])], tmp_path, FAST, progress=False)
    with pytest.raises(CompareError, match="budgets are patients per class"):
        CompareSettings(budgets=(0,))


def test_the_readout_is_recorded_per_backbone(tmp_path, backbones):
    task = _task(patients=80)
    named = [NamedBackbone(b.name, replace(b.spec, readout="blocks")) for b in backbones(task, {"random init": 0.0, "pretrained": 1.0})]
    payload = compare_backbones(named, [("toy", task[0])], tmp_path, FAST, progress=False).payload
    assert [(b["name"], b["readout"]) for b in payload["backbones"]] == [("random init", "blocks"), ("pretrained", "blocks")]
    assert payload["backbones"][1]["description"].endswith(", blocks readout")
