import json

import numpy as np
import pytest
import torch

from cxrssl.errors import CxrsslError
from cxrssl.eval.model import LinearProbe, load_model, save_model
from cxrssl.eval.probe import make_classifier
from cxrssl.models import build_backbone


@pytest.fixture
def fitted():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(120, 512))  # a resnet18's feature width: a saved probe must fit its backbone
    features[:, :6] = features[:, :6] * [1, 2, 3, 4, 5, 6] + [10, -3, 0, 2, 1, 7]
    targets = (features[:, 0] + rng.normal(size=120) > 10).astype(int)
    pipeline = make_classifier(0.5).fit(features, targets)
    return features, pipeline, LinearProbe.from_pipeline(pipeline, "PNEUMONIA", "NORMAL", 0.5)


def test_probe_probabilities_equal_the_pipeline(fitted):
    features, pipeline, probe = fitted
    assert np.allclose(probe.probability(features), pipeline.predict_proba(features)[:, 1], atol=1e-12)


def test_folded_layer_gives_the_pipeline_logit(fitted):
    features, pipeline, probe = fitted
    logits = probe.folded()(torch.from_numpy(features).float()).detach().numpy()[:, 0]
    assert np.allclose(logits, pipeline.decision_function(features), atol=1e-3)


def test_saved_model_round_trip(tmp_path, fitted):
    _, _, probe = fitted
    torch.manual_seed(0)
    backbone = build_backbone("resnet18")
    save_model(tmp_path / "m", backbone, probe, "resnet18", 64, "random resnet18 (seed 0)", {"auc": 0.9})
    loaded = load_model(tmp_path / "m")
    assert (loaded.probe.positive, loaded.probe.negative, loaded.image_size, loaded.probe.c) == ("PNEUMONIA", "NORMAL", 64, 0.5)
    assert np.array_equal(loaded.probe.coef, probe.coef) and loaded.probe.intercept == probe.intercept
    for name, tensor in backbone.state_dict().items():
        assert torch.equal(loaded.backbone.state_dict()[name], tensor)
    assert not any(p.suffix == ".pkl" for p in (tmp_path / "m").iterdir())


@pytest.mark.parametrize("damage", [lambda m: m.pop("probe"), lambda m: m["probe"].pop("threshold"), lambda m: m["probe"].update(c="half")])
def test_a_saved_model_with_a_damaged_probe_is_refused_with_one_line(tmp_path, fitted, damage):
    from cxrssl.checkpoint import CheckpointError

    save_model(tmp_path / "m", build_backbone("resnet18"), fitted[2], "resnet18", 64, "random resnet18 (seed 0)", {"auc": 0.9})
    path = tmp_path / "m" / "model.json"
    metadata = json.loads(path.read_text())
    damage(metadata)
    path.write_text(json.dumps(metadata))
    with pytest.raises(CheckpointError, match="the saved probe is incomplete") as error:
        load_model(tmp_path / "m")
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_a_pretraining_checkpoint_is_not_a_saved_model(tmp_path):
    from cxrssl.checkpoint import checkpoint_metadata, save_weights

    weights = {f"backbone.{k}": v for k, v in build_backbone("resnet18").state_dict().items()}
    save_weights(tmp_path / "epoch_0001.json", weights, checkpoint_metadata("resnet18", 32, 1, {}))
    with pytest.raises(CxrsslError, match="is a pretraining checkpoint, not a saved model"):
        load_model(tmp_path / "epoch_0001.json")
    with pytest.raises(CxrsslError, match="no model.json"):
        load_model(tmp_path / "nothing")


def _findings_model(tmp_path):
    from cxrssl.eval.model import FindingsModel

    rng = np.random.default_rng(1)
    probe = FindingsModel(
        ("Edema", "Effusion"),
        rng.normal(size=512),
        rng.random(512) + 0.5,
        rng.normal(size=(2, 512)),
        rng.normal(size=2),
        np.array([0.3, 0.6]),
        np.array([0.1, 1.0]),
    )
    save_model(tmp_path / "m", build_backbone("resnet18"), probe, "resnet18", 64, "random resnet18 (seed 0)", {})
    return probe


def test_a_per_finding_model_round_trips_and_its_folded_layer_gives_its_logits(tmp_path):
    probe = _findings_model(tmp_path)
    loaded = load_model(tmp_path / "m").probe
    assert loaded.names == probe.names and np.array_equal(loaded.thresholds, probe.thresholds)
    features = np.random.default_rng(2).normal(size=(10, 512))
    np.testing.assert_allclose(loaded.probability(features), probe.probability(features), atol=1e-12)
    logits = loaded.folded()(torch.from_numpy(features).float()).detach().numpy()
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), probe.probability(features), atol=1e-5)


@pytest.mark.parametrize(
    "names, tensor, value",
    [
        (["Edema", "Edema"], None, None),
        ("EE", None, None),
        (["", "Effusion"], None, None),
        (["Edema"], None, None),
        (["Edema", "Effusion"], "probe.scale", 0.0),
        (["Edema", "Effusion"], "probe.thresholds", 1.5),
        (["Edema", "Effusion"], "probe.coef", float("nan")),
    ],
)
def test_a_per_finding_model_with_impossible_names_or_values_is_refused(tmp_path, names, tensor, value):
    from safetensors.torch import load_file, save_file

    from cxrssl.checkpoint import CheckpointError

    _findings_model(tmp_path)
    path = tmp_path / "m" / "model.json"
    metadata = json.loads(path.read_text())
    metadata["probe"]["findings"] = names
    path.write_text(json.dumps(metadata))
    if tensor:
        from safetensors import safe_open

        weights = tmp_path / "m" / "model.safetensors"
        with safe_open(weights, "pt") as handle:
            kept = handle.metadata()
        tensors = load_file(weights)
        tensors[tensor][0] = value
        save_file(tensors, weights, metadata=kept)
    with pytest.raises(CheckpointError, match="the saved probe is incomplete") as error:
        load_model(tmp_path / "m")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.update(image_size=4096), r"image_size 4096 is not a size in pixels \(1 to 2048\)"),
        (lambda m: m["probe"].update(threshold=float("nan")), r"the threshold nan is not a number within 0-1"),
        (lambda m: m["probe"].update(threshold=1.5), r"the threshold 1.5 is not a number within 0-1"),
        (lambda m: m["probe"].update(threshold=True), r"the threshold True is not a number"),
        (lambda m: m["probe"].update(positive="NORMAL"), r"are not distinct, non-empty names"),
        (lambda m: m["probe"].update(positive="P" * 201), r"of at most 200 characters"),
        (lambda m: m["probe"].update(negative=["NORMAL"]), r"are not distinct, non-empty names"),
        (lambda m: m.update(backbone_description=["x"]), r"the backbone's description is not text"),
    ],
)
def test_every_value_a_saved_model_sizes_or_computes_with_is_checked_on_load(tmp_path, fitted, change, message):
    save_model(tmp_path / "m", build_backbone("resnet18"), fitted[2], "resnet18", 64, "random resnet18 (seed 0)", {"auc": 0.9})
    path = tmp_path / "m" / "model.json"
    metadata = json.loads(path.read_text())
    change(metadata)
    path.write_text(json.dumps(metadata))
    with pytest.raises(CxrsslError, match=message) as error:
        load_model(tmp_path / "m")
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_a_probe_of_another_feature_width_or_a_backbone_with_nan_weights_is_refused(tmp_path, fitted):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    save_model(tmp_path / "m", build_backbone("resnet18"), fitted[2], "resnet18", 64, "random resnet18 (seed 0)", {})
    weights = tmp_path / "m" / "model.safetensors"
    with safe_open(weights, "pt") as handle:
        kept = handle.metadata()
    original = load_file(weights)
    for name, value, message in [
        ("probe.coef", torch.zeros(2048, dtype=torch.float64), r"coef \(2048,\) \(expected \(512,\)\) do not fit two classes on 512 features"),
        ("backbone.fc.weight" if "backbone.fc.weight" in original else "backbone.conv1.weight", None, "its weights hold NaN or infinite values"),
    ]:
        tensors = dict(original)
        if value is None:
            tensors[name] = tensors[name].clone()
            tensors[name].view(-1)[0] = float("nan")
        else:
            tensors[name] = value
        save_file(tensors, weights, metadata=kept)
        with pytest.raises(CxrsslError, match=message):
            load_model(tmp_path / "m")


def test_a_model_saved_before_the_description_was_renamed_still_loads(tmp_path, fitted):
    save_model(tmp_path / "m", build_backbone("resnet18"), fitted[2], "resnet18", 64, "random resnet18 (seed 0)", {})
    path = tmp_path / "m" / "model.json"
    metadata = json.loads(path.read_text())
    metadata["source"] = metadata.pop("backbone_description")
    path.write_text(json.dumps(metadata))
    assert load_model(tmp_path / "m").backbone_description == "random resnet18 (seed 0)"
