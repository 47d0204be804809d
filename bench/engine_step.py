"""The cxrssl training step (``cxrssl.engine.training_step``) as `cxrssl.train` sets it up on the CPU, for the benchmarks to time.

channels_last model and views, bf16 autocast where the CPU has native bf16 (and the
config allows it), the config's method (both views as one batch), Adam, then the
method's momentum update (MoCo, BYOL) as the training loop does after every step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cxrssl.config import PretrainConfig
from cxrssl.engine import make_optimizer, training_step
from cxrssl.hardware import native_bf16
from cxrssl.ssl.methods import build_method


def uses_bf16(config: PretrainConfig) -> bool:
    return config.amp and native_bf16(torch.device("cpu"))


def engine_step(config: PretrainConfig, view1: torch.Tensor, view2: torch.Tensor) -> Callable[[], None]:
    """A closure doing one optimisation step on these views (a fresh model and optimiser)."""
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    model = build_method(config).to(memory_format=layout)
    optimizer = make_optimizer(model.parameters(), config.lr, config.weight_decay, torch.device("cpu"))
    views = view1.contiguous(memory_format=layout), view2.contiguous(memory_format=layout)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=uses_bf16(config))

    def step() -> None:
        training_step(model, optimizer, views, autocast)
        model.after_step(0.5)

    return step
