"""Frozen features: the backbone's global-average-pooled last layer, head discarded."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from cxrssl.models import build_backbone, normalize_pixels
from cxrssl.seeding import seed_everything


@torch.no_grad()
def extract_features(
    backbone: nn.Module, pixels: np.ndarray, batch_size: int = 128, device: str | torch.device = "cpu", progress: bool = False
) -> np.ndarray:
    """(N, D) float32 features of (N, S, S) uint8 images, in eval mode."""
    backbone = backbone.to(device).eval()
    outputs = []
    for start in tqdm(range(0, len(pixels), batch_size), desc="features", unit="batch", disable=not progress, leave=False):
        batch = torch.from_numpy(pixels[start : start + batch_size]).to(device).unsqueeze(1)
        outputs.append(backbone(normalize_pixels(batch)).float().cpu())
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, 0), np.float32)


def random_backbone(arch: str, seed: int) -> nn.Module:
    """The backbone a run with this seed starts from: the 'no pretraining' baseline."""
    seed_everything(seed)
    return build_backbone(arch).eval()
