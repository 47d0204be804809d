"""Property tests of everything cxrssl loads back from its own saved files.

Saved models (``model.json`` + tensors), checkpoint JSON, fine-tune state records and
feature-cache files are damaged at random: values in the JSON replaced by any JSON
value (or removed), bytes flipped or cut, probe tensors replaced by tensors of other
shapes and values. The only outcomes allowed: the file loads with values that are
usable (bounded sizes, finite numbers), or one ``CxrsslError`` line; for the fine-tune
state and the feature cache, which are recomputed when damaged, the state or features
load whole or are set aside (``None``). Any other exception is a traceback a user would see.
"""

import copy
import json
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cxrssl.checkpoint import MAX_IMAGE_SIZE, checkpoint_metadata, load_backbone, save_weights
from cxrssl.errors import CxrsslError
from cxrssl.models import build_backbone
from tests.test_fuzz import FUZZ, Blob, _mutate, mutations

DELETE = object()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def damaged(data, record):
    """``record`` with 1-3 values, at any depth, replaced by any JSON value or removed."""
    record = copy.deepcopy(record)
    for _ in range(data.draw(st.integers(1, 3))):
        parent, key = None, None
        node = record
        while isinstance(node, (dict, list)) and node and (parent is None or data.draw(st.booleans())):
            keys = sorted(node) if isinstance(node, dict) else list(range(len(node)))
            parent, key = node, data.draw(st.sampled_from(keys))
            node = node[key]
        if parent is None:
            continue
        value = data.draw(st.one_of(st.just(DELETE), json_values))
        if value is DELETE:
            parent.pop(key)
        else:
            parent[key] = value
    return record


def one_line(error: CxrsslError) -> bool:
    return bool(str(error).strip()) and "\n" not in str(error).strip()


def _copy_with(folder, pristine, json_name, text):
    """A fresh folder holding ``text`` as the JSON and hard links to the pristine weights (the weights are not rewritten)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in pristine.iterdir():
        if path.suffix == ".safetensors":
            os.link(path, folder / path.name)
    (folder / json_name).write_text(text)
    return folder / json_name


# --- saved models ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    from cxrssl.eval.model import FindingsModel, LinearProbe, save_model

    torch.manual_seed(0)
    backbone = build_backbone("resnet18")
    rng = np.random.default_rng(0)
    binary = LinearProbe(rng.normal(size=512), rng.random(512) + 0.5, rng.normal(size=512), 0.3, "PNEUMONIA", "NORMAL", 0.4, 0.5)
    findings = FindingsModel(
        ("Edema", "Effusion"),
        rng.normal(size=512),
        rng.random(512) + 0.5,
        rng.normal(size=(2, 512)),
        rng.normal(size=2),
        np.array([0.3, 0.6]),
        np.array([0.1, 1.0]),
    )
    folders = {}
    for name, probe in (("binary", binary), ("findings", findings)):
        folders[name] = tmp_path_factory.mktemp(name)
        save_model(folders[name], backbone, probe, "resnet18", 64, "random resnet18 (seed 0)", {"auc": 0.9})
    return folders


def _loads_usable_or_one_line(path):
    from cxrssl.eval.model import load_model

    try:
        model = load_model(path)
    except CxrsslError as error:
        assert one_line(error), str(error)
        return
    assert 1 <= model.image_size <= MAX_IMAGE_SIZE and isinstance(model.backbone_description, str)
    probabilities = model.probe.probability(np.zeros((2, 512)))
    assert np.isfinite(probabilities).all()
    thresholds = np.atleast_1d(model.probe.thresholds if hasattr(model.probe, "thresholds") else model.probe.threshold)
    assert np.isfinite(thresholds).all() and ((thresholds >= 0) & (thresholds <= 1)).all()


@FUZZ
@given(data=st.data(), kind=st.sampled_from(["binary", "findings"]))
def test_damaged_saved_model_json_loads_usable_or_is_one_line(tmp_path_factory, saved_models, data, kind):
    pristine = saved_models[kind]
    record = json.loads((pristine / "model.json").read_text())
    text = json.dumps(damaged(data, record))
    _loads_usable_or_one_line(_copy_with(tmp_path_factory.mktemp("model"), pristine, "model.json", text))


@FUZZ
@given(flips=mutations, cut=st.one_of(st.none(), st.integers(0, 2000)), kind=st.sampled_from(["binary", "findings"]))
def test_saved_model_json_with_flipped_bytes_loads_usable_or_is_one_line(tmp_path_factory, saved_models, flips, cut, kind):
    pristine = saved_models[kind]
    folder = tmp_path_factory.mktemp("model")
    path = _copy_with(folder, pristine, "model.json", "")
    path.write_bytes(_mutate((pristine / "model.json").read_bytes(), flips, cut))
    _loads_usable_or_one_line(path)


@settings(FUZZ, max_examples=25)
@given(
    kind=st.sampled_from(["binary", "findings"]),
    tensor=st.sampled_from(["mean", "scale", "coef", "intercept", "thresholds", "c"]),
    shape=st.lists(st.sampled_from([0, 1, 2, 3, 511, 512, 513]), max_size=2),
    value=st.floats(width=32) | st.sampled_from([0.0, 1.0, -1.0]),
    dtype=st.sampled_from([torch.float64, torch.float32, torch.float16, torch.int64, torch.bool]),
)
def test_saved_models_with_probe_tensors_of_other_shapes_or_values_load_usable_or_are_one_line(
    tmp_path_factory, saved_models, kind, tensor, shape, value, dtype
):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    pristine = saved_models[kind]
    folder = tmp_path_factory.mktemp("model")
    (folder / "model.json").write_bytes((pristine / "model.json").read_bytes())
    weights = pristine / "model.safetensors"
    with safe_open(str(weights), "pt") as handle:
        header = handle.metadata()
    tensors = load_file(str(weights))
    tensors[f"probe.{tensor}"] = torch.full(shape, value, dtype=torch.float64).to(dtype)
    save_file(tensors, str(folder / "model.safetensors"), metadata=header)
    _loads_usable_or_one_line(folder / "model.json")


# --- checkpoints ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint_folder(tmp_path_factory):
    torch.manual_seed(0)
    weights = {f"backbone.{k}": v for k, v in build_backbone("resnet18").state_dict().items()}
    folder = tmp_path_factory.mktemp("checkpoint")
    save_weights(folder / "epoch_0001.json", weights, checkpoint_metadata("resnet18", 32, 1, {"fraction": 0.5}, method="simclr"))
    return folder


@FUZZ
@given(data=st.data())
def test_damaged_checkpoint_json_loads_or_is_one_line(tmp_path_factory, checkpoint_folder, data):
    from cxrssl.eval.features import BackboneSpec

    record = json.loads((checkpoint_folder / "epoch_0001.json").read_text())
    path = _copy_with(tmp_path_factory.mktemp("ck"), checkpoint_folder, "epoch_0001.json", json.dumps(damaged(data, record)))
    try:
        spec = BackboneSpec.from_checkpoint(path)
        backbone, metadata = load_backbone(path)
    except CxrsslError as error:
        assert one_line(error), str(error)
        return
    assert 1 <= spec.image_size <= MAX_IMAGE_SIZE and backbone.conv1.weight.shape == (64, 1, 7, 7)
    assert spec.pretext_fraction is None or isinstance(spec.pretext_fraction, (int, float))


# --- fine-tune state ------------------------------------------------------------------


@pytest.fixture(scope="module")
def finetune_state(tmp_path_factory, phantom_manifest):
    """A fine-tune interrupted after its first epoch: its state folder, and a model and optimiser to load it into."""
    from cxrssl.data.images import open_image_set
    from cxrssl.eval import finetune as finetune_module
    from cxrssl.eval.features import BackboneSpec
    from cxrssl.eval.probe import binary_targets, probe_split

    images = open_image_set(phantom_manifest, 32, progress=False)
    targets, _, _ = binary_targets(images.manifest.labels)
    split = probe_split(images.manifest.patient_keys, images.manifest.labels, images.manifest.splits)
    settings = finetune_module.FinetuneSettings(epochs=2, batch_size=8, val_fraction=0.3)
    spec = BackboneSpec.random("resnet18", 32, 0)
    folder = tmp_path_factory.mktemp("state") / "state"
    with pytest.raises(KeyboardInterrupt):
        finetune_module.finetune(
            spec, images, targets, images.manifest.patient_keys, split.train, split.test, settings, work_dir=folder, stop_after_epoch=1
        )
    fit_rows, _ = finetune_module.carve_validation(images.manifest.patient_keys, [str(t) for t in targets], split.train, 0.3, 0)
    model, optimizer = finetune_module._start(spec, targets, fit_rows, False, settings, torch.device("cpu"))
    key = json.loads((folder / "finetune_state.json").read_text())["key"]
    return folder, model, optimizer, key


def _state_loads_whole_or_is_set_aside(path, finetune_state, capsys):
    from cxrssl.eval.finetune import _State

    _, model, optimizer, key = finetune_state
    try:
        loaded = _State(path.parent, "resnet18", 32).load(model, optimizer, key, 2)
    except CxrsslError as error:  # only a record of another fine-tune is refused
        assert one_line(error) and "made with other data, settings or backbone" in str(error)
        return
    if loaded is None:
        assert "the fine-tune starts over" in capsys.readouterr().err
        return
    epoch, curve, (best_auc, best_epoch, best) = loaded
    assert epoch == 1 and len(curve) == 1 and best_epoch == 1 and np.isfinite(best_auc) and best.keys() == model.state_dict().keys()


@settings(FUZZ, max_examples=40)
@given(data=st.data())
def test_damaged_finetune_state_records_resume_whole_or_start_over(tmp_path_factory, finetune_state, capsys, data):
    folder = finetune_state[0]
    record = json.loads((folder / "finetune_state.json").read_text())
    text = json.dumps(damaged(data, record))
    _state_loads_whole_or_is_set_aside(
        _copy_with(tmp_path_factory.mktemp("st") / "state", folder, "finetune_state.json", text), finetune_state, capsys
    )


@settings(FUZZ, max_examples=30)
@given(flips=mutations, cut=st.one_of(st.none(), st.integers(0, 4000)))
def test_finetune_state_records_with_flipped_bytes_resume_whole_or_start_over(tmp_path_factory, finetune_state, capsys, flips, cut):
    folder = finetune_state[0]
    path = _copy_with(tmp_path_factory.mktemp("st") / "state", folder, "finetune_state.json", "")
    path.write_bytes(_mutate((folder / "finetune_state.json").read_bytes(), flips, cut))
    _state_loads_whole_or_is_set_aside(path, finetune_state, capsys)


# --- feature cache --------------------------------------------------------------------


@pytest.fixture(scope="module")
def cached_features(tmp_path_factory):
    from cxrssl.eval.features import cache_digest

    features = np.random.default_rng(0).normal(size=(12, 16)).astype(np.float32)
    key = "gap-last-layer/1|random|resnet18|0|images"
    path = tmp_path_factory.mktemp("cache") / "entry.npz"
    with open(path, "wb") as handle:
        np.savez(handle, features=features, key=np.array(key), digest=np.array(cache_digest(key, features)))
    return Blob(path.read_bytes()), features, key


@FUZZ
@given(flips=mutations, cut=st.one_of(st.none(), st.integers(0, 2000)))
def test_damaged_feature_cache_files_are_used_whole_or_recomputed(tmp_path_factory, cached_features, capsys, flips, cut):
    from cxrssl.eval.features import read_cached_features

    pristine, features, key = cached_features
    path = tmp_path_factory.mktemp("cache") / "entry.npz"
    path.write_bytes(_mutate(pristine, flips, cut))
    got = read_cached_features(path, key, len(features))
    if got is None:
        err = capsys.readouterr().err
        assert f"{path}: cached features not used" in err and err.count("\n") == 1
    else:
        assert np.array_equal(got, features)


@FUZZ
@given(
    entry=st.sampled_from(["features", "key", "digest"]),
    shape=st.lists(st.integers(0, 13), max_size=3),
    value=st.floats(width=32) | st.text(max_size=8),
    dtype=st.sampled_from(["float32", "float64", "int8", "U8", "object"]),
)
def test_feature_cache_files_with_other_entries_are_used_whole_or_recomputed(tmp_path_factory, cached_features, capsys, entry, shape, value, dtype):
    from cxrssl.eval.features import read_cached_features

    _, features, key = cached_features
    entries = {"features": features, "key": np.array(key), "digest": None}
    from cxrssl.eval.features import cache_digest

    entries["digest"] = np.array(cache_digest(key, features))
    try:
        entries[entry] = np.full(shape, value, dtype=dtype)
    except (ValueError, TypeError, OverflowError):
        entries[entry] = np.full(shape, str(value))
    path = tmp_path_factory.mktemp("cache") / "entry.npz"
    with open(path, "wb") as handle:
        np.savez(handle, **entries)  # object arrays are pickled: reading them back must be refused, not unpickled
    got = read_cached_features(path, key, len(features))
    if got is None:
        assert "cached features not used" in capsys.readouterr().err
    else:
        assert np.array_equal(got, features)
