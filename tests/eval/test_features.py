import hashlib
from dataclasses import replace

import numpy as np
import pytest
import torch

from cxrssl.data.images import open_image_set
from cxrssl.errors import CxrsslError
from cxrssl.eval import features as features_module
from cxrssl.eval.features import BackboneSpec, extract_features, features_for, feature_cache_dir
from cxrssl.models import normalize_pixels


@pytest.fixture
def images(phantom_manifest):
    return open_image_set(phantom_manifest, 32, progress=False)


def test_features_are_the_eval_mode_backbone_output(images):
    spec = BackboneSpec.random("resnet18", 32, seed=4)
    backbone = spec.build()
    expected = backbone(normalize_pixels(images.batch(np.arange(5)).unsqueeze(1))).detach().numpy()
    got = extract_features(backbone, images, batch_size=2)[:5]
    assert got.shape == (5, 512) and np.allclose(got, expected, atol=1e-5)
    assert not backbone.training


def test_second_extraction_comes_from_the_cache(images, monkeypatch):
    spec = BackboneSpec.random("resnet18", 32, seed=1)
    first = features_for(spec, images)
    assert len(list(feature_cache_dir().glob("*.npz"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("recomputed")

    monkeypatch.setattr(features_module, "extract_features", fail)
    assert np.array_equal(features_for(spec, images), first)


def test_the_key_follows_weights_images_and_size(images, phantom_manifest):
    features_for(BackboneSpec.random("resnet18", 32, seed=1), images)
    features_for(BackboneSpec.random("resnet18", 32, seed=2), images)  # other weights
    features_for(BackboneSpec.random("resnet18", 32, seed=1), images.select(range(10)))  # other images
    features_for(BackboneSpec.random("resnet18", 32, seed=1), open_image_set(phantom_manifest, 40, progress=False))  # other size
    assert len(list(feature_cache_dir().glob("*.npz"))) == 4


@pytest.mark.parametrize("arch, widths", [("resnet18", (64, 128, 256, 512)), ("resnet50", (256, 512, 1024, 2048))])
def test_blocks_readout_is_every_stage_pooled_in_order(images, arch, widths):
    spec = BackboneSpec.random(arch, 32, seed=4)
    backbone = spec.build()
    stages = {}
    for name in ("layer1", "layer2", "layer3", "layer4"):
        getattr(backbone, name).register_forward_hook(lambda module, inputs, output, name=name: stages.__setitem__(name, output))
    pixels = normalize_pixels(images.batch(np.arange(3)).unsqueeze(1))
    last = backbone(pixels).detach()
    expected = torch.cat([stages[name].mean(dim=(2, 3)) for name in ("layer1", "layer2", "layer3", "layer4")], dim=1).detach()
    got = extract_features(replace(spec, readout="blocks").build_reader(), images, batch_size=2)[:3]
    assert got.shape == (3, sum(widths))
    assert np.allclose(got, expected.numpy(), atol=1e-5)
    assert np.allclose(got[:, -widths[-1] :], last.numpy(), atol=1e-5)  # the last stage is the default readout


def test_readouts_are_cached_apart_and_the_default_keeps_its_key(images, monkeypatch):
    last = features_for(BackboneSpec.random("resnet18", 32, seed=1), images)
    blocks = features_for(BackboneSpec.random("resnet18", 32, seed=1, readout="blocks"), images)
    assert last.shape[1] == 512 and blocks.shape[1] == 960
    assert len(list(feature_cache_dir().glob("*.npz"))) == 2
    assert np.allclose(blocks[:, -512:], last, atol=1e-5)
    # features cached before readouts existed are still found under their old key
    old_key = hashlib.sha256(f"{features_module.FEATURE_VERSION}|random|resnet18|1|torch {torch.__version__}|{images.digest}".encode()).hexdigest()[:32]
    assert (feature_cache_dir() / f"{old_key}.npz").is_file()


def test_an_unknown_readout_is_refused():
    with pytest.raises(CxrsslError, match="unknown readout 'middle'"):
        BackboneSpec.random("resnet18", 32, readout="middle")


def test_checkpoint_identity_is_its_weights_content(tmp_path):
    from cxrssl.checkpoint import checkpoint_metadata, save_weights
    from cxrssl.models import build_backbone

    def save(name, seed):
        torch.manual_seed(seed)
        weights = {f"backbone.{k}": v for k, v in build_backbone("resnet18").state_dict().items()}
        return save_weights(tmp_path / name, weights, checkpoint_metadata("resnet18", 32, 3, {"fraction": 0.1}))

    a, a_again, b = BackboneSpec.from_checkpoint(save("a.json", 0)), BackboneSpec.from_checkpoint(save("c.json", 0)), BackboneSpec.from_checkpoint(save("b.json", 1))
    assert a.identity() == a_again.identity() != b.identity()
    assert (a.epoch, a.pretext_fraction, a.image_size) == (3, 0.1, 32)
    with pytest.raises(CxrsslError, match="no such checkpoint"):
        BackboneSpec.from_checkpoint(tmp_path / "missing.json")
