import json
import shutil
from dataclasses import replace

import pytest
import torch

from cxrssl import __version__
from cxrssl.checkpoint import load_backbone, load_tensors
from cxrssl.config import load_pretrain_config
from cxrssl.data.manifest import read_manifest
from cxrssl.errors import ConfigError, CxrsslError, TrainingDiverged
from cxrssl.run import RunFolder
from cxrssl.ssl.methods import METHODS
from cxrssl.train import pretrain


def tiny_config(**changes):
    small = {"image_size": 32, "batch_size": 16, "epochs": 3, "hidden_features": 32, "out_features": 16, "keep_epochs": ()}
    return load_pretrain_config("demo", {**small, **changes})


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"method": "moco", "queue_size": 16},
        {"method": "byol"},
        {"lr_schedule": "cosine", "warmup_epochs": 1.5},
        {"positives": "patient", "small_crops": 2},
        {"method": "moco", "queue_size": 16, "positives": "patient", "small_crops": 3},
        {"method": "byol", "positives": "patient"},
    ],
    ids=["simclr", "moco", "byol", "cosine", "simclr-patient-multicrop", "moco-patient-multicrop", "byol-patient"],
)
def test_resumed_run_reproduces_the_uninterrupted_losses_and_weights(tmp_path, phantom_manifest, changes):
    config = tiny_config(**changes)
    whole = pretrain(phantom_manifest, tmp_path / "whole", config, progress=False)
    first = pretrain(phantom_manifest, tmp_path / "split", config, progress=False, stop_after_epoch=1)
    assert len(first.losses) == 1
    status = json.loads((tmp_path / "split" / "status.json").read_text())
    assert status == {**status, "state": "running", "epochs_done": 1}  # not looking complete
    resumed = pretrain(phantom_manifest, tmp_path / "split", config, resume=True, progress=False)
    assert resumed.losses == whole.losses
    assert len(whole.losses) == 3 and len(set(whole.losses)) == 3
    final_whole, _ = load_tensors(tmp_path / "whole" / "checkpoints" / "epoch_0003.json")
    final_resumed, _ = load_tensors(tmp_path / "split" / "checkpoints" / "epoch_0003.json")
    for key, value in final_whole.items():
        torch.testing.assert_close(final_resumed[key], value, rtol=0, atol=0)
    # The whole resumable state too: momentum targets, MoCo's queue and its pointer, the optimiser.
    state_whole, _ = load_tensors(tmp_path / "whole" / "state" / "last.json")
    state_resumed, _ = load_tensors(tmp_path / "split" / "state" / "last.json")
    assert state_whole.keys() == state_resumed.keys()
    for key, value in state_whole.items():
        torch.testing.assert_close(state_resumed[key], value, rtol=0, atol=0, msg=key)
    assert [row["epoch"] for row in RunFolder(tmp_path / "split").read_log()] == ["1", "2", "3"]
    # Any method's checkpoint is a plain backbone to every evaluation verb, and says what made it.
    backbone, metadata = load_backbone(tmp_path / "split" / "checkpoints" / "epoch_0003.json")
    assert metadata["method"] == config.method and set(metadata["method_settings"]) == set(METHODS[config.method].settings)
    assert backbone(torch.randn(2, 1, 32, 32)).shape == (2, 512)
    assert json.loads((tmp_path / "split" / "status.json").read_text())["state"] == "complete"


def test_checkpoint_rebuilds_the_backbone_from_files_alone(tmp_path, phantom_manifest):
    config = tiny_config(epochs=2, keep_epochs=(1,))
    result = pretrain(phantom_manifest, tmp_path / "run", config, progress=False)
    # Epoch 1 is in the keep-list, the last epoch is always kept.
    assert [p.name for p in result.checkpoints] == ["epoch_0001.json", "epoch_0002.json"]
    backbone, metadata = load_backbone(result.checkpoints[-1])
    assert metadata["arch"] == "resnet18" and metadata["image_size"] == 32 and metadata["epoch"] == 2
    assert metadata["in_channels"] == 1 and metadata["feature_dim"] == 512
    assert metadata["config"]["batch_size"] == 16
    tensors, _ = load_tensors(result.checkpoints[-1])
    assert set(tensors) >= {"backbone.conv1.weight", "head.0.weight", "head.3.weight"}
    # The rebuilt backbone computes what the saved weights define.
    reference = torch.nn.Module()
    from cxrssl.models import build_backbone

    reference = build_backbone("resnet18")
    reference.load_state_dict({k[len("backbone.") :]: v for k, v in tensors.items() if k.startswith("backbone.")})
    images = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(backbone(images), reference.eval()(images))
    assert backbone(images).shape == (2, 512)


@pytest.mark.parametrize("read_loss_every", [1, 16])  # every step as on a CPU; seldom, as on a GPU
def test_diverging_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, phantom_manifest, monkeypatch, read_loss_every):
    import cxrssl.ssl.methods.simclr as methods
    import cxrssl.train as train

    monkeypatch.setattr(train, "sync_interval", lambda device: read_loss_every)

    calls = {"n": 0}
    real_loss = methods.nt_xent_loss

    def loss_that_explodes(*args, **kwargs):
        calls["n"] += 1
        value = real_loss(*args, **kwargs)
        return value * float("nan") if calls["n"] > 4 else value  # 3 steps per epoch

    monkeypatch.setattr(methods, "nt_xent_loss", loss_that_explodes)
    with pytest.raises(TrainingDiverged) as caught:
        pretrain(phantom_manifest, tmp_path / "run", tiny_config(), progress=False)
    message = str(caught.value)
    assert "nan at epoch 2, step 2" in message and "epoch_0001.json" in message and "--resume" in message
    state = json.loads((tmp_path / "run" / "state" / "last.json").read_text())
    assert state["epoch"] == 1
    load_backbone(tmp_path / "run" / "checkpoints" / "epoch_0001.json")  # intact
    assert json.loads((tmp_path / "run" / "status.json").read_text()) == {"state": "diverged", "epoch": 2, "step": 2, "cxrssl_version": __version__}


def test_fraction_is_recorded(tmp_path, phantom_manifest):
    pretrain(phantom_manifest, tmp_path / "run", tiny_config(fraction=0.6, epochs=1, batch_size=8), progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["fraction"] == 0.6 and saved["patients_used"] < saved["patients_in_manifest"]
    assert len(read_manifest(tmp_path / "run" / "pretext_manifest.csv")) == saved["images_used"]


def test_unreadable_images_are_listed_and_skipped(tmp_path, phantom_manifest):
    manifest = read_manifest(phantom_manifest)
    (phantom_manifest.parent / "images" / "zzz_broken.png").write_bytes(b"not a png")
    from cxrssl.data.manifest import Manifest, ManifestRow

    broken = Manifest([*manifest.rows, ManifestRow("images/zzz_broken.png", "px", "")], manifest.root)
    result = pretrain(broken, tmp_path / "run", tiny_config(epochs=1), progress=False)
    assert [path for path, _ in result.unreadable] == [str(phantom_manifest.parent / "images" / "zzz_broken.png")]
    assert "zzz_broken.png" in (tmp_path / "run" / "unreadable.csv").read_text()
    assert result.images == len(manifest)


def test_clear_errors(tmp_path, phantom_manifest):
    with pytest.raises(ConfigError, match="larger than the 48 readable images"):
        pretrain(phantom_manifest, tmp_path / "a", tiny_config(batch_size=64), progress=False)
    pretrain(phantom_manifest, tmp_path / "b", tiny_config(epochs=1), progress=False)
    with pytest.raises(CxrsslError, match="already holds a run; pass --resume"):
        pretrain(phantom_manifest, tmp_path / "b", tiny_config(epochs=1), progress=False)
    with pytest.raises(ConfigError, match="temperature differ"):
        pretrain(phantom_manifest, tmp_path / "b", tiny_config(epochs=2, temperature=0.1), resume=True, progress=False)


def test_a_dataset_with_no_readable_image_is_refused(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"")
    (tmp_path / "m.csv").write_text("path,patient_id,label\nbroken.png,p1,\n")
    with pytest.raises(CxrsslError, match="none of its 1 images could be read"):
        pretrain(tmp_path / "m.csv", tmp_path / "run", tiny_config(), progress=False)


def test_pretraining_from_a_cache_matches_pretraining_from_the_files(tmp_path, phantom_manifest):
    from cxrssl.data.cache import build_cache

    config = tiny_config(epochs=1)
    build_cache(read_manifest(phantom_manifest), tmp_path / "cache", config.image_size, workers=1, progress=False)
    from_files = pretrain(phantom_manifest, tmp_path / "files", config, progress=False)
    from_cache = pretrain(tmp_path / "cache", tmp_path / "cached", config, progress=False)
    assert from_cache.losses == from_files.losses and from_cache.images == from_files.images
    assert json.loads((tmp_path / "cached" / "config.json").read_text())["pixels_from"].startswith("cache ")


def test_resuming_a_finished_run_trains_nothing_and_stays_complete(tmp_path, phantom_manifest):
    config = tiny_config(epochs=1)
    first = pretrain(phantom_manifest, tmp_path / "run", config, progress=False)
    again = pretrain(phantom_manifest, tmp_path / "run", replace(config, keep_epochs=(1,)), resume=True, progress=False)
    assert again.losses == first.losses
    assert json.loads((tmp_path / "run" / "status.json").read_text())["state"] == "complete"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None, reason="torch.compile on a CPU needs a C++ compiler")
def test_compiled_training_matches_eager_and_saves_plain_names(tmp_path, phantom_manifest):
    config = tiny_config(epochs=1, amp=False)
    eager = pretrain(phantom_manifest, tmp_path / "eager", config, progress=False)
    compiled = pretrain(phantom_manifest, tmp_path / "compiled", replace(config, compile=True), progress=False)
    # Fused kernels round differently and Adam's first steps amplify that (rel 1e-3 seen).
    assert compiled.losses == pytest.approx(eager.losses, rel=1e-2)
    eager_weights, _ = load_tensors(eager.checkpoints[-1])
    compiled_weights, _ = load_tensors(compiled.checkpoints[-1])
    assert compiled_weights.keys() == eager_weights.keys()  # no torch.compile prefix leaks into checkpoints
    load_backbone(compiled.checkpoints[-1])


KILLER = """
import os, sys
from cxrssl.config import load_pretrain_config
from cxrssl.train import pretrain

limit, after = int(sys.argv[3]), sys.argv[4] == "after"
calls, real = [0], os.replace


def replace(source, target):  # every committed write of a run ends in os.replace
    calls[0] += 1
    if calls[0] == limit and not after:
        os._exit(9)  # killed just before this write is committed
    real(source, target)
    if calls[0] == limit:
        os._exit(9)  # killed just after it


os.replace = replace
config = load_pretrain_config("demo", {"image_size": 32, "batch_size": 16, "epochs": 3, "hidden_features": 32, "out_features": 16,
                                       "keep_epochs": [], "monitor_images": 16})
pretrain(sys.argv[1], sys.argv[2], config, progress=False, resume=os.path.isdir(sys.argv[2]))
"""


def test_a_run_killed_at_any_write_resumes_to_the_uninterrupted_result(tmp_path, phantom_manifest):
    import random
    import subprocess
    import sys

    config = tiny_config(keep_epochs=(), monitor_images=16)
    whole = pretrain(phantom_manifest, tmp_path / "whole", config, progress=False)
    expected_log = RunFolder(tmp_path / "whole").read_log()
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    # About 8 committed writes per epoch (checkpoint, state, log, status) plus the run's start:
    # a seeded sample of points, each killed just before or just after the write.
    points = sorted(random.Random(7).sample(range(1, 30), 6))
    for number, point in enumerate(points):
        when = "before" if number % 2 else "after"
        folder = tmp_path / f"killed_{point}_{when}"
        killed = subprocess.run(
            [sys.executable, str(script), str(phantom_manifest), str(folder), str(point), when], capture_output=True, text=True, timeout=300
        )
        assert killed.returncode in (9, 0), killed.stderr[-2000:]
        resumed = pretrain(phantom_manifest, folder, config, resume=True, progress=False)
        assert resumed.losses == whole.losses, (point, when)
        run = RunFolder(folder)
        assert run.read_log() == [
            {**row, "images_per_s": got["images_per_s"], "wall_s": got["wall_s"]} for row, got in zip(expected_log, run.read_log())
        ]
        assert json.loads(run.status.read_text())["state"] == "complete"
        final, _ = load_tensors(run.checkpoint(3))
        reference, _ = load_tensors(tmp_path / "whole" / "checkpoints" / "epoch_0003.json")
        for key, value in reference.items():
            torch.testing.assert_close(final[key], value, rtol=0, atol=0)
        assert not list(folder.rglob(".*.tmp")) and not run.lock.exists()
        assert [p.name for p in (folder / "state").glob("*.safetensors")] == ["last_0003.safetensors"]


def test_resume_refuses_other_data_and_a_second_process(tmp_path, phantom_manifest):
    config = tiny_config(epochs=2)
    pretrain(phantom_manifest, tmp_path / "run", config, progress=False, stop_after_epoch=1)
    other = read_manifest(phantom_manifest).select(range(40))
    with pytest.raises(ConfigError, match=r"is not the data this run was trained on .*resume with --data"):
        pretrain(other, tmp_path / "run", config, resume=True, progress=False)
    run = RunFolder(tmp_path / "run")
    with run.locked():  # as if another process were training it
        with pytest.raises(CxrsslError, match="is being trained by process"):
            pretrain(phantom_manifest, tmp_path / "run", config, resume=True, progress=False)
    assert pretrain(phantom_manifest, tmp_path / "run", config, resume=True, progress=False).losses[-1] > 0


def test_a_folder_that_is_not_a_run_is_never_written_into(tmp_path, phantom_manifest):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "unreadable.csv").write_text("my notes")
    (folder / "config.json").write_text("{}")
    with pytest.raises(CxrsslError, match="is not empty and is not a cxrssl run folder"):
        pretrain(phantom_manifest, folder, tiny_config(epochs=1), progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "unreadable.csv"]
    assert (folder / "unreadable.csv").read_text() == "my notes" and (folder / "config.json").read_text() == "{}"


def test_a_run_killed_before_its_first_state_starts_again_and_a_failure_is_recorded(tmp_path, phantom_manifest, monkeypatch):
    import cxrssl.train as train

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train, "_save_epoch", broken)
    with pytest.raises(OSError):
        pretrain(phantom_manifest, tmp_path / "run", tiny_config(epochs=1), progress=False)
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "failed" and "No space left" in status["reason"]
    monkeypatch.undo()
    # Nothing was saved: a plain start and --resume both begin again at epoch 1, nothing to delete.
    assert len(pretrain(phantom_manifest, tmp_path / "run", tiny_config(epochs=1), progress=False).losses) == 1


def test_positives_and_small_crops_change_the_training_and_the_monitor_logs_a_knn_auc(tmp_path, phantom_manifest):
    plain = pretrain(phantom_manifest, tmp_path / "plain", tiny_config(epochs=1), progress=False)
    patient = pretrain(phantom_manifest, tmp_path / "patient", tiny_config(epochs=1, positives="patient"), progress=False)
    crops = pretrain(phantom_manifest, tmp_path / "crops", tiny_config(epochs=1, small_crops=2), progress=False)
    assert len({plain.losses[0], patient.losses[0], crops.losses[0]}) == 3
    config = json.loads((tmp_path / "patient" / "config.json").read_text())
    assert config["pretrain"]["positives"] == "patient" and "films have another film of their group" in config["positives"]
    assert config["cpu"]  # the machine that ran it, for the time per arm
    monitored = pretrain(phantom_manifest, tmp_path / "knn", tiny_config(epochs=2, monitor=str(phantom_manifest)), progress=False)
    values = [float(row["knn_auc"]) for row in RunFolder(monitored.run_dir).read_log()]
    assert len(values) == 2 and all(0 <= v <= 1 for v in values)
    assert "knn_auc" not in RunFolder(plain.run_dir).read_log()[0]  # no monitor, no column: old logs read the same


def test_views_settings_are_refused_in_one_line(tmp_path, phantom_manifest):
    with pytest.raises(ConfigError, match="method byol does not take small crops"):
        tiny_config(method="byol", small_crops=2)
    with pytest.raises(ConfigError, match="positives must be one of views, patient, study"):
        tiny_config(positives="ward")
    with pytest.raises(ConfigError, match="small_crop_size must be from 32 pixels"):
        tiny_config(small_crops=2, small_crop_size=64)
    with pytest.raises(ConfigError, match="positives study needs a study_id column"):
        pretrain(phantom_manifest, tmp_path / "study", tiny_config(epochs=1, positives="study"), progress=False)
    unlabelled = tmp_path / "unlabelled.csv"
    unlabelled.write_text("path,patient_id,label\n" + "".join(f"{row.path},{row.patient_id},\n" for row in read_manifest(phantom_manifest).rows[:8]))
    shutil.copytree(phantom_manifest.parent / "images", tmp_path / "images")
    with pytest.raises(ConfigError, match="--monitor needs a manifest with two classes"):
        pretrain(phantom_manifest, tmp_path / "knn", tiny_config(epochs=1, monitor=str(unlabelled)), progress=False)
