"""What every pretraining method is to the training loop.

A method is an ``nn.Module`` that owns a backbone m(.) and a projection head n(.)
(what a checkpoint keeps) and whose ``forward(view1, view2, *small)`` returns the loss
of a batch (``small``: multi-crop's small views, for methods with ``multi_crop``). Momentum methods (MoCo, BYOL) also declare their (online, target) pairs and
the momentum at each point of training; the base class then does the exponential
moving average after every optimiser step (as solo-learn's base class does). The
resumable state is the module's whole ``state_dict``: target networks and queues are
registered parameters and buffers, so they are saved and resumed with the rest.

A method's settings (solo-learn's ``method_kwargs``) are declared once, on the class,
as :class:`Setting` s with the papers' defaults; the method itself validates them
(:meth:`Method.resolve_settings`), so a new method with a new setting is its own file
plus one line in the registry: ``PretrainConfig``, the YAML presets and the command
line's ``--method-setting key=value`` take it from there.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from cxrssl.errors import ConfigError
from cxrssl.models import DEFAULT_ARCH, build_backbone, feature_dim
from cxrssl.ssl.heads import ProjectionHead

RULES = {
    "positive": ("a positive number", lambda v: math.isfinite(v) and v > 0),
    "unit": ("in [0, 1)", lambda v: 0 <= v < 1),
    "count": ("a positive integer", lambda v: v >= 1),
}


@dataclass(frozen=True)
class Setting:
    """One setting of a method: its default, its type and the range it must lie in (``RULES``)."""

    default: float | int
    rule: str = "positive"
    help: str = ""

    def parse(self, name: str, value) -> float | int:
        """``value`` (a number, or text from the command line) typed and range-checked, or a one-line ConfigError."""
        kind = int if self.rule == "count" else float
        described, holds = RULES[self.rule]
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value) if isinstance(value, str) else value
            if not isinstance(number, (int, float)):
                raise ValueError
            if kind is int:
                if float(number) != int(number):
                    raise ValueError
                number = int(number)
            else:
                number = float(number)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{name} must be {described}, got {value!r}") from None
        if not holds(number):
            raise ConfigError(f"{name} must be {described}, got {value}")
        return number


class Method(nn.Module):
    name: ClassVar[str]  # the registry's key, and the config's ``method``
    title: ClassVar[str]  # the name tables and figures show (default: ``name``)
    # The method's settings with their defaults (the papers'), types and ranges.
    settings: ClassVar[dict[str, Setting]] = {}
    # Whether forward takes small crops after the two full-size views (multi-crop).
    multi_crop: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "title" not in cls.__dict__ and "name" in cls.__dict__:
            cls.title = cls.name

    @classmethod
    def resolve_settings(cls, given: Mapping[str, object] | None) -> dict[str, float | int]:
        """Every setting of the method: the given ones checked, the others at their defaults."""
        given = dict(given or {})
        unknown = sorted(set(given) - set(cls.settings))
        if unknown:
            raise ConfigError(f"method {cls.name} has no setting {', '.join(unknown)}; it takes {', '.join(cls.settings) or 'none'}")
        return {name: setting.default if given.get(name) is None else setting.parse(name, given[name]) for name, setting in cls.settings.items()}

    def __init__(self, arch: str = DEFAULT_ARCH, hidden_features: int = 2048, out_features: int = 128, gather_distributed: bool = False):
        super().__init__()
        self.arch = arch
        self.backbone = build_backbone(arch)
        self.head = ProjectionHead(feature_dim(arch), hidden_features, out_features)
        self.gather_distributed = gather_distributed

    def forward(self, view1: torch.Tensor, view2: torch.Tensor, *small: torch.Tensor) -> torch.Tensor:
        """The loss of a batch: two full-size views of each image (and, for a multi-crop method, small views)."""
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
