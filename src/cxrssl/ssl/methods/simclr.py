"""SimCLR (Chen et al. 2020), the method of Gazda et al. 2021: backbone + head + NT-Xent.

Both views of a batch go through the backbone together, as one batch of 2B, so
BatchNorm normalises over all views just as in SimCLR's reference implementation.
Negatives are the other 2B - 2 views of the batch: SimCLR wants large batches.
With multi-crop's small views (``small_crops``), every view of an image is a positive
of every other (``multi_view_nt_xent_loss``).
"""

from __future__ import annotations

import torch

from cxrssl.models import DEFAULT_ARCH
from cxrssl.ssl.losses import multi_view_nt_xent_loss, nt_xent_loss
from cxrssl.ssl.methods.base import Method, Setting


class SimCLR(Method):
    name = "simclr"
    title = "SimCLR"
    settings = {"temperature": Setting(0.5, "positive", "softmax temperature tau (the paper's 0.5)")}
    multi_crop = True

    def __init__(
        self,
        arch: str = DEFAULT_ARCH,
        hidden_features: int = 2048,
        out_features: int = 128,
        temperature: float = 0.5,
        gather_distributed: bool = False,
    ):
        super().__init__(arch, hidden_features, out_features, gather_distributed)
        self.temperature = temperature

    def forward(self, view1: torch.Tensor, view2: torch.Tensor, *small: torch.Tensor) -> torch.Tensor:
        projections = self.head(self.backbone(torch.cat([view1, view2], dim=0)))
        z1, z2 = projections.chunk(2, dim=0)
        if not small:
            return nt_xent_loss(z1, z2, self.temperature, gather_distributed=self.gather_distributed)
        # The small crops go through together too (one size per pass); every view of an image is a positive of the others.
        smaller = self.head(self.backbone(torch.cat(small, dim=0))).chunk(len(small), dim=0)
        return multi_view_nt_xent_loss([z1, z2, *smaller], self.temperature, gather_distributed=self.gather_distributed)
