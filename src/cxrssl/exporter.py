"""``cxrssl export``: a backbone as a torchvision/timm state dict, or a saved model as ONNX.

Sources
    A pretraining checkpoint's ``.json`` (any method; its ``state/last.json`` too), or
    a saved model: the folder (or its ``model.json``) written by ``cxrssl probe
    --save-model`` or ``cxrssl finetune --save-model``. For MoCo and BYOL the exported
    backbone is the online one (MoCo's query encoder, BYOL's online network): the
    ``backbone.*`` tensors, never the momentum copies (``backbone_key.*``,
    ``backbone_target.*``) that only a resumable state holds.

State dicts (:func:`export_backbone`)
    The output's suffix picks the format: ``.pth`` (or ``.pt``) is ``torch.save`` of a
    plain ``dict`` of tensors (``torch.load(path, weights_only=True)`` reads it),
    ``.safetensors`` the same tensors with a small text header (arch, stem channels,
    pixel normalisation). Tensor names are exactly those of
    ``torchvision.models.<arch>()``'s ``state_dict()``, which timm's ResNets share.

    - From a checkpoint there is no ``fc.*``: load into a network without a
      classifier (``model.fc = torch.nn.Identity()`` for torchvision,
      ``timm.create_model(arch, num_classes=0)`` for timm), strictly.
    - From a saved model, ``fc.*`` is its probe folded into one linear layer (the
      standardisation included): ``num_classes`` outputs, 1 for a binary model (the
      logit of the positive class) or one per finding, in the model's order. Load into
      ``torchvision.models.<arch>(num_classes=K)``; ``sigmoid`` of the output is the
      probability ``cxrssl predict`` prints. Drop the ``fc.*`` keys to keep the backbone.

    The stem: by default one channel, as cxrssl trains it: ``conv1.weight`` is
    ``(64, 1, 7, 7)``; replace the network's ``conv1`` by
    ``torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)`` (timm: ``in_chans=1``) before
    loading. With ``rgb=True`` it is spread over three channels, each the grey filter
    divided by 3, so a stock three-channel network loads it. A convolution is linear
    in its input, so on three channels ``x_r, x_g, x_b`` this stem computes the grey
    stem on their mean ``(x_r + x_g + x_b) / 3``: a grey image repeated over the three
    channels gives exactly the grey network's activations, and a colour image is seen
    as its unweighted channel mean (not its luminance).

    Preprocessing that gives cxrssl's features (``models.normalize_pixels``): grey
    values ``p`` in 0-255, ``x = (p / 255 - PIXEL_MEAN) / PIXEL_STD`` with
    ``PIXEL_MEAN = 0.5`` and ``PIXEL_STD = 0.25``, the same on every channel of an RGB
    stem; with torchvision, ``ToTensor()`` then ``Normalize(mean=[0.5] * 3,
    std=[0.25] * 3)`` (``[0.5]``, ``[0.25]`` for the grey stem), never ImageNet's
    mean and std. Before that, cxrssl decodes an image to 8-bit grey as ``data.io``
    describes (RGB by luminance, 16 bit stretched from its minimum to its maximum,
    DICOM through its window), centre-crops it to a square on its shorter side and
    resizes that bilinearly to the model's image size (``data.io.load_grayscale`` then
    ``data.io.square_resize``); the pooled output before ``fc`` is then the feature
    vector a probe reads.

ONNX (:func:`export_onnx`)
    A saved model, whole, with the dynamo exporter of torch (``torch.onnx.export(...,
    dynamo=True)``, which needs ``onnx`` and ``onnxscript``: the ``export`` extra).
    Input ``pixels``: float32 ``(N, 1, S, S)`` grey values 0-255 as cxrssl decodes
    them (above), ``S`` the model's image size, any batch size ``N``. The graph
    normalises them, applies backbone and folded probe and a sigmoid; output
    ``probabilities``: ``(N, K)``, column 0 of a binary model P(positive), of a
    multi-label model one column per finding: what ``cxrssl predict`` prints. Class
    names, findings and thresholds are in the model's metadata properties.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cxrssl import __version__
from cxrssl.checkpoint import backbone_from_tensors, load_tensors, read_metadata
from cxrssl.errors import CxrsslError
from cxrssl.extras import require
from cxrssl.fileio import atomic_write
from cxrssl.models import PIXEL_MEAN, PIXEL_STD, normalize_pixels
from cxrssl.outputs import Outputs

FORMAT = "cxrssl-export/1"
STATE_DICT_SUFFIXES = (".pth", ".pt", ".safetensors")
ONNX_SUFFIX = ".onnx"
ONNX_OPSET = 18


class ExportError(CxrsslError):
    pass


@dataclass(frozen=True)
class ExportResult:
    """What was written, and what a user needs to load it."""

    destination: Path
    format: str  # "pth", "safetensors" or "onnx"
    arch: str
    source_kind: str  # "checkpoint" or "saved model"
    in_channels: int  # of the stem: 1, or 3 with rgb
    image_size: int  # S: the side, in pixels, that cxrssl resizes images to for this network
    num_classes: int  # outputs of fc (0: no fc) or of the ONNX model
    mean: tuple[float, ...]  # per input channel, on pixels / 255
    std: tuple[float, ...]

    def describe(self) -> str:
        """One line for the command line."""
        if self.format == "onnx":
            size = self.image_size
            return (
                f"wrote {self.destination}: ONNX of the saved {self.arch} model, input pixels (N, 1, {size}, {size}) "
                f"grey 0-255, output probabilities (N, {self.num_classes})"
            )
        head = f"fc with {self.num_classes} output(s) (the probe)" if self.num_classes else "no fc"
        return (
            f"wrote {self.destination}: {self.arch} state dict of the {self.source_kind}, {self.in_channels}-channel stem, {head}; "
            f"normalise pixels/255 with mean {list(self.mean)} std {list(self.std)}"
        )


@dataclass
class _Source:
    path: Path  # the .json
    weights: Path
    metadata: dict
    backbone: nn.Module
    model: object | None  # an eval.model.SavedModel, for a saved model

    @property
    def kind(self) -> str:
        return "saved model" if self.model is not None else "checkpoint"


def _read_source(source: str | Path) -> _Source:
    """The checkpoint or saved model at ``source``, refused with one line when it is neither."""
    from cxrssl.eval.model import MODEL_FILE, load_model  # scikit-learn, imported only when needed

    path = Path(source)
    if path.is_dir():
        if not (path / MODEL_FILE).is_file():
            raise ExportError(
                f"{path}: a folder without {MODEL_FILE}; pass a checkpoint's .json or a folder written by `cxrssl probe --save-model DIR`"
            )
        path = path / MODEL_FILE
    if not path.is_file():
        raise ExportError(f"{path}: no such file; pass a checkpoint's .json (RUN/checkpoints/epoch_NNNN.json) or a saved model's folder")
    if path.suffix not in (".json", ".safetensors"):
        raise ExportError(f"{path}: not a cxrssl checkpoint or saved model; pass a checkpoint's .json or a saved model's folder")
    metadata, weights = read_metadata(path)  # one line when not a cxrssl checkpoint, or damaged
    path = path.with_suffix(".json")  # read_metadata took a .safetensors's metadata from beside it
    if metadata.get("kind") == "probe-model":
        model = load_model(path)
        return _Source(path, weights, metadata, model.backbone, model)
    tensors, _ = load_tensors(path)
    return _Source(path, weights, metadata, backbone_from_tensors(tensors, metadata["arch"], path), None)


def _check_suffix(destination: str | Path, suffixes: tuple[str, ...]) -> None:
    """The output's name says its format: checked before the source is read."""
    destination = Path(destination)
    if destination.suffix.lower() not in suffixes:
        raise ExportError(
            f"{destination}: unknown output format {destination.suffix or '(no suffix)'!r}; name the output .pth, .safetensors or .onnx"
        )


def _check_destination(destination: str | Path, source: _Source, overwrite: bool) -> Path:
    destination = Path(destination)
    # the output contract of every verb: never an input, an existing file only with overwrite
    Outputs("export", {}, files=[destination], inputs=[source.path, source.weights], overwrite=overwrite).check()
    return destination


def spread_stem(weight: torch.Tensor, channels: int = 3) -> torch.Tensor:
    """A one-channel stem ``(out, 1, k, k)`` as ``(out, channels, k, k)``, each channel the filter / channels.

    On an image repeated over the channels it computes what the grey stem does; the
    inverse of ``models.rgb_stem_to_gray`` (which sums the colour filters).
    """
    if weight.ndim != 4 or weight.shape[1] != 1:
        raise ValueError(f"expected a one-channel stem (out, 1, k, k), got {tuple(weight.shape)}")
    return (weight / channels).repeat(1, channels, 1, 1).contiguous()


def backbone_state_dict(source: str | Path, *, rgb: bool = False) -> dict[str, torch.Tensor]:
    """torchvision-named tensors of ``source``'s backbone (and, of a saved model, its probe as ``fc.*``)."""
    return _state_dict(_read_source(source), rgb)


def _state_dict(found: _Source, rgb: bool) -> dict[str, torch.Tensor]:
    tensors = {key: value.detach().cpu().contiguous() for key, value in found.backbone.state_dict().items()}
    if rgb:
        tensors["conv1.weight"] = spread_stem(tensors["conv1.weight"])
    if found.model is not None:
        if found.model.readout != "last":
            raise ExportError(
                f"{found.path}: its probe reads every stage ({found.model.readout} readout), which torchvision's fc (last stage only) cannot hold; "
                f"export it as .onnx, or export its checkpoint for the backbone alone"
            )
        layer = found.model.probe.folded()
        tensors["fc.weight"], tensors["fc.bias"] = layer.weight.detach().contiguous(), layer.bias.detach().contiguous()
    return tensors


def export_backbone(source: str | Path, destination: str | Path, *, rgb: bool = False, overwrite: bool = False) -> ExportResult:
    """Write the backbone of a checkpoint or saved model as a torchvision state dict (see the module's text).

    ``destination``'s suffix picks the format: ``.pth``/``.pt`` (``torch.save`` of a dict
    of tensors) or ``.safetensors``. ``rgb``: a three-channel stem (each channel the grey
    filter / 3). An existing ``destination`` is replaced only with ``overwrite``.
    """
    if Path(destination).suffix.lower() == ONNX_SUFFIX:
        raise ExportError(f"{destination}: an .onnx output is a whole saved model (export_onnx), not a state dict; name it .pth or .safetensors")
    _check_suffix(destination, STATE_DICT_SUFFIXES)
    found = _read_source(source)
    destination = _check_destination(destination, found, overwrite)
    tensors = _state_dict(found, rgb)
    channels = 3 if rgb else 1
    num_classes = int(tensors["fc.weight"].shape[0]) if "fc.weight" in tensors else 0
    if destination.suffix.lower() == ".safetensors":
        from safetensors.torch import save_file

        header = {
            "format": FORMAT,
            "arch": found.metadata["arch"],
            "in_channels": str(channels),
            "num_classes": str(num_classes),
            "pixel_mean": json.dumps([PIXEL_MEAN] * channels),
            "pixel_std": json.dumps([PIXEL_STD] * channels),
            "source": found.kind,
            "method": str(found.metadata.get("method", "simclr")) if found.model is None else "",
            "epoch": str(found.metadata["epoch"]),
            "cxrssl_version": __version__,
        }
        atomic_write(destination, lambda tmp: save_file(tensors, str(tmp), metadata=header))
        kind = "safetensors"
    else:
        atomic_write(destination, lambda tmp: torch.save(tensors, tmp))
        kind = "pth"
    arch, size = found.metadata["arch"], found.metadata["image_size"]
    return ExportResult(destination, kind, arch, found.kind, channels, size, num_classes, (PIXEL_MEAN,) * channels, (PIXEL_STD,) * channels)


class OnnxModel(nn.Module):
    """A saved model as one network: grey pixels 0-255 ``(N, 1, S, S)`` -> probabilities ``(N, K)``."""

    def __init__(self, backbone: nn.Module, probe_layer: nn.Linear):
        super().__init__()
        self.backbone, self.probe = backbone, probe_layer

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.probe(self.backbone(normalize_pixels(pixels))))


def _onnx_properties(model) -> dict[str, str]:
    """The metadata an ONNX user needs to read the outputs, as ONNX metadata properties (text)."""
    probe = model.probe
    size = model.image_size
    properties = {
        "format": FORMAT,
        "arch": model.arch,
        "image_size": str(size),
        "input": f"pixels: float32 grey values 0-255, (N, 1, {size}, {size})",
        "output": "probabilities: (N, K), sigmoid of each output",
        "cxrssl_version": __version__,
    }
    if hasattr(probe, "names"):
        properties.update(findings=json.dumps(list(probe.names)), thresholds=json.dumps([float(t) for t in probe.thresholds]))
    else:
        properties.update(positive=probe.positive, negative=probe.negative, threshold=json.dumps(float(probe.threshold)))
    return properties


def export_onnx(model_folder: str | Path, destination: str | Path, *, overwrite: bool = False) -> ExportResult:
    """Write a saved model (backbone + probe) as ONNX, outputting ``predict``'s probabilities (see the module's text)."""
    if Path(destination).suffix.lower() != ONNX_SUFFIX:
        raise ExportError(f"{destination}: an ONNX export is named .onnx; use export_backbone for .pth/.safetensors")
    found = _read_source(model_folder)
    if found.model is None:
        raise ExportError(
            f"{found.path}: is a pretraining checkpoint, which has no classifier to export to ONNX; "
            f"export a saved model (`cxrssl probe --save-model DIR`), or name the output .pth/.safetensors"
        )
    destination = _check_destination(destination, found, overwrite)
    onnx = require("onnx", "export")
    require("onnxscript", "export")  # the dynamo exporter of torch writes ONNX through it
    model = found.model
    network = OnnxModel(model.reader.float().eval(), model.probe.folded().eval()).eval()
    example = torch.full((2, 1, model.image_size, model.image_size), 127.0)  # a batch of 2, so the batch axis stays symbolic
    try:
        program = torch.onnx.export(
            network,
            (example,),
            dynamo=True,
            input_names=["pixels"],
            output_names=["probabilities"],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
            opset_version=ONNX_OPSET,
            verbose=False,
        )
        proto = program.model_proto
    except Exception as error:  # the exporter's own failure: one line naming it
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise ExportError(
            f"{found.path}: torch {torch.__version__}'s ONNX exporter failed ({type(error).__name__}: {first}); export a state dict (.pth) instead"
        ) from None
    onnx.helper.set_model_props(proto, _onnx_properties(model))
    atomic_write(destination, lambda tmp: onnx.save_model(proto, str(tmp)))
    outputs = int(network.probe.weight.shape[0])
    return ExportResult(destination, "onnx", model.arch, found.kind, 1, model.image_size, outputs, (PIXEL_MEAN,), (PIXEL_STD,))


def export(source: str | Path, destination: str | Path, *, rgb: bool = False, overwrite: bool = False) -> ExportResult:
    """``cxrssl export``: ONNX when ``destination`` ends in ``.onnx``, else a state dict (``export_backbone``).

    >>> cxrssl.export("runs/simclr/checkpoints/epoch_0040.json", "backbone.pth")  # doctest: +SKIP
    >>> cxrssl.export("model", "model.onnx")  # a saved probe or fine-tuned model  # doctest: +SKIP
    """
    if Path(destination).suffix.lower() == ONNX_SUFFIX:
        if rgb:
            raise ExportError(f"{destination}: --rgb is for state dicts; the ONNX model takes grey pixels (N, 1, S, S), drop --rgb")
        return export_onnx(source, destination, overwrite=overwrite)
    return export_backbone(source, destination, rgb=rgb, overwrite=overwrite)
