"""SimCLR = backbone m(.) + projection head n(.) + NT-Xent.

Both views of a batch go through the backbone together, as one batch of 2B, so
BatchNorm normalises over all views just as in SimCLR's reference implementation.
"""

from __future__ import annotations

import torch
from torch import nn

from cxrssl.models import build_backbone, feature_dim
from cxrssl.ssl.heads import ProjectionHead
from cxrssl.ssl.losses import nt_xent_loss


class SimCLR(nn.Module):
    def __init__(
        self,
        arch: str = "wide_resnet50_2",
        hidden_features: int = 2048,
        out_features: int = 128,
        temperature: float = 0.5,
        gather_distributed: bool = False,
    ):
        super().__init__()
        self.arch = arch
        self.backbone = build_backbone(arch)
        self.head = ProjectionHead(feature_dim(arch), hidden_features, out_features)
        self.temperature = temperature
        self.gather_distributed = gather_distributed

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        projections = self.head(self.backbone(torch.cat([view1, view2], dim=0)))
        z1, z2 = projections.chunk(2, dim=0)
        return nt_xent_loss(z1, z2, self.temperature, gather_distributed=self.gather_distributed)
