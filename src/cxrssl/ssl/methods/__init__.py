"""Pretraining methods, by the name a config's ``method`` field gives.

A new method is one file with a ``Method`` subclass (see ``base.py``) and one line here.
"""

from __future__ import annotations

from cxrssl.ssl.methods.base import Method
from cxrssl.ssl.methods.byol import BYOL
from cxrssl.ssl.methods.moco import MoCo
from cxrssl.ssl.methods.simclr import SimCLR

METHODS: dict[str, type[Method]] = {method.name: method for method in (SimCLR, MoCo, BYOL)}

__all__ = ["METHODS", "Method", "SimCLR", "MoCo", "BYOL", "build_method"]


def build_method(config, gather_distributed: bool = False) -> Method:
    """The method a ``PretrainConfig`` names, with its settings, randomly initialised."""
    settings = dict(config.method_settings)
    return METHODS[config.method](config.arch, config.hidden_features, config.out_features, gather_distributed=gather_distributed, **settings)
