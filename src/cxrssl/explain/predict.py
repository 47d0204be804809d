"""``cxrssl predict``: a saved model (backbone + probe) applied to image files.

Images are decoded and resized exactly as for the probe (``io.square_resize`` at the
model's image size), so a test image gets the same probability here as in the
probe's predictions file.

The image size comes from the saved model's JSON (checked on load to be at most
``checkpoint.MAX_IMAGE_SIZE``); before anything is decoded, the memory the decoded
images, a feature batch and the heat maps' gradients will take is estimated and
compared with the memory still available (``hardware.available_memory_bytes``), as the
data decoder does for the images alone. The feature batch shrinks to fit; when even one
image does not fit, the prediction is refused with one line.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cxrssl.data.images import MEMORY_SHARE, decode_manifest
from cxrssl.data.manifest import Manifest, ManifestRow
from cxrssl.errors import CxrsslError
from cxrssl.eval.features import extract_features
from cxrssl.eval.model import load_model
from cxrssl.explain.gradcam import gradcam_maps, last_conv_block, overlay
from cxrssl.hardware import available_memory_bytes

FEATURE_BATCH = 128  # images per feature batch, when memory allows
HEATMAP_BATCH = 16  # images per Grad-CAM batch (gradcam_maps' default)
# Bytes per input pixel of one image in flight: without gradients a few activations are
# alive at once (conv1's 64 channels at half the side, in float32, about 3 times over);
# with gradients (Grad-CAM) every activation is kept: measured order of magnitude per arch.
EVAL_BYTES_PER_PIXEL = 192
GRAD_BYTES_PER_PIXEL = {"resnet18": 600, "resnet34": 900, "resnet50": 2400}


@dataclass
class Prediction:
    path: str
    probability: float  # P(positive); for a multi-label model, of the first finding
    positive: str
    predicted: str  # the class; for a multi-label model, the findings above their thresholds joined by '|' (or 'No Finding')
    probabilities: dict[str, float] | None = None  # multi-label: P(finding) per finding


def predict_images(
    model_dir: str | Path, paths: list[str], heatmaps: str | Path | None = None, finding: str | None = None
) -> tuple[list[Prediction], list[tuple[str, str]]]:
    """Predictions for the readable images, and (path, reason) for the others.

    ``heatmaps``: a folder for Grad-CAM overlays; of a multi-label model, one per finding
    above its threshold, or of ``finding`` only, for every image.
    """
    model = load_model(model_dir)
    probe = model.probe
    findings = getattr(probe, "names", None)
    if finding is not None and not heatmaps:
        raise CxrsslError(
            f"--finding {finding!r} chooses the finding of the heat maps; add --heatmaps DIR (the probabilities of every finding are printed anyway)"
        )
    if finding is not None and (findings is None or finding not in findings):
        known = ", ".join(findings) if findings else "none: the model is binary"
        raise CxrsslError(f"--finding {finding!r}: not a finding of {model_dir} (its findings: {known})")
    rows = [ManifestRow(str(Path(path).resolve())) for path in paths]
    batch_size = prediction_batch_size(
        model_dir, len(rows), model.image_size, model.arch, heatmaps=bool(heatmaps), available=available_memory_bytes()
    )
    images = decode_manifest(Manifest(rows, Path.cwd()), model.image_size, progress=False)
    if len(images) == 0:
        return [], images.unreadable
    probabilities = probe.probability(extract_features(model.reader, images, batch_size=batch_size))
    if findings is None:
        predictions = [
            Prediction(row.path, float(p), probe.positive, probe.positive if p >= probe.threshold else probe.negative)
            for row, p in zip(images.manifest.rows, probabilities)
        ]
        wanted = [[0] for _ in predictions]
    else:
        above = probabilities >= probe.thresholds
        predictions = [
            Prediction(
                row.path,
                float(p[0]),
                findings[0],
                "|".join(f for f, hit in zip(findings, hits) if hit) or "No Finding",
                dict(zip(findings, map(float, p))),
            )
            for row, p, hits in zip(images.manifest.rows, probabilities, above)
        ]
        wanted = [[findings.index(finding)] if finding else list(np.flatnonzero(hits)) for hits in above]
    if heatmaps:
        folder = Path(heatmaps)
        folder.mkdir(parents=True, exist_ok=True)
        network = model.as_module()
        pixels = images.batch(np.arange(len(images)))
        jobs = [(i, output) for i, columns in enumerate(wanted) for output in columns]
        suffixes = ["" if findings is None else f"_{safe_name(findings[output])}" for _, output in jobs]
        names = dict(zip(jobs, heatmap_names([images.manifest.rows[i].path for i, _ in jobs], suffixes)))
        for output in sorted({j for columns in wanted for j in columns}):
            chosen = [i for i, columns in enumerate(wanted) if output in columns]
            maps = gradcam_maps(network, last_conv_block(model.backbone), pixels[chosen], batch_size=HEATMAP_BATCH, output=output)
            for i, heat in zip(chosen, maps):
                Image.fromarray(overlay(pixels[i].numpy(), heat)).save(folder / names[(i, output)])
    return predictions, images.unreadable


def prediction_batch_size(model_dir, count: int, size: int, arch: str, heatmaps: bool, available: int | None) -> int:
    """The feature batch for ``count`` images at ``size`` px: the largest up to FEATURE_BATCH whose memory fits.

    Counted: the decoded images (uint8), with heat maps their float32 copy and one
    Grad-CAM batch with gradients, and the feature batch in flight. Refused with one
    line when even a batch of one image does not fit in ``MEMORY_SHARE`` of ``available``.
    """
    pixels = size * size
    fixed = count * pixels + (
        count * pixels * 4 + HEATMAP_BATCH * pixels * GRAD_BYTES_PER_PIXEL.get(arch, max(GRAD_BYTES_PER_PIXEL.values())) if heatmaps else 0
    )
    per_image = pixels * EVAL_BYTES_PER_PIXEL
    if available is None:
        return FEATURE_BATCH
    budget = MEMORY_SHARE * available - fixed
    if budget < per_image:
        needed = fixed + per_image
        raise CxrsslError(
            f"{model_dir}: predicting {count} images at its {size} px needs about {needed / 2**30:.1f} GiB, more than {MEMORY_SHARE:.0%} of the "
            f"{available / 2**30:.1f} GiB available; pass fewer images at once{' or drop --heatmaps' if heatmaps else ''}"
        )
    return int(max(1, min(FEATURE_BATCH, budget // per_image)))


def safe_name(text: str) -> str:
    """A finding's name as a file-name part: letters, digits, '-' and '_' kept, anything else '_'."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def heatmap_names(paths: list[str], suffixes: list[str] | None = None) -> list[str]:
    """``<stem><suffix>_gradcam.png`` per entry (a path may come once per finding, with the finding as its suffix).

    Where two different images share a stem (same file name in different folders),
    their folders are prefixed; names still equal after that (``a.png`` and ``a.jpg``
    in one folder, or a stem and a suffix that add up alike) are numbered, so no heat
    map ever replaces another.
    """
    suffixes = suffixes or [""] * len(paths)
    stems = {path: Path(path).stem for path in dict.fromkeys(paths)}
    shared = {stem for stem, count in Counter(stems.values()).items() if count > 1}
    names = []
    for path, suffix in zip(paths, suffixes):
        stem = stems[path]
        if stem in shared:
            parts = [part for part in Path(path).with_suffix("").parts if part not in ("/", "..", ".")]
            stem = "__".join(parts[-3:])
        names.append(f"{stem}{suffix}_gradcam.png")
    counts, unique = Counter(names), []
    for index, name in enumerate(names):
        unique.append(f"{index:05d}_{name}" if counts[name] > 1 or name in unique else name)
    return unique
