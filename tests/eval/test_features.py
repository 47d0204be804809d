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
