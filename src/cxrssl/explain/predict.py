"""``cxrssl predict``: a saved model (backbone + probe) applied to image files.

Images are decoded and resized exactly as for the probe (``io.square_resize`` at the
model's image size), so a test image gets the same probability here as in the
probe's predictions file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cxrssl.data.images import decode_manifest
from cxrssl.data.manifest import Manifest, ManifestRow
from cxrssl.eval.features import extract_features
from cxrssl.eval.model import load_model
from cxrssl.explain.gradcam import gradcam_maps, last_conv_block, overlay


@dataclass
class Prediction:
    path: str
    probability: float  # P(positive)
    positive: str
    predicted: str


def predict_images(model_dir: str | Path, paths: list[str], heatmaps: str | Path | None = None) -> tuple[list[Prediction], list[tuple[str, str]]]:
    """Predictions for the readable images, and (path, reason) for the others."""
    model = load_model(model_dir)
    rows = [ManifestRow(str(Path(path).resolve())) for path in paths]
    images = decode_manifest(Manifest(rows, Path.cwd()), model.image_size, progress=False)
    if len(images) == 0:
        return [], images.unreadable
    probabilities = model.probe.probability(extract_features(model.backbone, images))
    probe = model.probe
    predictions = [
        Prediction(row.path, float(p), probe.positive, probe.positive if p >= probe.threshold else probe.negative)
        for row, p in zip(images.manifest.rows, probabilities)
    ]
    if heatmaps:
        folder = Path(heatmaps)
        folder.mkdir(parents=True, exist_ok=True)
        network = model.as_module()
        pixels = images.batch(np.arange(len(images)))
        names = heatmap_names([row.path for row in images.manifest.rows])
        for name, gray, heat in zip(names, pixels.numpy(), gradcam_maps(network, last_conv_block(network.backbone), pixels)):
            Image.fromarray(overlay(gray, heat)).save(folder / name)
    return predictions, images.unreadable


def heatmap_names(paths: list[str]) -> list[str]:
    """``<stem>_gradcam.png`` per image; where two images share a stem (same file name in
    different folders), their folders are prefixed, so no heat map replaces another."""
    stems = [Path(path).stem for path in paths]
    shared = {stem for stem in stems if stems.count(stem) > 1}
    names = []
    for path, stem in zip(paths, stems):
        if stem in shared:
            parts = [part for part in Path(path).with_suffix("").parts if part not in ("/", "..", ".")]
            stem = "__".join(parts[-3:])
        names.append(f"{stem}_gradcam.png")
    for index, name in enumerate(names):  # still equal (e.g. a.png and a.jpg in one folder): number them
        if names.count(name) > 1:
            names[index] = f"{index:05d}_{name}"
    return names
