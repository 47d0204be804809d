import hashlib
from dataclasses import replace

import numpy as np
import pytest
import torch

from cxrssl.data.images import open_image_set
from cxrssl.errors import CxrsslError
from cxrssl.eval import features as features_module
from cxrssl.eval.features import BackboneSpec, extract_features, feature_cache_dir, features_for
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


def test_readouts_are_cached_apart_and_the_last_stage_keeps_its_old_key(images, monkeypatch):
    last = features_for(BackboneSpec.random("resnet18", 32, seed=1, readout="last"), images)
    blocks = features_for(BackboneSpec.random("resnet18", 32, seed=1, readout="blocks"), images)
    assert last.shape[1] == 512 and blocks.shape[1] == 960
    assert len(list(feature_cache_dir().glob("*.npz"))) == 2
    assert np.allclose(blocks[:, -512:], last, atol=1e-5)
    # features cached before readouts existed are still found under their old key
    old_key = hashlib.sha256(f"{features_module.FEATURE_VERSION}|random|resnet18|1|torch {torch.__version__}|{images.digest}".encode()).hexdigest()[
        :32
    ]
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

    a, a_again, b = (
        BackboneSpec.from_checkpoint(save("a.json", 0)),
        BackboneSpec.from_checkpoint(save("c.json", 0)),
        BackboneSpec.from_checkpoint(save("b.json", 1)),
    )
    assert a.identity() == a_again.identity() != b.identity()
    assert (a.epoch, a.pretext_fraction, a.image_size) == (3, 0.1, 32)
    with pytest.raises(CxrsslError, match="no such checkpoint"):
        BackboneSpec.from_checkpoint(tmp_path / "missing.json")


def _forged(path, **entries):
    """Rewrite a cache file with ``entries`` replacing its own (the others kept)."""
    with np.load(path) as stored:
        kept = {name: stored[name] for name in stored.files}
    kept.update(entries)
    with open(path, "wb") as handle:
        np.savez(handle, **kept)


DAMAGES = {
    "other numbers, same shape": lambda path, key, other: _forged(
        path, features=np.random.default_rng(0).normal(size=np.load(path)["features"].shape).astype(np.float32)
    ),
    "other numbers, digest made for them without the key": lambda path, key, other: _forged(
        path,
        features=np.ones_like(np.load(path)["features"]),
        digest=np.array(hashlib.sha256(np.ones_like(np.load(path)["features"]).tobytes()).hexdigest()),
    ),
    "a file of the old format (features only)": lambda path, key, other: _forged_old(path),
    "another key's whole file copied over it": lambda path, key, other: path.write_bytes(other.read_bytes()),
    "NaN under a digest recomputed for them": lambda path, key, other: _forged(
        path,
        features=np.full_like(np.load(path)["features"], np.nan),
        digest=np.array(features_module.cache_digest(key, np.full_like(np.load(path)["features"], np.nan))),
    ),
    "fewer rows under a recomputed digest": lambda path, key, other: _forged(
        path, features=np.load(path)["features"][:5], digest=np.array(features_module.cache_digest(key, np.load(path)["features"][:5]))
    ),
    "truncated": lambda path, key, other: path.write_bytes(path.read_bytes()[:300]),
    "not an npz": lambda path, key, other: path.write_text("features"),
}


def _forged_old(path):
    with np.load(path) as stored:
        features = stored["features"] + 1
    with open(path, "wb") as handle:
        np.savez(handle, features=features)


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_or_replaced_cache_file_is_never_used(images, damage, capsys):
    spec = BackboneSpec.random("resnet18", 32, seed=1)
    fresh = features_for(spec, images, use_cache=False)
    first = features_for(spec, images)
    other = features_for(BackboneSpec.random("resnet18", 32, seed=2), images)
    assert np.array_equal(first, fresh) and not np.array_equal(other, fresh)
    key = features_module.feature_key(spec, images)
    path = feature_cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz"
    other_path = next(p for p in feature_cache_dir().glob("*.npz") if p != path)
    capsys.readouterr()
    DAMAGES[damage](path, key, other_path)
    again = features_for(spec, images)
    assert np.array_equal(again, fresh)  # recomputed, bit for bit
    warning = capsys.readouterr().err
    assert f"{path}: cached features not used" in warning and warning.count("\n") == 1
    assert np.array_equal(features_for(spec, images), fresh) and capsys.readouterr().err == ""  # rewritten whole


def test_a_probe_on_a_replaced_cache_file_gives_the_fresh_auc(images, capsys):
    from cxrssl.eval.probe import ProbeSettings, run_probe

    spec = BackboneSpec.random("resnet18", 32, seed=1)
    manifest = images.manifest
    settings = ProbeSettings(bootstrap=0, folds=2, c_grid=(0.1, 1.0))
    fresh = run_probe(features_for(spec, images, use_cache=False), manifest.labels, manifest.patient_keys, manifest.splits, settings)
    features_for(spec, images)
    path = next(feature_cache_dir().glob("*.npz"))
    DAMAGES["other numbers, same shape"](path, None, None)
    again = run_probe(features_for(spec, images), manifest.labels, manifest.patient_keys, manifest.splits, settings)
    assert again.metrics == fresh.metrics and "cached features not used" in capsys.readouterr().err


def test_features_with_nan_or_inf_are_refused_naming_the_backbone(images, monkeypatch):
    spec = BackboneSpec.random("resnet18", 32, seed=1)
    for value in (np.nan, np.inf):

        def broken(*args, value=value, **kwargs):
            out = np.zeros((len(images), 512), np.float32)
            out[3, 7] = value
            return out

        monkeypatch.setattr(features_module, "extract_features", broken)
        with pytest.raises(
            CxrsslError, match=r"random resnet18 \(seed 1\), blocks readout: its features of 1 of \d+ images hold NaN or infinite values"
        ) as error:
            features_for(spec, images)
        assert "\n" not in str(error.value)
    assert not list(feature_cache_dir().glob("*.npz"))  # nothing cached


@pytest.mark.parametrize("size", [0, 2049, 10**9, 2.5, True])
def test_an_image_size_no_saved_model_could_hold_is_refused_before_any_image_is_decoded(size):
    with pytest.raises(CxrsslError, match=r"--image-size .*: must be a whole number of pixels from 1 to 2048"):
        BackboneSpec.random("resnet18", size)
