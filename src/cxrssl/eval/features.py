"""Frozen features: the backbone's global-average-pooled last layer, head discarded."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from cxrssl.data.images import ImageSet
from cxrssl.models import build_backbone, normalize_pixels
from cxrssl.seeding import seed_everything


@torch.no_grad()
def extract_features(
    backbone: nn.Module, images: ImageSet, batch_size: int = 128, device: str | torch.device = "cpu", progress: bool = False
) -> np.ndarray:
    """(N, D) float32 features of the images, in eval mode (BatchNorm uses its running statistics)."""
    backbone = backbone.to(device).eval()
    outputs = []
    for start in tqdm(range(0, len(images), batch_size), desc="features", unit="batch", disable=not progress, leave=False):
        batch = images.batch(np.arange(start, min(start + batch_size, len(images)))).to(device).unsqueeze(1)
        outputs.append(backbone(normalize_pixels(batch)).float().cpu())
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, 0), np.float32)


def random_backbone(arch: str, seed: int) -> nn.Module:
    """The backbone a run with this seed starts from: the 'no pretraining' baseline."""
    seed_everything(seed)
    return build_backbone(arch).eval()
