"""A saved model: a frozen backbone plus its fitted linear probe (binary, or one output per finding), ready to predict.

``cxrssl probe --save-model DIR`` writes ``DIR/model.json`` and ``DIR/model.safetensors``
in the checkpoint format (``checkpoint.py``): the backbone's weights, and the probe as
plain tensors (the scaler's mean and scale, the coefficients and the intercept).
Class names, the decision threshold and a description of the backbone (the checkpoint
or initialisation it came from) are JSON. Loading one never unpickles anything, unlike
a joblib'd scikit-learn pipeline, and checks every value read before it is used: class
and finding names (distinct, non-empty text of bounded length and count), thresholds
(finite, within 0-1), probe tensors (finite, of the shapes the architecture's feature
width and the names imply) and the backbone's weights (finite, of its architecture).

The probe is also a torch layer: standardising then applying the coefficients is one
affine map, folded into a single ``nn.Linear`` so that Grad-CAM can take gradients
through backbone and probe together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.pipeline import Pipeline
from torch import nn

from cxrssl.checkpoint import CheckpointError, backbone_from_tensors, checkpoint_metadata, load_tensors, save_weights
from cxrssl.errors import CxrsslError
from cxrssl.eval.features import READOUTS, read_as, readout_width
from cxrssl.eval.probe import ProbeResult

MODEL_FILE = "model.json"
MAX_NAME_LENGTH = 200  # characters of a class or finding name
MAX_FINDINGS = 1000
MAX_DESCRIPTION_LENGTH = 4096


@dataclass
class LinearProbe:
    mean: np.ndarray  # the StandardScaler's, per feature
    scale: np.ndarray
    coef: np.ndarray  # logistic regression on standardised features
    intercept: float
    positive: str
    negative: str
    threshold: float = 0.5
    c: float = float("nan")

    @classmethod
    def from_pipeline(cls, pipeline: Pipeline, positive: str, negative: str, c: float) -> LinearProbe:
        scaler, regression = pipeline[0], pipeline[-1]
        return cls(scaler.mean_.copy(), scaler.scale_.copy(), regression.coef_[0].copy(), float(regression.intercept_[0]), positive, negative, c=c)

    def folded(self) -> nn.Linear:
        """One linear layer computing the positive-class logit from raw features."""
        weight = self.coef / self.scale
        layer = nn.Linear(len(weight), 1)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(weight).float().unsqueeze(0))
            layer.bias.fill_(self.intercept - float(np.dot(weight, self.mean)))
        return layer

    def probability(self, features: np.ndarray) -> np.ndarray:
        """P(positive), exactly as the fitted pipeline's predict_proba[:, 1]."""
        logits = ((features - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-logits))


@dataclass
class FindingsModel:
    """The fitted probe of every fitted finding: standardisation, then one logistic regression per finding."""

    names: tuple[str, ...]  # the fitted findings, in the task's order
    mean: np.ndarray  # (d,)
    scale: np.ndarray  # (d,)
    coef: np.ndarray  # (F, d), on standardised features
    intercept: np.ndarray  # (F,)
    thresholds: np.ndarray  # (F,) chosen on the training part
    c: np.ndarray  # (F,) the chosen C of each finding

    def probability(self, features: np.ndarray) -> np.ndarray:
        """(n, F) probabilities, one column per finding of ``names``."""
        logits = ((np.asarray(features, dtype=float) - self.mean) / self.scale) @ self.coef.T + self.intercept
        return 1.0 / (1.0 + np.exp(-logits))

    def folded(self) -> nn.Linear:
        """One linear layer computing every finding's logit from raw features (standardisation folded in), for Grad-CAM."""
        weight = self.coef / self.scale
        layer = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(weight).float())
            layer.bias.copy_(torch.from_numpy(self.intercept - weight @ self.mean).float())
        return layer


class ProbeModel(nn.Module):
    """Backbone then folded probe: images (N, 1, S, S) normalised -> positive-class logit (N, 1)."""

    def __init__(self, backbone: nn.Module, probe_layer: nn.Linear):
        super().__init__()
        self.backbone, self.probe = backbone, probe_layer

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.probe(self.backbone(images))


@dataclass
class SavedModel:
    backbone: nn.Module
    probe: LinearProbe | FindingsModel  # binary, or one output per finding
    arch: str
    image_size: int
    backbone_description: str  # the checkpoint (or initialisation) the backbone came from, as text for people
    readout: str = "last"  # which features the probe reads (eval.features.READOUTS); models saved before readouts: last

    @property
    def reader(self) -> nn.Module:
        """The module whose output the probe reads: the backbone, or the backbone read at every stage."""
        return read_as(self.backbone, self.readout)

    def as_module(self) -> ProbeModel:
        return ProbeModel(self.reader, self.probe.folded()).eval()


def save_model(
    folder: str | Path,
    backbone: nn.Module,
    probe: LinearProbe | FindingsModel,
    arch: str,
    image_size: int,
    backbone_description: str,
    metrics: dict,
    readout: str = "last",
) -> Path:
    folder = Path(folder)
    tensors = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    names = ("mean", "scale", "coef", "intercept", "thresholds", "c") if isinstance(probe, FindingsModel) else ("mean", "scale", "coef")
    for name in names:
        tensors[f"probe.{name}"] = torch.from_numpy(np.ascontiguousarray(getattr(probe, name), dtype=np.float64))
    if isinstance(probe, FindingsModel):
        details = {"findings": list(probe.names)}
    else:
        tensors["probe.intercept"] = torch.tensor([probe.intercept], dtype=torch.float64)
        details = {"positive": probe.positive, "negative": probe.negative, "threshold": probe.threshold, "c": probe.c}
    metadata = checkpoint_metadata(
        arch, image_size, 0, {}, kind="probe-model", backbone_description=backbone_description, probe=details, test_metrics=metrics, readout=readout
    )
    return save_weights(folder / MODEL_FILE, tensors, metadata)


def load_model(folder: str | Path) -> SavedModel:
    folder = Path(folder)
    path = folder / MODEL_FILE if folder.is_dir() else folder
    if not path.is_file():
        raise CxrsslError(f"{folder}: no {MODEL_FILE}; pass a folder written by `cxrssl probe --save-model DIR`")
    tensors, metadata = load_tensors(path)
    if metadata.get("kind") != "probe-model":
        raise CxrsslError(f"{path}: is a pretraining checkpoint, not a saved model; make one with `cxrssl probe --save-model DIR`")
    backbone = backbone_from_tensors(tensors, metadata["arch"], path)  # shapes of its arch, finite weights
    try:
        readout = metadata.get("readout", "last")
        if readout not in READOUTS:
            raise ValueError(f"unknown readout {readout!r}")
        width = readout_width(metadata["arch"], readout)
        details = metadata["probe"]
        if not isinstance(details, dict):
            raise TypeError(f"the probe's record is {type(details).__name__}, not an object")
        description = metadata.get("backbone_description", metadata.get("source"))  # "source": models saved before the rename
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_LENGTH:
            raise ValueError("the backbone's description is not text of bounded length")
        probe = _findings_probe(tensors, details, width) if "findings" in details else _binary_probe(tensors, details, width)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as error:
        raise CheckpointError(
            f"{path}: the saved probe is incomplete ({type(error).__name__}: {_one_line(error)}); the file is damaged, save the model again with `cxrssl probe --save-model DIR`"
        ) from None
    return SavedModel(backbone, probe, metadata["arch"], metadata["image_size"], description, readout)


def _one_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else ""


def _names(found, what: str) -> tuple[str, ...]:
    """Class or finding names as read: a list of distinct, non-empty strings of bounded length and count."""
    if not isinstance(found, list) or not 1 <= len(found) <= MAX_FINDINGS:
        raise ValueError(f"the {what} {str(found)[:80]!r} are not a list of 1 to {MAX_FINDINGS} names")
    if not all(isinstance(n, str) and n.strip() and "|" not in n and len(n) <= MAX_NAME_LENGTH for n in found) or len(set(found)) != len(found):
        raise ValueError(f"the {what} {str(found)[:80]!r} are not distinct, non-empty names of at most {MAX_NAME_LENGTH} characters")
    return tuple(found)


def _tensor(tensors: dict, name: str) -> np.ndarray:
    value = tensors[f"probe.{name}"]
    if not value.is_floating_point():
        raise TypeError(f"probe tensor {name} is {value.dtype}, not floating point")
    return value.double().numpy()


def _binary_probe(tensors: dict, details: dict, width: int) -> LinearProbe:
    """The two-class probe of a saved model: names, threshold and tensors checked against the backbone's feature width."""
    positive, negative = _names([details["positive"], details["negative"]], "class names")
    threshold, c = details["threshold"], details["c"]
    if type(threshold) not in (int, float) or not 0 <= threshold <= 1:  # NaN fails the comparison too
        raise ValueError(f"the threshold {threshold!r} is not a number within 0-1")
    if type(c) not in (int, float):
        raise ValueError(f"the regularisation C {c!r} is not a number")
    values = {name: _tensor(tensors, name) for name in ("mean", "scale", "coef", "intercept")}
    _require_shapes(values, {"mean": (width,), "scale": (width,), "coef": (width,), "intercept": (1,)}, "two classes")
    _require_possible(values, ("mean", "scale", "coef", "intercept"))
    return LinearProbe(values["mean"], values["scale"], values["coef"], float(values["intercept"][0]), positive, negative, float(threshold), float(c))


def _findings_probe(tensors: dict, details: dict, width: int) -> FindingsModel:
    """The per-finding probe of a saved model, its shapes checked against its finding names and the backbone's feature width."""
    names = _names(details["findings"], "finding names")
    values = {name: _tensor(tensors, name) for name in ("mean", "scale", "coef", "intercept", "thresholds", "c")}
    count = len(names)
    expected = {"mean": (width,), "scale": (width,), "coef": (count, width), "intercept": (count,), "thresholds": (count,), "c": (count,)}
    _require_shapes(values, expected, f"{count} findings")
    _require_possible(values, ("mean", "scale", "coef", "intercept", "thresholds"))
    if ((values["thresholds"] < 0) | (values["thresholds"] > 1)).any():
        raise ValueError("probe tensors thresholds (outside 0-1) hold impossible values")
    return FindingsModel(names, values["mean"], values["scale"], values["coef"], values["intercept"], values["thresholds"], values["c"])


def _require_shapes(values: dict, expected: dict, what: str) -> None:
    wrong = [f"{name} {values[name].shape} (expected {shape})" for name, shape in expected.items() if values[name].shape != shape]
    if wrong:
        raise ValueError(f"probe tensors {', '.join(wrong)} do not fit {what} on {expected['mean'][0]} features")


def _require_possible(values: dict, finite: tuple[str, ...]) -> None:
    bad = [name for name in finite if not np.isfinite(values[name]).all()]
    bad += ["scale (not positive)"] if (values["scale"] <= 0).any() else []
    if bad:
        raise ValueError(f"probe tensors {', '.join(bad)} hold impossible values")


def save_probe_model(folder: str | Path, spec, result) -> Path:
    """``probe --save-model``: the backbone of ``spec`` and the probe fitted in ``result`` (a ProbeResult).

    ``spec`` must be the one the probe was fitted with: its readout decides which
    features the saved model reads, and a probe of another width is refused here, not
    when the model is loaded.
    """
    if not isinstance(result, ProbeResult):  # an eval.multilabel.FindingsProbeResult: one output per fitted finding
        probe, metrics = result.fit.model, result.fit.metrics
    else:
        probe, metrics = LinearProbe.from_pipeline(result.model, result.positive, result.negative, result.chosen_c), result.metrics
    width, expected = int(np.shape(probe.mean)[-1]), readout_width(spec.arch, spec.readout)
    if width != expected:
        raise CxrsslError(
            f"the probe reads {width} features, but {spec.description} gives {expected} with the {spec.readout} readout; "
            f"save it with the backbone spec it was fitted with (the same readout)"
        )
    return save_model(folder, spec.build(), probe, spec.arch, spec.image_size, spec.description, metrics, spec.readout)
