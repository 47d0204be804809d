"""A saved model: a frozen backbone plus its fitted linear probe (binary, or one output per finding), ready to predict.

``cxrssl probe --save-model DIR`` writes ``DIR/model.json`` and ``DIR/model.safetensors``
in the checkpoint format (``checkpoint.py``): the backbone's weights, and the probe as
plain tensors (the scaler's mean and scale, the coefficients and the intercept).
Class names, the decision threshold and where the backbone came from are JSON.
Loading one never unpickles anything, unlike a joblib'd scikit-learn pipeline.

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
from cxrssl.eval.probe import ProbeResult

MODEL_FILE = "model.json"


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
    def from_pipeline(cls, pipeline: Pipeline, positive: str, negative: str, c: float) -> "LinearProbe":
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
    source: str  # the checkpoint (or random init) the backbone came from

    def as_module(self) -> ProbeModel:
        return ProbeModel(self.backbone, self.probe.folded()).eval()


def save_model(folder: str | Path, backbone: nn.Module, probe: LinearProbe | FindingsModel, arch: str, image_size: int, source: str, metrics: dict) -> Path:
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
    metadata = checkpoint_metadata(arch, image_size, 0, {}, kind="probe-model", source=source, probe=details, test_metrics=metrics)
    return save_weights(folder / MODEL_FILE, tensors, metadata)


def load_model(folder: str | Path) -> SavedModel:
    folder = Path(folder)
    path = folder / MODEL_FILE if folder.is_dir() else folder
    if not path.is_file():
        raise CxrsslError(f"{folder}: no {MODEL_FILE}; pass a folder written by `cxrssl probe --save-model DIR`")
    tensors, metadata = load_tensors(path)
    if metadata.get("kind") != "probe-model":
        raise CxrsslError(f"{path}: is a pretraining checkpoint, not a saved model; make one with `cxrssl probe --save-model DIR`")
    backbone = backbone_from_tensors(tensors, metadata["arch"], path)
    try:
        details = metadata["probe"]
        if "findings" in details:
            probe = _findings_probe(tensors, details)
            return SavedModel(backbone, probe, metadata["arch"], int(metadata["image_size"]), metadata["source"])
        probe = LinearProbe(
            *(tensors[f"probe.{name}"].numpy() for name in ("mean", "scale", "coef")),
            float(tensors["probe.intercept"][0]),
            details["positive"],
            details["negative"],
            float(details["threshold"]),
            float(details["c"]),
        )
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise CheckpointError(f"{path}: the saved probe is incomplete ({type(error).__name__}: {error}); the file is damaged, save the model again with `cxrssl probe --save-model DIR`") from None
    return SavedModel(backbone, probe, metadata["arch"], int(metadata["image_size"]), metadata["source"])


def _findings_probe(tensors: dict, details: dict) -> FindingsModel:
    """The per-finding probe of a saved model, its shapes checked against its finding names."""
    found = details["findings"]
    if not isinstance(found, list) or not found or not all(isinstance(n, str) and n.strip() and "|" not in n for n in found) or len(set(found)) != len(found):
        raise ValueError(f"the finding names {found!r} are not a list of distinct, non-empty names")
    names = tuple(found)
    values = {name: tensors[f"probe.{name}"].double().numpy() for name in ("mean", "scale", "coef", "intercept", "thresholds", "c")}
    count, width = len(names), values["mean"].shape[0]
    expected = {"mean": (width,), "scale": (width,), "coef": (count, width), "intercept": (count,), "thresholds": (count,), "c": (count,)}
    wrong = [f"{name} {values[name].shape} (expected {shape})" for name, shape in expected.items() if values[name].shape != shape]
    if wrong:
        raise ValueError(f"probe tensors {', '.join(wrong)} do not fit {count} findings")
    bad = [name for name in ("mean", "scale", "coef", "intercept", "thresholds") if not np.isfinite(values[name]).all()]
    bad += ["scale (not positive)"] if (values["scale"] <= 0).any() else []
    bad += ["thresholds (outside 0-1)"] if ((values["thresholds"] < 0) | (values["thresholds"] > 1)).any() else []
    if bad:
        raise ValueError(f"probe tensors {', '.join(bad)} hold impossible values")
    return FindingsModel(names, values["mean"], values["scale"], values["coef"], values["intercept"], values["thresholds"], values["c"])


def save_probe_model(folder: str | Path, spec, result) -> Path:
    """``probe --save-model``: the backbone of ``spec`` and the probe fitted in ``result`` (a ProbeResult)."""
    spec.require_last_stage("a saved model")
    if not isinstance(result, ProbeResult):  # an eval.multilabel.FindingsProbeResult: one output per fitted finding
        return save_model(folder, spec.build(), result.fit.model, spec.arch, spec.image_size, spec.description, result.fit.metrics)
    probe = LinearProbe.from_pipeline(result.model, result.positive, result.negative, result.chosen_c)
    return save_model(folder, spec.build(), probe, spec.arch, spec.image_size, spec.description, result.metrics)
