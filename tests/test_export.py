"""``cxrssl export``: exported state dicts load into torchvision and timm and compute cxrssl's features; ONNX reproduces predict."""

import argparse
import json

import numpy as np
import pytest
import torch
import torchvision
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from cxrssl.checkpoint import checkpoint_metadata, load_backbone, load_tensors, save_weights
from cxrssl.data.images import decode_manifest
from cxrssl.data.manifest import read_manifest
from cxrssl.errors import CxrsslError
from cxrssl.eval.features import extract_features
from cxrssl.eval.model import FindingsModel, LinearProbe, save_model
from cxrssl.eval.probe import make_classifier
from cxrssl.exporter import ExportError, backbone_state_dict, export, export_backbone, export_onnx
from cxrssl.models import PIXEL_MEAN, PIXEL_STD, build_backbone, normalize_pixels

SIZE = 32


@pytest.fixture(scope="module")
def run(tmp_path_factory, phantom_manifest):
    """A real MoCo run of one epoch: its checkpoint holds the query backbone, its state also the key backbone."""
    from cxrssl.config import load_pretrain_config
    from cxrssl.train import pretrain

    config = load_pretrain_config(
        "demo",
        {
            "image_size": SIZE,
            "batch_size": 16,
            "epochs": 1,
            "hidden_features": 32,
            "out_features": 16,
            "keep_epochs": (),
            "method": "moco",
            "queue_size": 16,
        },
    )
    folder = tmp_path_factory.mktemp("export-run") / "run"
    result = pretrain(phantom_manifest, folder, config, progress=False)
    return result.checkpoints[-1], folder / "state" / "last.json"


@pytest.fixture(scope="module")
def checkpoint(run):
    return run[0]


@pytest.fixture(scope="module")
def images(phantom_manifest):
    return decode_manifest(read_manifest(phantom_manifest), SIZE, progress=False)


@pytest.fixture(scope="module")
def reference(checkpoint, images):
    """cxrssl's own features of the phantoms under the checkpoint's backbone."""
    return extract_features(load_backbone(checkpoint)[0], images, device="cpu")


def grey_pixels(images) -> torch.Tensor:
    """(N, 1, S, S) grey values 0-255, as cxrssl decodes them."""
    return images.batch(np.arange(len(images))).unsqueeze(1).float()


def read(path) -> dict:
    return load_file(str(path)) if path.suffix == ".safetensors" else torch.load(path, map_location="cpu", weights_only=True)


def torchvision_network(arch: str, in_channels: int, num_classes: int = 0) -> nn.Module:
    network = getattr(torchvision.models, arch)(weights=None, num_classes=max(num_classes, 1))
    if in_channels == 1:
        network.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    if num_classes == 0:
        network.fc = nn.Identity()
    return network


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_an_exported_checkpoint_loads_strictly_into_torchvision_and_gives_cxrssls_features(tmp_path, checkpoint, images, reference, suffix):
    result = export_backbone(checkpoint, tmp_path / f"backbone{suffix}")
    assert (result.arch, result.in_channels, result.num_classes, result.source_kind) == ("resnet18", 1, 0, "checkpoint")
    tensors = read(result.destination)
    stock = {key for key in torchvision.models.resnet18().state_dict() if not key.startswith("fc.")}
    assert type(tensors) is dict and all(torch.is_tensor(value) for value in tensors.values())  # tensors only, nothing pickled
    assert set(tensors) == stock and tensors["conv1.weight"].shape == (64, 1, 7, 7)
    in_memory = backbone_state_dict(checkpoint)
    assert in_memory.keys() == tensors.keys() and all(torch.equal(in_memory[key], tensors[key]) for key in tensors)
    network = torchvision_network("resnet18", 1)
    network.load_state_dict(tensors, strict=True)
    with torch.no_grad():
        features = network.eval()(normalize_pixels(grey_pixels(images))).numpy()
    assert features.shape == (len(images), 512)
    np.testing.assert_allclose(features, reference, atol=1e-5, rtol=0)


def test_moco_exports_its_query_backbone_not_the_momentum_key(tmp_path, run):
    checkpoint, state = run
    from_checkpoint = read(export_backbone(checkpoint, tmp_path / "a.safetensors").destination)
    from_state = read(export_backbone(state, tmp_path / "b.safetensors").destination)
    saved, _ = load_tensors(state)
    assert from_checkpoint.keys() == from_state.keys()
    assert all(torch.equal(from_checkpoint[key], from_state[key]) for key in from_checkpoint)
    assert all(torch.equal(from_state[key], saved[f"backbone.{key}"]) for key in from_state)
    assert not all(torch.equal(from_state[key], saved[f"backbone_key.{key}"]) for key in from_state if key.endswith("weight"))


def test_a_resnet50_exports_with_torchvisions_bottleneck_names(tmp_path):
    torch.manual_seed(1)
    backbone = build_backbone("resnet50").eval()
    path = save_weights(
        tmp_path / "epoch_0003.json", {f"backbone.{k}": v for k, v in backbone.state_dict().items()}, checkpoint_metadata("resnet50", SIZE, 3, {})
    )
    result = export_backbone(path, tmp_path / "r50.safetensors")
    network = torchvision_network("resnet50", 1)
    network.load_state_dict(read(result.destination), strict=True)
    pixels = normalize_pixels(torch.randint(0, 256, (3, 1, SIZE, SIZE)))
    with torch.no_grad():
        torch.testing.assert_close(network.eval()(pixels), backbone(pixels), atol=1e-5, rtol=0)


def test_the_rgb_stem_on_a_grey_image_repeated_over_three_channels_gives_the_same_features(tmp_path, checkpoint, images, reference):
    from torchvision.transforms.v2.functional import normalize

    from cxrssl.weights import read_state_dict

    result = export_backbone(checkpoint, tmp_path / "rgb.safetensors", rgb=True)
    assert result.in_channels == 3 and result.mean == (PIXEL_MEAN,) * 3 and result.std == (PIXEL_STD,) * 3
    tensors = read(result.destination)
    grey_stem = load_tensors(checkpoint)[0]["backbone.conv1.weight"]
    assert tensors["conv1.weight"].shape == (64, 3, 7, 7)
    torch.testing.assert_close(tensors["conv1.weight"], (grey_stem / 3).expand(-1, 3, -1, -1))
    with safe_open(str(result.destination), framework="pt") as handle:
        header = handle.metadata()
    assert (header["arch"], header["in_channels"], json.loads(header["pixel_std"])) == ("resnet18", "3", [0.25, 0.25, 0.25])

    stock = torchvision.models.resnet18(weights=None)  # a stock three-channel network, classifier removed
    stock.fc = nn.Identity()
    stock.load_state_dict(tensors, strict=True)
    # The documented recipe: pixels / 255 repeated over RGB, Normalize(mean=[0.5] * 3, std=[0.25] * 3).
    rgb = normalize(grey_pixels(images).repeat(1, 3, 1, 1) / 255.0, [0.5] * 3, [0.25] * 3)
    with torch.no_grad():
        np.testing.assert_allclose(stock.eval()(rgb).numpy(), reference, atol=1e-5, rtol=0)
        # A colour image is seen as its unweighted channel mean by the grey network.
        colour = torch.randn(2, 3, SIZE, SIZE)
        grey = load_backbone(checkpoint)[0]
        torch.testing.assert_close(stock(colour), grey(colour.mean(dim=1, keepdim=True)), atol=1e-5, rtol=0)
    # cxrssl reads its own RGB export back (--init) as the grey stem it came from.
    torch.testing.assert_close(read_state_dict(result.destination, "resnet18")["conv1.weight"], grey_stem, atol=1e-6, rtol=0)


def test_timm_resnets_load_the_exports(tmp_path, checkpoint, images, reference):
    timm = pytest.importorskip("timm", reason="timm is not installed (pip install --no-deps timm)")
    pixels = normalize_pixels(grey_pixels(images))
    for rgb, in_chans, inputs in [(True, 3, pixels.repeat(1, 3, 1, 1)), (False, 1, pixels)]:
        result = export_backbone(checkpoint, tmp_path / f"timm_{in_chans}.pth", rgb=rgb)
        network = timm.create_model("resnet18", pretrained=False, num_classes=0, in_chans=in_chans)
        network.load_state_dict(read(result.destination), strict=True)
        with torch.no_grad():
            np.testing.assert_allclose(network.eval()(inputs).numpy(), reference, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, checkpoint, images, reference):
    """A probe fitted on the checkpoint's features of the phantoms, saved as `probe --save-model` does."""
    targets = np.array([row.label == "PNEUMONIA" for row in images.manifest.rows], dtype=int)
    assert 0 < targets.sum() < len(targets)
    probe = LinearProbe.from_pipeline(make_classifier(1.0).fit(reference, targets), "PNEUMONIA", "NORMAL", 1.0)
    folder = tmp_path_factory.mktemp("export-model") / "model"
    save_model(folder, load_backbone(checkpoint)[0], probe, "resnet18", SIZE, str(checkpoint), {})
    return folder


@pytest.fixture(scope="module")
def image_paths(images):
    return [str(images.manifest.root / row.path) for row in images.manifest.rows[:5]]


def predicted(model, paths):
    from cxrssl.explain.predict import predict_images

    predictions, unreadable = predict_images(model, paths)
    assert unreadable == [] and len(predictions) == len(paths)
    return predictions


def test_a_saved_model_exports_its_probe_as_fc_and_torchvision_reproduces_predict(tmp_path, saved_model, images, image_paths):
    result = export_backbone(saved_model, tmp_path / "model.pth")
    assert (result.source_kind, result.num_classes) == ("saved model", 1)
    network = torchvision_network("resnet18", 1, num_classes=1)
    network.load_state_dict(read(result.destination), strict=True)
    with torch.no_grad():
        probabilities = torch.sigmoid(network.eval()(normalize_pixels(grey_pixels(images)[:5])))[:, 0].numpy()
    expected = [p.probability for p in predicted(saved_model, image_paths)]
    assert np.ptp(expected) > 1e-3  # the probe tells the images apart, so equality below means something
    np.testing.assert_allclose(probabilities, expected, atol=1e-4, rtol=0)


def onnx_probabilities(path, pixels: torch.Tensor) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"pixels": pixels.numpy().astype(np.float32)})[0]


def test_onnx_of_a_saved_probe_reproduces_predicts_probabilities(tmp_path, saved_model, images, image_paths):
    for name in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(name, reason=f"{name} is not installed (the export extra)")
    import onnx

    result = export_onnx(saved_model, tmp_path / "model.onnx")
    assert (result.format, result.num_classes) == ("onnx", 1)
    expected = np.array([p.probability for p in predicted(saved_model, image_paths)])
    pixels = grey_pixels(images)[:5]
    np.testing.assert_allclose(onnx_probabilities(result.destination, pixels)[:, 0], expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(onnx_probabilities(result.destination, pixels[:1])[:, 0], expected[:1], atol=1e-4, rtol=0)  # any batch size
    properties = {p.key: p.value for p in onnx.load(str(result.destination)).metadata_props}
    assert (properties["positive"], properties["negative"], json.loads(properties["threshold"])) == ("PNEUMONIA", "NORMAL", 0.5)


def test_onnx_of_a_multi_label_model_gives_every_findings_probability(tmp_path, checkpoint, reference, images, image_paths):
    for name in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(name, reason=f"{name} is not installed (the export extra)")
    rng = np.random.default_rng(2)
    width = reference.shape[1]
    probe = FindingsModel(
        ("Edema", "Effusion"),
        reference.mean(0).astype(float),
        reference.std(0).astype(float) + 1e-3,
        rng.normal(size=(2, width)) * 0.1,
        np.array([0.2, -0.3]),
        np.array([0.4, 0.6]),
        np.array([1.0, 1.0]),
    )
    folder = tmp_path / "findings"
    save_model(folder, load_backbone(checkpoint)[0], probe, "resnet18", SIZE, str(checkpoint), {})
    result = export_onnx(folder, tmp_path / "findings.onnx")
    expected = np.array([[p.probabilities["Edema"], p.probabilities["Effusion"]] for p in predicted(folder, image_paths)])
    assert result.num_classes == 2 and np.ptp(expected) > 1e-3
    np.testing.assert_allclose(onnx_probabilities(result.destination, grey_pixels(images)[:5]), expected, atol=1e-4, rtol=0)


def one_line(error) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


def test_bad_sources_and_outputs_are_refused_with_one_line_naming_the_file(tmp_path, checkpoint, saved_model):
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"a": 1}')
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    (tmp_path / "empty").mkdir()
    for source, message in [
        (foreign, "not a cxrssl checkpoint"),
        (notes, "not a cxrssl checkpoint or saved model"),
        (tmp_path / "empty", "a folder without model.json"),
        (tmp_path / "absent.json", "no such file"),
    ]:
        with pytest.raises(CxrsslError, match=message) as error:
            export(source, tmp_path / "out.pth")
        assert str(source) in one_line(error)

    out = tmp_path / "out.bin"
    with pytest.raises(ExportError, match="unknown output format") as error:
        export(checkpoint, out)
    assert str(out) in one_line(error) and not out.exists()
    weights = checkpoint.with_suffix(".safetensors")
    before = weights.read_bytes()
    with pytest.raises(CxrsslError, match="would overwrite the input") as error:
        export(checkpoint, weights)
    assert str(weights) in one_line(error) and weights.read_bytes() == before
    with pytest.raises(CxrsslError, match="would overwrite the input"):
        export(saved_model, saved_model / "model.safetensors", overwrite=True)

    existing = tmp_path / "existing.pth"
    existing.write_bytes(b"keep me")
    with pytest.raises(CxrsslError, match="already exists and was not written by this `cxrssl export`") as error:
        export(checkpoint, existing)
    assert str(existing) in one_line(error) and existing.read_bytes() == b"keep me"
    export(checkpoint, existing, rgb=True, overwrite=True)
    assert read(existing)["conv1.weight"].shape == (64, 3, 7, 7)

    with pytest.raises(ExportError, match="is a pretraining checkpoint, which has no classifier") as error:
        export(checkpoint, tmp_path / "c.onnx")
    assert str(checkpoint) in one_line(error)
    with pytest.raises(ExportError, match="--rgb is for state dicts") as error:
        export(saved_model, tmp_path / "m.onnx", rgb=True)
    one_line(error)
    with pytest.raises(ExportError, match="name it .pth or .safetensors"):
        export_backbone(checkpoint, tmp_path / "x.onnx")
    assert not (tmp_path / "c.onnx").exists() and not (tmp_path / "m.onnx").exists()


def test_onnx_without_its_extra_names_the_extra(tmp_path, saved_model, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnxscript", None)  # as if not installed
    with pytest.raises(CxrsslError, match=r'pip install "cxrssl\[export\]"') as error:
        export_onnx(saved_model, tmp_path / "m.onnx")
    one_line(error)
    assert not (tmp_path / "m.onnx").exists()


def test_a_failing_onnx_exporter_is_one_line_and_writes_nothing(tmp_path, saved_model, monkeypatch):
    pytest.importorskip("onnxscript", reason="onnxscript is not installed (the export extra)")

    def failing(*args, **kwargs):
        raise RuntimeError("an operator the exporter cannot translate\nthe long trace after it")

    monkeypatch.setattr(torch.onnx, "export", failing)
    with pytest.raises(ExportError, match="ONNX exporter failed \\(RuntimeError: an operator the exporter cannot translate\\)") as error:
        export(saved_model, tmp_path / "m.onnx")
    assert str(saved_model) in one_line(error) and not (tmp_path / "m.onnx").exists()


def test_the_export_verb_writes_what_the_library_writes(tmp_path, checkpoint, capsys):
    from cxrssl.cli.export import register, run

    parser = argparse.ArgumentParser(prog="cxrssl")
    register(parser.add_subparsers(dest="verb", required=True))
    out = tmp_path / "verb.safetensors"
    args = parser.parse_args(["export", str(checkpoint), "-o", str(out), "--rgb"])
    assert args.handler is run
    assert run(args) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and str(out) in printed[0] and "3-channel stem" in printed[0]
    library = read(export_backbone(checkpoint, tmp_path / "library.safetensors", rgb=True).destination)
    exported = read(out)
    assert exported.keys() == library.keys() and all(torch.equal(exported[k], library[k]) for k in library)
    with pytest.raises(CxrsslError, match="pass --overwrite"):  # another command's output (the output contract)
        run(parser.parse_args(["export", str(checkpoint), "-o", str(out)]))
    assert run(parser.parse_args(["export", str(checkpoint), "-o", str(out), "--overwrite"])) == 0
    assert read(out)["conv1.weight"].shape == (64, 1, 7, 7)


@pytest.fixture(scope="module")
def blocks_model(tmp_path_factory, checkpoint, images):
    """A probe over every stage's features (the default readout), saved as `probe --save-model` saves it."""
    from cxrssl.eval.features import BlockReadout

    backbone = load_backbone(checkpoint)[0].eval()
    with torch.no_grad():
        features = BlockReadout(backbone)(normalize_pixels(grey_pixels(images))).numpy()
    assert features.shape[1] == 64 + 128 + 256 + 512
    targets = np.array([row.label == "PNEUMONIA" for row in images.manifest.rows], dtype=int)
    pipeline = make_classifier(1.0).fit(features, targets)
    folder = tmp_path_factory.mktemp("export-blocks") / "model"
    save_model(folder, backbone, LinearProbe.from_pipeline(pipeline, "PNEUMONIA", "NORMAL", 1.0), "resnet18", SIZE, str(checkpoint), {}, "blocks")
    return folder, pipeline.predict_proba(features)[:, 1]


def test_a_model_read_at_every_stage_predicts_its_probes_probabilities_and_exports_to_onnx_not_to_fc(tmp_path, blocks_model, images, image_paths):
    from cxrssl.eval.model import load_model

    folder, expected = blocks_model
    assert load_model(folder).readout == "blocks"
    found = np.array([p.probability for p in predicted(folder, image_paths)])
    np.testing.assert_allclose(found, expected[:5], atol=1e-5, rtol=0)
    with pytest.raises(ExportError, match="reads every stage .*export it as .onnx"):
        export_backbone(folder, tmp_path / "model.pth")
    assert not (tmp_path / "model.pth").exists()
    for name in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(name, reason=f"{name} is not installed (the export extra)")
    result = export_onnx(folder, tmp_path / "model.onnx")
    np.testing.assert_allclose(onnx_probabilities(result.destination, grey_pixels(images)[:5])[:, 0], found, atol=1e-4, rtol=0)


def test_heat_maps_of_a_model_read_at_every_stage(tmp_path, blocks_model, image_paths):
    from cxrssl.explain.predict import predict_images

    predictions, _ = predict_images(blocks_model[0], image_paths[:2], heatmaps=tmp_path / "maps")
    assert len(predictions) == 2 and len(list((tmp_path / "maps").glob("*.png"))) == 2
