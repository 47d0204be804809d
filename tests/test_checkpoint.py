import json

import pytest
import torch

from cxrssl.checkpoint import CheckpointError, load_backbone, read_metadata, save_weights
from cxrssl.models import build_backbone


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    backbone = build_backbone("resnet18")
    weights = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    metadata = {"format": "cxrssl-checkpoint/1", "arch": "resnet18", "image_size": 32, "epoch": 2}
    return save_weights(tmp_path / "run" / "epoch_0002.json", weights, metadata)


def _rewrite(path, **changes):
    metadata = json.loads(path.read_text())
    metadata.update(changes)
    for key, value in changes.items():
        if value is None:
            metadata.pop(key)
    path.write_text(json.dumps(metadata))


def test_a_checkpoint_loads_its_own_weights(checkpoint):
    metadata, weights = read_metadata(checkpoint)
    assert weights == checkpoint.with_suffix(".safetensors") and metadata["epoch"] == 2
    assert load_backbone(checkpoint)[0].conv1.weight.shape == (64, 1, 7, 7)


@pytest.mark.parametrize("name", ["../elsewhere.safetensors", "/tmp/x.safetensors", "sub/x.safetensors", "weights.pth", 3])
def test_weights_named_outside_the_checkpoints_folder_are_refused(checkpoint, name):
    _rewrite(checkpoint, weights=name)
    with pytest.raises(CheckpointError, match="outside its own folder"):
        read_metadata(checkpoint)


def test_feature_identity_is_of_the_weights_actually_loaded(checkpoint, tmp_path):
    from cxrssl.eval.features import BackboneSpec

    other = save_weights(
        checkpoint.parent / "epoch_0003.json",
        {f"backbone.{k}": torch.zeros_like(v) for k, v in load_backbone(checkpoint)[0].state_dict().items()},
        {"format": "cxrssl-checkpoint/1", "arch": "resnet18", "image_size": 32, "epoch": 2},
    )
    before = BackboneSpec.from_checkpoint(checkpoint).identity()
    _rewrite(checkpoint, weights=other.with_suffix(".safetensors").name)  # same folder: allowed, and then loaded
    after = BackboneSpec.from_checkpoint(checkpoint).identity()
    assert after != before and after == BackboneSpec.from_checkpoint(other).identity()


@pytest.mark.parametrize(
    "damage,message",
    [
        ({"epoch": None}, "lacks epoch"),
        ({"arch": None, "weights": None}, "lacks weights, arch"),
        ({"format": "other/1"}, "not a cxrssl checkpoint"),
        ({"epoch": 5}, "weights are from epoch 2 but metadata says 5"),
    ],
)
def test_damaged_metadata_is_one_clear_line(checkpoint, damage, message):
    _rewrite(checkpoint, **damage)
    with pytest.raises(CheckpointError, match=message):
        load_backbone(checkpoint)


def test_truncated_or_foreign_weights_are_one_clear_line(checkpoint):
    weights = checkpoint.with_suffix(".safetensors")
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not readable safetensors|cannot be read"):
        load_backbone(checkpoint)
    from safetensors.torch import save_file

    save_file({"backbone.conv1.weight": torch.zeros(3, 3)}, str(weights), metadata={"epoch": "2"})
    with pytest.raises(CheckpointError, match="do not fit a resnet18"):
        load_backbone(checkpoint)


def test_a_non_object_json_is_refused(checkpoint):
    checkpoint.write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="not a cxrssl checkpoint"):
        read_metadata(checkpoint)


def test_a_checkpoint_of_an_unknown_method_is_one_clear_line(checkpoint):
    _rewrite(checkpoint, method="swav")
    with pytest.raises(CheckpointError, match="made by method 'swav', which this cxrssl does not know"):
        load_backbone(checkpoint)
    _rewrite(checkpoint, method="byol")
    assert load_backbone(checkpoint)[1]["method"] == "byol"


@pytest.mark.parametrize(
    "damage,message",
    [
        ({"image_size": 2049}, r"image_size 2049 is not a size in pixels \(1 to 2048\)"),
        ({"image_size": 10**12}, "is not a size in pixels"),
        ({"image_size": True}, "is not a size in pixels"),
        ({"epoch": 10**18}, "epoch .* is not a count"),
        ({"feature_dim": 2048}, "feature_dim 2048 does not fit a resnet18"),
        ({"in_channels": 3}, "in_channels 3 does not fit a resnet18"),
    ],
)
def test_values_that_size_allocations_are_bounded(checkpoint, damage, message):
    _rewrite(checkpoint, **damage)
    with pytest.raises(CheckpointError, match=message) as error:
        load_backbone(checkpoint)
    assert "\n" not in str(error.value) and str(checkpoint) in str(error.value)


def nan_checkpoint(folder, value=float("nan")):
    """A resnet18 checkpoint whose first convolution holds one NaN (or infinite) weight, as a diverged run would leave."""
    from cxrssl.checkpoint import checkpoint_metadata

    torch.manual_seed(0)
    weights = {f"backbone.{k}": v.clone() for k, v in build_backbone("resnet18").state_dict().items()}
    weights["backbone.conv1.weight"][0, 0, 0, 0] = value
    return save_weights(folder / "epoch_0001.json", weights, checkpoint_metadata("resnet18", 32, 1, {}))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_weights_with_nan_or_inf_are_refused_with_one_line(tmp_path, value):
    path = nan_checkpoint(tmp_path, value)
    with pytest.raises(CheckpointError, match=r"its weights hold NaN or infinite values \(conv1.weight\)") as error:
        load_backbone(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


@pytest.mark.parametrize("verb", ["probe", "finetune", "compare"])
def test_probe_finetune_and_compare_name_a_nan_checkpoint_in_one_line(tmp_path, phantom_manifest, capsys, verb):
    from cxrssl.cli import main

    path = nan_checkpoint(tmp_path)
    args = [verb, "--checkpoint", str(path), "--task", str(phantom_manifest), "-o", str(tmp_path / ("out" if verb == "compare" else "out.json"))]
    args += {
        "probe": ["--quiet"],
        "finetune": ["--quiet", "--epochs", "1"],
        "compare": ["--init", "random", "--quiet", "--labels", "all", "--folds", "2", "--repeats", "1", "--jobs", "1"],
    }[verb]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert str(path) in err and "NaN or infinite" in err and len(err.splitlines()) == 1 and "Traceback" not in err
