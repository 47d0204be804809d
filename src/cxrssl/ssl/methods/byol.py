"""BYOL (Grill et al. 2020): no negatives at all, so no dependence on the batch size.

An online network (backbone, projector, predictor) predicts the projection that a
target network (momentum copies of backbone and projector) makes of the other view;
the loss is the normalised MSE, symmetrised over the two views. The target follows
the online network by EMA whose coefficient rises from ``momentum`` (tau_base) to 1
on a cosine over the run: tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2.

tau_base is 0.99, not the paper's 0.996: the paper's runs are 300-1,000 epochs of
ImageNet (hundreds of thousands of steps); a CPU run of a few thousand steps with
0.996 would keep the target near its random start for most of training (BYOL's own
ablation finds 0.99 as good as 0.996 at 300 epochs). The predictor is an MLP like
the projector (hidden_features wide), as in the paper.
"""

from __future__ import annotations

import math

import torch

from cxrssl.models import DEFAULT_ARCH
from cxrssl.ssl.heads import ProjectionHead
from cxrssl.ssl.losses import byol_loss
from cxrssl.ssl.methods.base import Method, Setting


class BYOL(Method):
    name = "byol"
    title = "BYOL"
    settings = {"momentum": Setting(0.99, "unit", "EMA coefficient of the target at the start, rising to 1")}

    def __init__(
        self, arch: str = DEFAULT_ARCH, hidden_features: int = 2048, out_features: int = 128, momentum: float = 0.99, gather_distributed: bool = False
    ):
        super().__init__(arch, hidden_features, out_features, gather_distributed)
        self.momentum = momentum
        self.predictor = ProjectionHead(out_features, hidden_features, out_features)
        self.backbone_target = self.frozen_copy(self.backbone)
        self.head_target = self.frozen_copy(self.head)

    def momentum_pairs(self):
        return [(self.backbone, self.backbone_target), (self.head, self.head_target)]

    def momentum_at(self, progress: float) -> float:
        return 1 - (1 - self.momentum) * (math.cos(math.pi * min(max(progress, 0.0), 1.0)) + 1) / 2

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        views = torch.cat([view1, view2], dim=0)
        p1, p2 = self.predictor(self.head(self.backbone(views))).chunk(2, dim=0)
        with torch.no_grad():
            t1, t2 = self.head_target(self.backbone_target(views)).chunk(2, dim=0)
        return byol_loss(p1, t2) + byol_loss(p2, t1)
