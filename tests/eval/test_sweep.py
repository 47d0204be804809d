import csv
import json
from dataclasses import replace

import pytest

from cxrssl.config import load_pretrain_config
from cxrssl.errors import CxrsslError
from cxrssl.eval.probe import ProbeSettings
from cxrssl.eval.sweep import sweep_run
from cxrssl.report.sweep import SWEEP_FILES, write_sweep_outputs
from cxrssl.train import pretrain


@pytest.mark.slow
def test_sweep_probes_every_checkpoint_and_the_random_start(tmp_path, phantom_manifest):
    config = replace(load_pretrain_config("demo"), image_size=32, batch_size=16, epochs=2, hidden_features=32, out_features=16, keep_epochs=(1, 2))
    pretrain(phantom_manifest, tmp_path / "run", config, progress=False)
    sweep = sweep_run(tmp_path / "run", phantom_manifest, settings=ProbeSettings(bootstrap=20), progress=False)
    assert not list((tmp_path / "run").glob("sweep_*"))  # the library writes no result file
    files = write_sweep_outputs(sweep)
    rows, out = sweep.rows, files[0].parent
    assert [path.name for path in files] == list(SWEEP_FILES)
    assert [row["epoch"] for row in rows] == [0, 1, 2] and rows[0]["label"] == "random init"
    assert out == tmp_path / "run" / f"sweep_{rows[0]['dataset']}"
    table = list(csv.DictReader(open(out / "sweep.csv")))
    log = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert [line["epoch"] for line in table] == ["0", "1", "2"]
    assert [line["pretext_loss"] for line in table[1:]] == [entry["loss"] for entry in log] and table[0]["pretext_loss"] == ""
    assert float(table[2]["auc"]) == pytest.approx(rows[2]["metrics"]["auc"], abs=1e-4)
    assert (out / "sweep.png").stat().st_size > 10_000 and json.loads((out / "sweep.json").read_text())["rows"][1]["epoch"] == 1
    # --bootstrap 0: no intervals, and no NaN pretending to be one in the JSON
    bare = sweep_run(tmp_path / "run", phantom_manifest, ProbeSettings(bootstrap=0), progress=False)
    write_sweep_outputs(bare, tmp_path / "bare")
    assert all(row["intervals_95"] == {} for row in bare.rows)
    assert list(csv.DictReader(open(tmp_path / "bare" / "sweep.csv")))[1]["auc_low"] == "nan"


def test_a_folder_without_checkpoints_is_refused(tmp_path, phantom_manifest):
    with pytest.raises(CxrsslError, match="no checkpoints/epoch_"):
        sweep_run(tmp_path, phantom_manifest, progress=False)


def test_monitor_correlations_rank_each_monitor_against_the_probe_auc():
    from cxrssl.eval.sweep import monitor_correlations

    rows = [{"epoch": epoch, "metrics": {"auc": auc}} for epoch, auc in [(0, 0.5), (1, 0.6), (2, 0.7), (3, 0.65), (4, 0.8)]]
    log = [
        {"epoch": str(e), "rankme": str(r), "alignment": str(a), "uniformity": ""}
        for e, r, a in [(1, 10, 0.9), (2, 20, 0.8), (3, 15, 0.7), (4, 30, 0.6)]
    ]
    found = monitor_correlations(rows, log)
    # The random start (epoch 0) has no log row; rankme orders the four checkpoints exactly as the AUC does.
    assert found["rankme"] == {"spearman_with_auc": 1.0, "checkpoints": 4}
    assert found["alignment"]["spearman_with_auc"] == pytest.approx(-0.8)  # AUC ranks 1,3,2,4 against 4,3,2,1
    assert "uniformity" not in found  # never logged: no correlation claimed


def test_monitor_choices_keep_each_monitors_best_checkpoint_and_say_what_it_loses():
    from cxrssl.eval.sweep import monitor_choices

    aucs = {5: 0.70, 10: 0.78, 15: 0.74, 20: 0.72}
    log = [
        {"epoch": str(e), "rankme": str(r), "alignment": str(a), "uniformity": "", "knn_auc": k}
        for e, r, a, k in [(5, 60, 0.9, "0.61"), (10, 70, 0.5, "0.70"), (15, 75, 0.6, "0.66"), (20, 80, 0.5, "nan")]
    ]
    found = monitor_choices(aucs, log)
    assert found["last"] == {"keeps_epoch": 20, "auc": 0.72, "best_epoch": 10, "best_auc": 0.78, "auc_lost": pytest.approx(0.06)}
    assert found["rankme"]["keeps_epoch"] == 20  # highest rank: the last, which lost the gain
    assert found["alignment"]["keeps_epoch"] == 20  # lowest alignment, a tie of 10 and 20 goes to the later epoch
    assert found["knn_auc"]["keeps_epoch"] == 10 and found["knn_auc"]["auc_lost"] == 0  # NaN at 20 is no value
    assert "uniformity" not in found


@pytest.mark.slow
def test_the_sweep_computes_a_knn_monitor_from_each_checkpoint(tmp_path, phantom_manifest):
    config = replace(load_pretrain_config("demo"), image_size=32, batch_size=16, epochs=3, hidden_features=32, out_features=16, keep_epochs=())
    pretrain(phantom_manifest, tmp_path / "run", config, progress=False)
    sweep = sweep_run(tmp_path / "run", phantom_manifest, ProbeSettings(bootstrap=0), progress=False, monitor=phantom_manifest)
    values = [float(entry["knn_auc"]) for entry in sweep.log]
    assert len(values) == 3 and len(set(values)) == 3 and all(0 <= v <= 1 for v in values)
    assert set(sweep.monitors["knn_auc"]) >= {"spearman_with_auc", "keeps_epoch", "auc_lost"}
    assert sweep.monitors["knn_auc"]["keeps_epoch"] == max(range(1, 4), key=lambda e: (values[e - 1], e))


def test_budget_choices_read_each_budget_of_the_comparison_and_choose_per_budget():
    from cxrssl.eval.sweep import budget_choices

    def row(backbone, budget, auc, mode="probe"):
        return {"backbone": backbone, "budget": budget, "mode": mode, "metrics": {"auc": {"value": auc, "low": auc - 0.05, "high": auc + 0.05}}}

    payload = {
        "tasks": [
            {
                "rows": [
                    row("random init", "10", 0.55),
                    row("epoch 5", "10", 0.70),
                    row("epoch 10", "10", 0.66),
                    row("random init", "all", 0.60),
                    row("epoch 5", "all", 0.74),
                    row("epoch 10", "all", 0.80),
                    row("epoch 10 (fine-tuned)", "all", 0.99, mode="finetune"),  # another group: never a checkpoint to keep
                ]
            }
        ]
    }
    log = [{"epoch": "5", "rankme": "60", "knn_auc": "0.7"}, {"epoch": "10", "rankme": "70", "knn_auc": "0.6"}]
    found = budget_choices(payload, log)
    assert list(found) == ["10", "all"]
    assert found["10"]["random_init_auc"]["value"] == 0.55 and list(found["10"]["auc"]) == ["5", "10"]
    # At 10 labels per class the later checkpoint lost the small-budget gain: keeping the last (and the highest
    # rank) loses 4 points there, the k-NN monitor keeps epoch 5; with all labels epoch 10 is best.
    assert found["10"]["choices"]["last"]["keeps_epoch"] == 10 and found["10"]["choices"]["last"]["auc_lost"] == pytest.approx(0.04)
    assert found["10"]["choices"]["rankme"]["keeps_epoch"] == 10
    assert found["10"]["choices"]["knn_auc"] == {"keeps_epoch": 5, "auc": 0.70, "best_epoch": 5, "best_auc": 0.70, "auc_lost": 0.0}
    assert found["all"]["choices"]["knn_auc"]["auc_lost"] == pytest.approx(0.06) and found["all"]["choices"]["last"]["auc_lost"] == 0.0


@pytest.mark.slow
def test_a_sweep_over_label_budgets_is_compares_numbers_and_resumes_after_a_kill(tmp_path, phantom_manifest, monkeypatch):
    import cxrssl.eval.compare.run as compare_run
    from cxrssl.api import sweep_checkpoints
    from cxrssl.eval.compare import CompareSettings, NamedBackbone, compare_backbones
    from cxrssl.eval.compare.journal import PARTIAL
    from cxrssl.eval.evaluate import load_task
    from cxrssl.eval.sweep import checkpoint_name, monitor_choices
    from cxrssl.report.sweep import BUDGETS_FILE

    config = replace(load_pretrain_config("demo"), image_size=32, batch_size=16, epochs=3, hidden_features=32, out_features=16, keep_epochs=(1, 2))
    pretrain(phantom_manifest, tmp_path / "run", config, progress=False)
    budgets = CompareSettings((4, None), folds=2, repeats=1, probe=ProbeSettings(bootstrap=0), jobs=1)
    fits, real_fit, journalled, real_append = [], compare_run.fit_fold, [], compare_run.append_journal

    def counted_fit(*args, **kwargs):
        fits.append(1)
        return real_fit(*args, **kwargs)

    def dying_append(out_dir, result):
        real_append(out_dir, result)
        journalled.append(1)
        if len(journalled) == 1:
            raise KeyboardInterrupt  # killed after the first fold reached the journal

    monkeypatch.setattr(compare_run, "fit_fold", counted_fit)
    monkeypatch.setattr(compare_run, "append_journal", dying_append)
    out = tmp_path / "sweep"
    with pytest.raises(KeyboardInterrupt):
        sweep_checkpoints(tmp_path / "run", phantom_manifest, out, ProbeSettings(bootstrap=0), budgets=budgets)
    assert (out / PARTIAL).is_file() and not (out / "sweep.json").exists()  # a partial sweep never looks complete
    fits.clear()
    found = sweep_checkpoints(tmp_path / "run", phantom_manifest, out, ProbeSettings(bootstrap=0), budgets=budgets)
    assert len(fits) == 1  # the journalled fold was not fitted again
    assert not (out / PARTIAL).exists() and json.loads((out / "sweep.json").read_text())["budgets"] == found.budgets

    # The same comparison run directly: the sweep reports its numbers, and each monitor's choice on them.
    task = load_task(phantom_manifest, 32, False, budgets.probe)
    named = [NamedBackbone(checkpoint_name(spec), spec) for spec in found.specs]
    assert [b.name for b in named] == ["random init", "epoch 1", "epoch 2", "epoch 3"]
    direct = compare_backbones(named, [(found.rows[0]["dataset"], task)], tmp_path / "direct", budgets, progress=False).payload
    for row in direct["tasks"][0]["rows"]:
        at = found.budgets[row["budget"]]
        expected = at["random_init_auc"] if row["backbone"] == "random init" else at["auc"][row["backbone"].split()[1]]
        assert expected == row["metrics"]["auc"]
    for at in found.budgets.values():
        aucs = {int(epoch): value["value"] for epoch, value in at["auc"].items()}
        assert at["choices"] == monitor_choices(aucs, found.log) and at["choices"]["last"]["keeps_epoch"] == 3
        assert at["choices"]["last"]["best_epoch"] == max(aucs, key=lambda e: (aucs[e], e))
    table = list(csv.DictReader(open(out / BUDGETS_FILE)))
    assert [(line["budget"], line["epoch"]) for line in table] == [(b, e) for b in ("4", "all") for e in ("0", "1", "2", "3")]
    assert all("last" in line["kept_by"].split(";") for line in table if line["epoch"] == "3")
    assert sum(line["best"] == "1" for line in table) == 2  # one best checkpoint per budget
