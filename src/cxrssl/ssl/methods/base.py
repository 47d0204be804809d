"""What every pretraining method is to the training loop.

A method is an ``nn.Module`` that owns a backbone m(.) and a projection head n(.)
(what a checkpoint keeps) and whose ``forward(view1, view2)`` returns the loss of a
batch. Momentum methods (MoCo, BYOL) also declare their (online, target) pairs and
the momentum at each point of training; the base class then does the exponential
moving average after every optimiser step (as solo-learn's base class does). The
resumable state is the module's whole ``state_dict``: target networks and queues are
registered parameters and buffers, so they are saved and resumed with the rest.

A method's settings are class-level defaults (the papers'); ``PretrainConfig`` fills
the ones a config leaves out, and refuses a setting the method does not take.
"""

from __future__ import annotations

import copy
from typing import ClassVar

import torch
from torch import nn

from cxrssl.models import build_backbone, feature_dim
from cxrssl.ssl.heads import ProjectionHead


class Method(nn.Module):
    name: ClassVar[str]
    # The method's settings (PretrainConfig fields) with their defaults.
    settings: ClassVar[dict[str, float | int]] = {}

    def __init__(self, arch: str, hidden_features: int = 2048, out_features: int = 128, gather_distributed: bool = False):
        super().__init__()
        self.arch = arch
        self.backbone = build_backbone(arch)
        self.head = ProjectionHead(feature_dim(arch), hidden_features, out_features)
        self.gather_distributed = gather_distributed

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # --- momentum targets ---------------------------------------------------------

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, target) modules whose target follows the online one by EMA."""
        return []

    def momentum_at(self, progress: float) -> float:
        """EMA coefficient after a step at ``progress`` in [0, 1] of the run."""
        return 1.0

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        """target <- m * target + (1 - m) * online, for every declared pair."""
        pairs = self.momentum_pairs()
        if not pairs:
            return
        weight = 1.0 - self.momentum_at(progress)
        targets = [p for _, target in pairs for p in target.parameters()]
        online = [p.detach() for source, _ in pairs for p in source.parameters()]
        torch._foreach_lerp_(targets, online, weight)

    @torch.no_grad()
    def sync_targets(self) -> None:
        """Make every target a copy of its online module (after loading initial weights)."""
        for online, target in self.momentum_pairs():
            target.load_state_dict(online.state_dict())

    @staticmethod
    def frozen_copy(module: nn.Module) -> nn.Module:
        target = copy.deepcopy(module)
        target.requires_grad_(False)
        return target

    # --- what is saved ------------------------------------------------------------

    def checkpoint_weights(self) -> dict[str, torch.Tensor]:
        """What a checkpoint keeps: the backbone (all evaluation needs) and the projection head."""
        weights = {f"backbone.{k}": v for k, v in self.backbone.state_dict().items()}
        weights.update({f"head.{k}": v for k, v in self.head.state_dict().items()})
        return weights

    def check_images(self, images: int) -> str | None:
        """Why this method cannot train on ``images`` images, or None."""
        return None
