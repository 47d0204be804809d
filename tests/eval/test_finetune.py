import numpy as np
import pytest

import cxrssl.eval.finetune as finetune_module
from cxrssl.eval.evaluate import load_task
from cxrssl.eval.features import BackboneSpec
from cxrssl.eval.finetune import FinetuneError, FinetuneSettings, carve_validation, finetune
from cxrssl.eval.probe import binary_targets, probe_split

QUICK = FinetuneSettings(epochs=2, batch_size=16, patience=5)


@pytest.fixture(scope="module")
def phantom_task(tmp_path_factory):
    from cxrssl.data.phantom import write_phantom_dataset

    manifest = write_phantom_dataset(tmp_path_factory.mktemp("ft"), n=160, size=64, seed=11, progress=False)
    task = load_task(manifest, 32, progress=False)
    targets, positive, negative = binary_targets(task.manifest.labels)
    split = probe_split(task.manifest.patient_keys, task.manifest.labels, task.manifest.splits)
    return task, targets, split


def test_validation_is_carved_by_patient_and_nothing_crosses(phantom_task):
    task, targets, split = phantom_task
    patients = np.asarray(task.manifest.patient_keys)
    fit, val = carve_validation(patients, task.manifest.labels, split.train, 0.2, seed=0)
    assert set(fit) | set(val) == set(split.train) and not set(fit) & set(val)
    fit_p, val_p, test_p = set(patients[fit]), set(patients[val]), set(patients[split.test])
    assert not fit_p & val_p and not fit_p & test_p and not val_p & test_p
    assert {task.manifest.labels[i] for i in val} == {"NORMAL", "PNEUMONIA"}
    assert 0.1 < len(val_p) / (len(val_p) + len(fit_p)) < 0.3


def test_a_budget_that_leaves_no_validation_class_is_refused():
    patients, labels = ["a", "b", "c"], ["X", "X", "Y"]
    with pytest.raises(FinetuneError, match="give more labelled patients"):
        carve_validation(patients, labels, np.arange(3), 0.2, seed=0)


def test_early_stopping_keeps_the_epoch_of_the_best_validation_auc(phantom_task, monkeypatch):
    task, targets, split = phantom_task
    planted = iter([0.60, 0.80, 0.70, 0.75, 0.79, 0.65, 0.99, 0.99])  # best at epoch 2; epochs 3-5 do not beat it
    monkeypatch.setattr(finetune_module, "roc_auc_score", lambda y, s: next(planted))
    settings = FinetuneSettings(epochs=8, batch_size=16, patience=3)
    fit = finetune(BackboneSpec.random("resnet18", 32, 0), task, targets, task.manifest.patient_keys, split.train, split.test, settings)
    assert fit.chosen_epoch == 2
    assert fit.val_auc == [0.60, 0.80, 0.70, 0.75, 0.79]  # stopped after 3 epochs without a better one


def test_an_interrupted_finetune_resumes_to_the_same_result(phantom_task, tmp_path):
    task, targets, split = phantom_task
    spec = BackboneSpec.random("resnet18", 32, 0)
    args = (spec, task, targets, task.manifest.patient_keys, split.train, split.test, QUICK)
    whole = finetune(*args)
    with pytest.raises(KeyboardInterrupt):
        finetune(*args, work_dir=tmp_path / "state", stop_after_epoch=1)
    assert (tmp_path / "state" / "finetune_state.json").is_file()
    resumed = finetune(*args, work_dir=tmp_path / "state")
    assert resumed.val_auc == whole.val_auc and resumed.chosen_epoch == whole.chosen_epoch
    np.testing.assert_allclose(resumed.test_scores, whole.test_scores, rtol=0, atol=1e-6)
    assert not (tmp_path / "state").exists()  # removed once the fine-tune is complete
    other = FinetuneSettings(epochs=2, batch_size=8, patience=5)
    with pytest.raises(KeyboardInterrupt):
        finetune(*args[:-1], other, work_dir=tmp_path / "state", stop_after_epoch=1)
    with pytest.raises(FinetuneError, match="made with other data, settings or backbone"):
        finetune(*args, work_dir=tmp_path / "state")


@pytest.mark.slow
def test_finetuning_on_phantoms_learns(tmp_path):
    from cxrssl.data.phantom import write_phantom_dataset

    manifest = write_phantom_dataset(tmp_path / "ph", n=480, size=64, seed=4, progress=False)
    task = load_task(manifest, 64, progress=False)
    targets, _, _ = binary_targets(task.manifest.labels)
    split = probe_split(task.manifest.patient_keys, task.manifest.labels, task.manifest.splits)
    # From random weights there is nothing to preserve: the backbone learns at a head-like rate.
    settings = FinetuneSettings(epochs=10, batch_size=32, head_lr=1e-2, backbone_lr=3e-3, patience=10)
    fit = finetune(BackboneSpec.random("resnet18", 64, 0), task, targets, task.manifest.patient_keys, split.train, split.test, settings)
    assert fit.metrics["auc"] > 0.7, fit.metrics  # 0.83 measured; chance is 0.5
    assert max(fit.val_auc) > 0.75 and fit.val_auc[fit.chosen_epoch - 1] == max(fit.val_auc)


def test_bad_settings_are_refused():
    with pytest.raises(FinetuneError, match="--epochs must be at least 1"):
        FinetuneSettings(epochs=0)
    with pytest.raises(FinetuneError, match="--backbone-lr must be a positive number"):
        FinetuneSettings(backbone_lr=float("nan"))
    with pytest.raises(FinetuneError, match="--val-fraction"):
        FinetuneSettings(val_fraction=1.0)


def test_the_multilabel_loss_is_masked_weighted_binary_cross_entropy():
    """Against a loop over the labelled entries: BCE with each finding's positive weight, averaged over labelled entries only."""
    import torch
    from torch import nn

    from cxrssl.eval.finetune import Classifier

    torch.manual_seed(0)
    model = Classifier(nn.Flatten(), 12, outputs=3)
    model.loss.pos_weight = torch.tensor([1.0, 2.5, 4.0])
    images = torch.randn(5, 1, 2, 6)
    targets = torch.tensor([[1, 0, np.nan], [0, np.nan, 1], [np.nan, np.nan, np.nan], [1, 1, 0], [0, 0, 1]], dtype=torch.float32)
    loss = model(images, targets)
    logits = model(images)
    total, count = 0.0, 0
    for i in range(5):
        for j in range(3):
            if torch.isnan(targets[i, j]):
                continue
            p = torch.sigmoid(logits[i, j])
            y = float(targets[i, j])
            total += -(model.loss.pos_weight[j] * y * torch.log(p) + (1 - y) * torch.log(1 - p))
            count += 1
    assert float(loss.detach()) == pytest.approx(float(total.detach()) / count, rel=1e-5)
    loss.backward()  # the NaN entries give no NaN gradient
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_a_multilabel_finetune_has_one_output_per_finding_and_resumes(tmp_path):
    from cxrssl.data.phantom import write_phantom_dataset
    from cxrssl.eval.multilabel import findings_split, findings_task, finetune_findings
    from cxrssl.eval.probe import ProbeSettings

    manifest = write_phantom_dataset(tmp_path / "data", n=160, size=64, seed=5, progress=False, findings=True)
    settings = ProbeSettings(findings=())
    task = load_task(manifest, 32, progress=False, settings=settings)
    findings = findings_task(task.manifest, settings)
    train, test, _, _ = findings_split(findings)
    spec = BackboneSpec.random("resnet18", 32, 0)
    fit, tuned = finetune_findings(spec, task, findings, train, test, QUICK, min_patients=2)
    assert tuned.model.head.out_features == len(fit.thresholds) == len(findings.names)
    assert fit.test_scores.shape == (len(test), len(findings.names)) and np.isfinite(fit.test_scores).all()
    assert set(fit.metrics) == set(fit.scored) and len(tuned.val_auc) == 2
    with pytest.raises(KeyboardInterrupt):
        finetune(spec, task, findings.targets, findings.patients, train, test, QUICK, work_dir=tmp_path / "state", stop_after_epoch=1)
    resumed = finetune(spec, task, findings.targets, findings.patients, train, test, QUICK, work_dir=tmp_path / "state")
    assert resumed.val_auc == tuned.val_auc
    np.testing.assert_allclose(resumed.test_scores, tuned.test_scores, atol=1e-6)


def _interrupted(args, folder, stop_after_epoch=1):
    with pytest.raises(KeyboardInterrupt):
        finetune(*args, work_dir=folder, stop_after_epoch=stop_after_epoch)


def _kill_between_weights_and_record(monkeypatch):
    """The next state save stops after its weights file is in place and before its record is: a kill in that window."""

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(finetune_module, "atomic_write_json", killed)


DAMAGED_STATES = {
    "a record torn by the kill": lambda folder: (folder / "finetune_state.json").write_text('{"format": "cxrssl-checkpoint/1", "ar'),
    "a record naming missing weights": lambda folder: [p.unlink() for p in folder.glob("*.safetensors")],
    "weights replaced by other bytes": lambda folder: [p.write_bytes(p.read_bytes()[:-8] + b"\0" * 8) for p in folder.glob("*.safetensors")],
    "a record with an impossible epoch": lambda folder: _edit_record(folder, epoch=7),
    "a record with a damaged optimiser": lambda folder: _edit_record(folder, optimizer={"param_groups": "x", "scalars": {}}),
    "a record with a damaged key": lambda folder: _edit_record(folder, key="not a key"),
}


def _edit_record(folder, **changes):
    import json

    record = json.loads((folder / "finetune_state.json").read_text())
    record.update(changes)
    (folder / "finetune_state.json").write_text(json.dumps(record))


def test_a_kill_between_new_weights_and_their_record_resumes_from_the_old_state(phantom_task, tmp_path, monkeypatch, capsys):
    task, targets, split = phantom_task
    args = (
        BackboneSpec.random("resnet18", 32, 0),
        task,
        targets,
        task.manifest.patient_keys,
        split.train,
        split.test,
        FinetuneSettings(epochs=3, batch_size=16),
    )
    whole = finetune(*args)
    folder = tmp_path / "state"
    _interrupted(args, folder)
    with monkeypatch.context() as patched:
        _kill_between_weights_and_record(patched)
        with pytest.raises(KeyboardInterrupt):
            finetune(*args, work_dir=folder)  # epoch 2's weights written, its record not
    assert len(list(folder.glob("*.safetensors"))) == 2  # the old state is still whole beside the new weights
    capsys.readouterr()
    resumed = finetune(*args, work_dir=folder)
    assert capsys.readouterr().err == ""  # resumed from epoch 1's complete state, nothing to warn about
    assert resumed.val_auc == whole.val_auc and resumed.chosen_epoch == whole.chosen_epoch
    np.testing.assert_array_equal(resumed.test_scores, whole.test_scores)


@pytest.mark.parametrize("damage", sorted(DAMAGED_STATES))
def test_a_damaged_state_is_said_and_the_finetune_starts_over_to_the_same_result(phantom_task, tmp_path, capsys, damage):
    task, targets, split = phantom_task
    args = (BackboneSpec.random("resnet18", 32, 0), task, targets, task.manifest.patient_keys, split.train, split.test, QUICK)
    whole = finetune(*args)
    folder = tmp_path / "state"
    _interrupted(args, folder)
    assert [p.name[:20] for p in folder.glob("*.safetensors")] == ["finetune_state_0001_"]
    DAMAGED_STATES[damage](folder)
    capsys.readouterr()
    again = finetune(*args, work_dir=folder)
    err = capsys.readouterr().err
    assert "the fine-tune starts over" in err and len(err.strip().splitlines()) == 1
    assert again.val_auc == whole.val_auc and again.chosen_epoch == whole.chosen_epoch
    np.testing.assert_array_equal(again.test_scores, whole.test_scores)
    assert not folder.exists()


def test_the_state_key_covers_images_seed_targets_and_settings(phantom_task, tmp_path):
    task, targets, split = phantom_task
    spec = BackboneSpec.random("resnet18", 32, 0)
    args = (spec, task, targets, task.manifest.patient_keys, split.train, split.test, QUICK)
    folder = tmp_path / "state"
    _interrupted(args, folder)
    bigger = load_task(task.manifest.path, 40, progress=False)  # same rows, other pixels
    others = {
        "images": (BackboneSpec.random("resnet18", 40, 0), bigger, *args[2:]),
        "backbone": (BackboneSpec.random("resnet18", 32, 1), *args[1:]),
        "targets": (spec, task, 1 - targets, *args[3:]),
        "seed": (*args[:-1], FinetuneSettings(epochs=2, batch_size=16, seed=1)),
        "augmentation": (*args[:-1], FinetuneSettings(epochs=2, batch_size=16, augment=finetune_module.AugmentConfig())),
    }
    for name, other in others.items():
        with pytest.raises(FinetuneError, match="made with other data, settings or backbone") as error:
            finetune(*other, work_dir=folder)
        assert f"delete {folder} to start again" in str(error.value), name
