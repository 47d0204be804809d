import pytest
import torch
import torchvision

from cxrssl.eval.features import BackboneSpec
from cxrssl.models import build_backbone
from cxrssl.weights import WeightsError, imagenet_file, initial_backbone, load_init


@pytest.fixture
def fake_imagenet(tmp_path, monkeypatch):
    """A torchvision-format resnet18 state dict where torchvision keeps ImageNet weights."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path, _ = imagenet_file("resnet18")
    path.parent.mkdir(parents=True)
    torch.manual_seed(5)
    state = torchvision.models.resnet18(weights=None).state_dict()  # RGB stem and fc, as torchvision ships
    torch.save(state, path)
    return path, state


def test_imagenet_weights_load_with_the_rgb_stem_folded_and_the_classifier_dropped(fake_imagenet):
    _, state = fake_imagenet
    backbone = initial_backbone("resnet18", "imagenet")
    torch.testing.assert_close(backbone.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True))
    torch.testing.assert_close(backbone.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    # A grey image through the folded stem gives what the RGB network gives to three equal channels.
    rgb = torchvision.models.resnet18(weights=None)
    rgb.load_state_dict(state)
    rgb.fc = torch.nn.Identity()
    grey = torch.rand(2, 1, 64, 64)
    torch.testing.assert_close(backbone.eval()(grey), rgb.eval()(grey.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-5)


def test_missing_imagenet_weights_name_the_file_and_where_it_comes_from(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(WeightsError, match=r"resnet18-f37072fd\.pth: ImageNet weights of resnet18 are not there.*download\.pytorch\.org"):
        BackboneSpec.from_init("imagenet", "resnet18", 64)


def test_weights_of_another_architecture_are_one_clear_line(tmp_path):
    path = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(WeightsError, match=r"r50\.pth: not weights of a resnet18 \(.*needs"):
        load_init(build_backbone("resnet18"), "resnet18", str(path))


@pytest.mark.parametrize("content", [b"", b"not a pickle at all", b"PK\x03\x04broken zip"])
def test_damaged_or_foreign_files_are_one_clear_line(tmp_path, content):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=r"weights\.pth: not a readable state dict"):
        load_init(build_backbone("resnet18"), "resnet18", str(path))


def test_pickled_code_is_not_run(tmp_path):
    class Payload:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled')",))

    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": Payload()}, path, _use_new_zipfile_serialization=True)
    with pytest.raises(WeightsError, match="not a readable state dict"):
        load_init(build_backbone("resnet18"), "resnet18", str(path))


def test_a_cxrssl_checkpoint_and_a_prefixed_state_dict_continue_pretraining(tmp_path, phantom_manifest, monkeypatch):
    from cxrssl.config import load_pretrain_config
    from cxrssl.train import pretrain

    config = load_pretrain_config("demo", {"image_size": 32, "batch_size": 16, "epochs": 1, "hidden_features": 16, "out_features": 8})
    first = pretrain(phantom_manifest, tmp_path / "first", config, progress=False)
    checkpoint = first.checkpoints[-1]
    continued = initial_backbone("resnet18", str(checkpoint))
    from cxrssl.checkpoint import load_backbone

    torch.testing.assert_close(continued.state_dict(), load_backbone(checkpoint)[0].state_dict())
    prefixed = tmp_path / "prefixed.pth"
    torch.save({f"module.{k}": v for k, v in continued.state_dict().items()}, prefixed)
    torch.testing.assert_close(initial_backbone("resnet18", str(prefixed)).state_dict(), continued.state_dict())
    with pytest.raises(WeightsError, match="is a resnet18 checkpoint, not resnet34"):
        initial_backbone("resnet34", str(checkpoint))
    # Continued pretraining starts from those weights (a second run, --init CHECKPOINT).
    second = load_pretrain_config(
        "demo", {"image_size": 32, "batch_size": 16, "epochs": 1, "hidden_features": 16, "out_features": 8, "init": str(checkpoint), "method": "byol"}
    )
    import cxrssl.train as train

    loaded = []
    real = train.load_init
    monkeypatch.setattr(train, "load_init", lambda backbone, arch, init: loaded.append(init) or real(backbone, arch, init))
    pretrain(phantom_manifest, tmp_path / "second", second, progress=False, stop_after_epoch=0)
    assert loaded == [str(checkpoint)]
    from cxrssl.run import RunFolder

    assert RunFolder(tmp_path / "second").read_config()["pretrain"]["init"] == str(checkpoint)


def test_imagenet_spec_has_its_own_feature_identity_and_row_name(fake_imagenet):
    spec = BackboneSpec.from_init("imagenet", "resnet18", 64)
    assert spec.init_label == "ImageNet" and "ImageNet" in spec.description
    assert spec.identity().startswith("init|resnet18|") and spec.identity() != BackboneSpec.random("resnet18", 64).identity()
    assert BackboneSpec.from_init("random", "resnet18", 64).init_label == "random init"
