"""Pretraining settings: one dataclass, YAML presets, flag overrides.

``load_pretrain_config("paper")`` reads ``configs/paper.yaml`` shipped with the
package; any other value is read as a path to a YAML file. Command-line flags are
applied on top, and the resolved result is saved with every run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path

import yaml

from cxrssl.errors import ConfigError
from cxrssl.models import ARCHITECTURES
from cxrssl.ssl.augment import AugmentConfig

PRESETS = ("paper", "cpu", "demo")


@dataclass(frozen=True)
class PretrainConfig:
    arch: str = "wide_resnet50_2"
    image_size: int = 224
    batch_size: int = 128  # effective batch, over all processes
    epochs: int = 100
    lr: float = 5e-4
    weight_decay: float = 0.0
    temperature: float = 0.5
    hidden_features: int = 2048
    out_features: int = 128
    seed: int = 0
    fraction: float = 1.0  # share of patients used for pretraining
    keep_epochs: tuple[int, ...] = ()  # epochs whose checkpoints are kept; empty = every epoch
    device: str = "auto"  # auto, cpu, cuda
    amp: bool = True  # bf16 autocast where the device has native bf16 (see hardware.py)
    channels_last: bool = True  # NHWC tensors: faster convolutions on GPUs and on CPUs (oneDNN)
    compile: bool = False
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"fraction must be in (0, 1], got {self.fraction}; e.g. 0.01 for 1 % of the patients")
        for name in ("image_size", "batch_size", "epochs", "hidden_features", "out_features"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.image_size < 32:
            raise ConfigError(f"image_size must be at least 32 pixels, got {self.image_size}")
        if self.batch_size < 2:
            raise ConfigError("batch_size must be at least 2: NT-Xent needs negatives from other images")
        if self.lr <= 0 or self.temperature <= 0:
            raise ConfigError(f"lr and temperature must be positive, got lr={self.lr}, temperature={self.temperature}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if any(epoch < 1 for epoch in self.keep_epochs):
            raise ConfigError(f"keep_epochs must list epochs from 1 on, got {list(self.keep_epochs)}")

    def keeps(self, epoch: int) -> bool:
        """Whether the checkpoint of ``epoch`` is kept (the last epoch always is)."""
        return not self.keep_epochs or epoch in self.keep_epochs or epoch == self.epochs

    def to_dict(self) -> dict:
        values = asdict(self)
        values["keep_epochs"] = list(self.keep_epochs)
        values["augment"] = self.augment.to_dict()
        return values

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "PretrainConfig":
        values = dict(values)
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"{source}: unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        try:
            if "augment" in values:
                values["augment"] = AugmentConfig.from_dict(values["augment"] or {})
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{source}: augment: {error}") from error
        if "keep_epochs" in values:
            values["keep_epochs"] = tuple(int(e) for e in (values["keep_epochs"] or ()))
        return cls(**values)


def load_pretrain_config(name_or_path: str = "cpu", overrides: dict | None = None) -> PretrainConfig:
    """A preset name or a YAML path, then ``overrides`` (None values are ignored)."""
    if name_or_path in PRESETS:
        text = resources.files("cxrssl").joinpath("configs", f"{name_or_path}.yaml").read_text()
        source = f"preset {name_or_path!r}"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file; pass a preset ({', '.join(PRESETS)}) or a YAML file")
        text, source = path.read_text(), str(path)
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML ({error})") from error
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level")
    return with_overrides(PretrainConfig.from_dict(values, source), overrides)


def with_overrides(config: PretrainConfig, overrides: dict | None) -> PretrainConfig:
    """``config`` with the given settings replaced; None values mean "not given"."""
    chosen = {key: value for key, value in (overrides or {}).items() if value is not None}
    if "keep_epochs" in chosen:
        chosen["keep_epochs"] = tuple(chosen["keep_epochs"])
    return replace(config, **chosen) if chosen else config
