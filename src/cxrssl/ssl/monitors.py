"""Label-free monitors of a pretraining run, written into log.csv after every epoch.

Without labels a user cannot probe a checkpoint, but can see whether the features are
collapsing or still spreading out:

- **RankMe** (Garrido et al. 2023): the effective rank exp(H(p)) of the backbone's
  embeddings of a fixed sample of the pretext images, with p the singular values
  normalised to sum to 1 (plus a small epsilon). It rises while the representation
  uses more dimensions; a collapse drives it towards 1.
- **Alignment and uniformity** (Wang & Isola 2020) of the normalised projections:
  alignment = E ||z(x) - z(x')||^2 over the two views of an image (lower: views agree),
  uniformity = log E exp(-2 ||z_i - z_j||^2) over pairs of images (lower: spread over
  the sphere). The sample and its two views are fixed for the run, so epochs compare.

``cxrssl sweep`` puts them beside the probe AUC of each checkpoint with their rank
correlation, which says whether a monitor would have picked the right checkpoint.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from cxrssl.models import normalize_pixels

MONITOR_COLUMNS = ("rankme", "alignment", "uniformity")
MONITOR_IMAGES = 512


def rankme(embeddings: torch.Tensor, epsilon: float = 1e-7) -> float:
    """Effective rank of an (N, D) matrix: exp of the entropy of its normalised singular values."""
    singular = torch.linalg.svdvals(embeddings.double())
    p = singular / singular.sum() + epsilon
    return float(torch.exp(-(p * torch.log(p)).sum()))


def alignment(z1: torch.Tensor, z2: torch.Tensor) -> float:
    z1, z2 = F.normalize(z1.double(), dim=1), F.normalize(z2.double(), dim=1)
    return float((z1 - z2).pow(2).sum(dim=1).mean())


def uniformity(z: torch.Tensor, t: float = 2.0) -> float:
    z = F.normalize(z.double(), dim=1)
    return float(torch.pdist(z).pow(2).mul(-t).exp().mean().log())


def monitor_rows(count: int, seed: int) -> np.ndarray:
    """The fixed sample: up to MONITOR_IMAGES image indices drawn once from the run's seed."""
    rng = np.random.default_rng([seed, 0x4D4F4E])
    return np.sort(rng.permutation(count)[: min(MONITOR_IMAGES, count)])


@torch.no_grad()
def measure(model, pixels: torch.Tensor, augment, seed: int, device: torch.device, batch_size: int = 128) -> dict[str, float]:
    """RankMe of the backbone on clean images, alignment and uniformity of the projections of two views.

    ``pixels`` are the sample's uint8 images (N, S, S). The model is put in eval mode
    (BatchNorm's running statistics) and back in train mode after.
    """
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    embeddings, first, second = [], [], []
    for start in range(0, len(pixels), batch_size):
        batch = pixels[start : start + batch_size].to(device)
        clean = normalize_pixels(batch.unsqueeze(1)).contiguous(memory_format=torch.channels_last)
        embeddings.append(model.backbone(clean).float().cpu())
        for views in (first, second):
            view = augment(batch, generator).contiguous(memory_format=torch.channels_last)
            views.append(model.head(model.backbone(view)).float().cpu())
    model.train(was_training)
    z1, z2 = torch.cat(first), torch.cat(second)
    values = {"rankme": rankme(torch.cat(embeddings)), "alignment": alignment(z1, z2), "uniformity": uniformity(torch.cat([z1, z2]))}
    return {name: value if math.isfinite(value) else float("nan") for name, value in values.items()}
