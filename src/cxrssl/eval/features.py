"""Frozen features of a backbone, head discarded, read as ``readout`` says.

``blocks`` (the default, ``DEFAULT_READOUT``): the global-average-pooled output of each
of the four residual stages, concatenated (64 + 128 + 256 + 512 = 960 values for
resnet18/34; 3,840 for resnet50): earlier stages keep the local texture and edge
statistics that a last-layer readout of a randomly initialised or briefly pretrained
network may wash out. ``last`` (the paper's): the global-average-pooled last stage. The
probe standardises every feature, so stages of different scale weigh alike.

Extracting features is the slow part of every probe, so features are cached on disk,
keyed by what determines them: the backbone (the checkpoint's weights file, by
content, or the architecture and seed of a random initialisation), the images (their
decoded pixels and paths, in order) and the image size. Repeated probes, sweeps and
tables then reuse them. The cache lives in ``$CXRSSL_CACHE/features`` (default
``~/.cache/cxrssl/features``); deleting it is always safe.

Each cached file holds, besides the features, the full text of its key and, stored
last, a SHA-256 digest of the key and of the features' dtype, shape and bytes. A file
whose digest, key, shape or values do not check out (a torn write, a file replaced by
other numbers, another backbone's features) is never used: the features are computed
again, a warning naming the file goes to stderr, and the file is rewritten.

Features that hold NaN or infinite values (a backbone with damaged or diverged weights)
are refused where they are made, with one line naming the backbone, before any probe or
fine-tune reaches scikit-learn or torch with them.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from cxrssl.checkpoint import MAX_IMAGE_SIZE, load_backbone, read_metadata
from cxrssl.data.imageset import ImageSet
from cxrssl.errors import CxrsslError
from cxrssl.fileio import atomic_save_npz
from cxrssl.hardware import resolve_device
from cxrssl.models import build_backbone, normalize_pixels
from cxrssl.seeding import seed_everything
from cxrssl.weights import file_digest, init_file, initial_backbone

FEATURE_VERSION = "gap-last-layer/1"  # bump when the extraction itself changes


@torch.no_grad()
def extract_features(
    backbone: nn.Module, images: ImageSet, batch_size: int = 128, device: str | torch.device = "auto", progress: bool = False
) -> np.ndarray:
    """(N, D) float32 features of the images, in eval mode (BatchNorm uses its running statistics).

    In float32 on the GPU when one is visible (``device="auto"``), else on the CPU;
    channels_last, which makes convolutions faster on both. The backbone is moved there.
    """
    device = resolve_device(str(device))
    backbone = backbone.to(device).to(memory_format=torch.channels_last).eval()
    outputs = []
    for start in tqdm(range(0, len(images), batch_size), desc="features", unit="batch", disable=not progress, leave=False):
        batch = images.batch(np.arange(start, min(start + batch_size, len(images)))).to(device).unsqueeze(1)
        pixels = normalize_pixels(batch).contiguous(memory_format=torch.channels_last)
        outputs.append(backbone(pixels).float().cpu())
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, 0), np.float32)


class BlockReadout(nn.Module):
    """A ResNet backbone read at every residual stage: the concatenated global-average-pooled outputs of layer1 to layer4."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        net = self.backbone
        x = net.maxpool(net.relu(net.bn1(net.conv1(pixels))))
        pooled = []
        for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
            x = stage(x)
            pooled.append(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
        return torch.cat(pooled, dim=1)


READOUTS = {
    "blocks": "every residual stage, pooled and concatenated (cxrssl's default)",
    "last": "the last stage, pooled (the paper's readout)",
}
# The readout every verb and API function that probes frozen features uses unless told
# otherwise. Chosen by the recipe study (docs/recipes.md, "Which readout"): read at every
# stage, the same pretrained runs scored 2-5 AUC points higher on nih_pneumonia at 25 or
# more labels per class (5 of 5 runs, paired intervals above 0) and up to 3.7 on the
# phantom task with all labels, and no run was significantly worse on nih_abnormal_64
# (point estimates from +1.0 to -2.7). The paper's last-stage readout is ``last``.
DEFAULT_READOUT = "blocks"


def read_as(backbone: nn.Module, readout: str) -> nn.Module:
    """The module whose output is ``backbone``'s features under ``readout``: the backbone itself, or it read at every stage."""
    return backbone if readout == "last" else BlockReadout(backbone).eval()


def readout_width(arch: str, readout: str) -> int:
    """How many features the readout gives: the last stage's width, or the sum of the four stages' widths."""
    from cxrssl.models import feature_dim

    width = feature_dim(arch)
    return width if readout == "last" else width * 15 // 8  # ResNet stages are width/8, /4, /2 and the full width


def random_backbone(arch: str, seed: int) -> nn.Module:
    """The backbone a run with this seed starts from: the 'no pretraining' baseline."""
    seed_everything(seed)
    return build_backbone(arch).eval()


@dataclass(frozen=True)
class BackboneSpec:
    """Which frozen backbone to probe: a checkpoint, or an initialisation (random, ImageNet, a weights file)."""

    arch: str
    image_size: int
    checkpoint: Path | None = None
    seed: int = 0
    init: str = "random"  # without a checkpoint: random, imagenet or a weights file (cxrssl.weights)
    epoch: int = 0
    pretext_fraction: float | None = None  # share of patients it was pretrained on
    readout: str = DEFAULT_READOUT  # which features the probe reads: READOUTS

    def __post_init__(self):
        if type(self.image_size) is not int or not 1 <= self.image_size <= MAX_IMAGE_SIZE:
            raise CxrsslError(
                f"--image-size {self.image_size!r}: must be a whole number of pixels from 1 to {MAX_IMAGE_SIZE} (what a saved model or checkpoint may hold)"
            )
        if self.readout not in READOUTS:
            raise CxrsslError(f"unknown readout {self.readout!r}; choose one of {', '.join(READOUTS)}")

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> BackboneSpec:
        path = Path(path)
        if not path.is_file():
            raise CxrsslError(f"{path}: no such checkpoint; pass the .json file of a checkpoint in a run's checkpoints/ folder")
        metadata, _ = read_metadata(path)  # checks the format and that the weights are whole
        fraction = metadata.get("config", {}).get("fraction")
        return cls(metadata["arch"], int(metadata["image_size"]), path, epoch=int(metadata["epoch"]), pretext_fraction=fraction)

    @classmethod
    def random(cls, arch: str, image_size: int, seed: int = 0, readout: str = DEFAULT_READOUT) -> BackboneSpec:
        build_backbone(arch)  # validates the name before any image is decoded
        return cls(arch, image_size, None, seed, readout=readout)

    @classmethod
    def from_init(cls, init: str, arch: str, image_size: int, seed: int = 0) -> BackboneSpec:
        """``--init``: random, imagenet, or a weights file / checkpoint to start from."""
        if init == "random":
            return cls.random(arch, image_size, seed)
        init_file(init, arch)  # refused here, before any image is decoded, when absent
        return cls(arch, image_size, None, seed, init=init)

    @property
    def description(self) -> str:
        if self.checkpoint:
            text = str(self.checkpoint)
        elif self.init == "imagenet":
            text = f"{self.arch} with ImageNet weights"
        else:
            text = f"{self.arch} from {self.init}" if self.init != "random" else f"random {self.arch} (seed {self.seed})"
        return text if self.readout == "last" else f"{text}, {self.readout} readout"

    @property
    def init_label(self) -> str:
        """The row name of a backbone that was not pretrained: random init, ImageNet, or the file's name."""
        return {"random": "random init", "imagenet": "ImageNet"}.get(self.init, f"init {Path(self.init).stem}")

    def build(self) -> nn.Module:
        """The backbone as weights (for fine-tuning and Grad-CAM: the readout does not apply)."""
        if self.checkpoint:
            return load_backbone(self.checkpoint)[0]
        if self.init != "random":
            return initial_backbone(self.arch, self.init).eval()
        return random_backbone(self.arch, self.seed)

    def build_reader(self) -> nn.Module:
        """The module whose output is this spec's features: the backbone, read as ``readout`` says."""
        return read_as(self.build(), self.readout)

    def identity(self) -> str:
        """What the features depend on, as text: weights by content, or how they were drawn."""
        if self.checkpoint is None and self.init == "random":
            return f"random|{self.arch}|{self.seed}|torch {torch.__version__}"
        if self.checkpoint is None:
            return f"init|{self.arch}|{file_digest(init_file(self.init, self.arch))}"
        digest = hashlib.sha256()
        _, weights_path = read_metadata(self.checkpoint)  # the file that build() loads, not a name guessed from the .json's
        with open(weights_path, "rb") as handle:
            # The safetensors header holds free-form metadata in no fixed key order, so
            # hash the tensor table (names, dtypes, shapes, offsets) sorted, then the data.
            header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
            header.pop("__metadata__", None)
            digest.update(json.dumps(header, sort_keys=True).encode())
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        return f"weights|{digest.hexdigest()}"


def feature_cache_dir() -> Path:
    return Path(os.environ.get("CXRSSL_CACHE", Path.home() / ".cache" / "cxrssl")) / "features"


def feature_key(spec: BackboneSpec, images: ImageSet) -> str:
    """The full text of what the features of ``images`` under ``spec`` depend on: extraction, backbone, readout, images."""
    readout = "" if spec.readout == "last" else f"|readout {spec.readout}"  # the last-stage keys are those from before readouts existed
    return f"{FEATURE_VERSION}|{spec.identity()}{readout}|{images.digest}"


def cache_digest(key: str, features: np.ndarray) -> str:
    """SHA-256 of a cache entry: its key, then the features' dtype, shape and bytes."""
    digest = hashlib.sha256(key.encode())
    digest.update(f"|{features.dtype.str}|{features.shape}|".encode())
    digest.update(np.ascontiguousarray(features).tobytes())
    return digest.hexdigest()


def read_cached_features(path: Path, key: str, count: int) -> np.ndarray | None:
    """The features stored at ``path`` when they are whole and are ``key``'s; None (and a warning on stderr) when damaged."""
    if not path.is_file():
        return None
    problem = None
    try:
        with np.load(path, allow_pickle=False) as stored:
            if not {"features", "key", "digest"} <= set(stored.files):
                problem = "it lacks its key or digest (written by an older cxrssl, or torn)"
            else:
                features, stored_key, digest = stored["features"], str(stored["key"]), str(stored["digest"])
                if stored_key != key:
                    problem = "it holds the features of another backbone or other images"
                elif features.dtype != np.float32 or features.ndim != 2 or features.shape[0] != count:
                    problem = f"its features are {features.dtype} {features.shape}, not float32 for {count} images"
                elif cache_digest(key, features) != digest:
                    problem = "its features do not match their recorded digest"
                elif not np.isfinite(features).all():
                    problem = "its features hold NaN or infinite values"
                else:
                    return features
    except Exception as error:  # noqa: BLE001 - any unreadable bytes (zip, npy header, pickle refused) mean: recompute
        problem = f"it cannot be read ({type(error).__name__})"
    print(f"warning: {path}: cached features not used, {problem}; computing them again", file=sys.stderr)
    return None


def require_finite_features(features: np.ndarray, spec: BackboneSpec) -> np.ndarray:
    """Refuse features with NaN or infinite values, naming the backbone: they come from damaged or diverged weights."""
    if features.size and not np.isfinite(features).all():
        bad = int((~np.isfinite(features)).any(axis=1).sum())
        raise CxrsslError(
            f"{spec.description}: its features of {bad} of {len(features)} images hold NaN or infinite values; "
            f"its weights are damaged or its training diverged, use another checkpoint"
        )
    return features


def features_for(spec: BackboneSpec, images: ImageSet, progress: bool = False, use_cache: bool = True) -> np.ndarray:
    """Features of ``images`` under ``spec``, from the cache when they were computed before and check out."""
    key = feature_key(spec, images)
    path = feature_cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz"
    if use_cache:
        cached = read_cached_features(path, key, len(images))
        if cached is not None:
            return cached
    features = require_finite_features(extract_features(spec.build_reader(), images, progress=progress), spec)
    if use_cache:  # the digest is the last entry written
        atomic_save_npz(path, features=features, key=np.array(key), digest=np.array(cache_digest(key, features)))
    return features


def save_features(path: str | Path, features: np.ndarray, manifest) -> Path:
    """The ``cxrssl extract`` file: an npz of ``features`` (N, D) with each row's path, patient_id, label and split."""
    rows = manifest.rows
    return atomic_save_npz(
        path,
        features=features,
        path=[row.path for row in rows],
        patient_id=[row.patient_id for row in rows],
        label=[row.label for row in rows],
        split=[row.split for row in rows],
    )
