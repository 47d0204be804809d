"""Pretraining settings: one dataclass, YAML presets, flag overrides.

``load_pretrain_config("paper")`` reads ``configs/paper.yaml`` shipped with the
package; any other value is read as a path to a YAML file. Command-line flags are
applied on top, and the resolved result is saved with every run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path

import yaml

from cxrssl.errors import ConfigError
from cxrssl.models import ARCHITECTURES, DEFAULT_ARCH, MAX_IMAGE_SIZE
from cxrssl.ssl.augment import AugmentConfig

PRESETS = ("paper", "cpu", "demo")
MAX_SMALL_CROPS = 16
# A ResNet divides its input by 32: below 32 px its last stage convolves a 1 x 1 map with
# stride 2, and under bf16 autocast on CPUs (oneDNN, torch 2.14) that layer's weight
# gradient came out NaN at 16 px (never at 24 or 32).
MIN_SMALL_CROP = 32
LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class PretrainConfig:
    method: str = "simclr"  # simclr, moco or byol (cxrssl.ssl.methods.METHODS)
    init: str = "random"  # random, imagenet, or a weights file to continue from (cxrssl.weights)
    arch: str = DEFAULT_ARCH
    image_size: int = 224
    batch_size: int = 128  # effective batch, over all processes
    epochs: int = 100
    lr: float = 5e-4
    lr_schedule: str = "constant"  # constant (the paper's) or cosine (decay to 0 over the run)
    warmup_epochs: float = 0.0  # linear warm-up from 0 to lr over this many epochs (either schedule)
    weight_decay: float = 0.0
    # The method's own settings (e.g. simclr's temperature; see each method's ``settings``),
    # checked by the method and filled with its defaults. Saved flat, beside the others.
    method_settings: dict = field(default_factory=dict)
    hidden_features: int = 2048
    out_features: int = 128
    seed: int = 0
    fraction: float = 1.0  # share of patients used for pretraining
    keep_epochs: tuple[int, ...] = ()  # epochs whose checkpoints are kept; empty = every epoch
    device: str = "auto"  # auto, cpu, cuda
    amp: bool = True  # bf16 autocast where the device has native bf16 (see hardware.py)
    channels_last: bool = True  # NHWC tensors: faster convolutions on GPUs and on CPUs (oneDNN)
    compile: bool = False
    monitor_images: int = 512  # sample for the label-free monitors in log.csv (cxrssl.ssl.monitors); 0: none
    monitor: str = ""  # a small labelled manifest: its k-NN AUC is logged after every epoch (cxrssl.ssl.monitors)
    positives: str = "views"  # views, patient or study: what each film's positive is (cxrssl.ssl.positives)
    small_crops: int = 0  # multi-crop: this many small views per film beside the two full-size ones (0: none)
    small_crop_size: int = 0  # their side in pixels; 0: half of image_size
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self):
        self._resolve_method_settings()
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"fraction must be in (0, 1], got {self.fraction}; e.g. 0.01 for 1 % of the patients")
        for name in ("image_size", "batch_size", "epochs", "hidden_features", "out_features"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not 32 <= self.image_size <= MAX_IMAGE_SIZE:
            raise ConfigError(f"image_size must be at least 32 pixels and at most {MAX_IMAGE_SIZE}, got {self.image_size}")
        if self.batch_size < 2:
            raise ConfigError("batch_size must be at least 2: BatchNorm, and the contrastive methods' negatives, need several images per step")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ConfigError(f"warmup_epochs must be at least 0 and below epochs ({self.epochs}), got {self.warmup_epochs}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.monitor_images < 0:
            raise ConfigError(f"monitor_images must be 0 (no monitors) or more, got {self.monitor_images}")
        if any(epoch < 1 for epoch in self.keep_epochs):
            raise ConfigError(f"keep_epochs must list epochs from 1 on, got {list(self.keep_epochs)}")
        self._check_views()

    def _check_views(self) -> None:
        from cxrssl.ssl.methods import METHODS
        from cxrssl.ssl.positives import POSITIVES

        if self.positives not in POSITIVES:
            raise ConfigError(f"positives must be one of {', '.join(POSITIVES)}, got {self.positives!r}")
        if not 0 <= self.small_crops <= MAX_SMALL_CROPS:
            raise ConfigError(f"small_crops must be from 0 (none) to {MAX_SMALL_CROPS}, got {self.small_crops}")
        if self.small_crops and not METHODS[self.method].multi_crop:
            multi = ", ".join(name for name, method in METHODS.items() if method.multi_crop)
            raise ConfigError(f"method {self.method} does not take small crops (multi-crop: {multi}); set small_crops 0")
        if self.small_crop_size and not MIN_SMALL_CROP <= self.small_crop_size <= self.image_size:
            raise ConfigError(
                f"small_crop_size must be from {MIN_SMALL_CROP} pixels to image_size ({self.image_size}), or 0 for half of it; got {self.small_crop_size}"
            )

    @property
    def small_size(self) -> int:
        """The side of the small crops in pixels."""
        return self.small_crop_size or max(MIN_SMALL_CROP, self.image_size // 2)

    def _resolve_method_settings(self) -> None:
        """The method's settings, checked by the method, its defaults filled in (frozen: set once, here)."""
        from cxrssl.ssl.methods import METHODS

        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        object.__setattr__(self, "method_settings", METHODS[self.method].resolve_settings(self.method_settings))

    def __getattr__(self, name: str):
        """A method setting read as an attribute (``config.temperature``): None for a setting of another method."""
        if name in method_setting_names():
            return self.__dict__.get("method_settings", {}).get(name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def keeps(self, epoch: int) -> bool:
        """Whether the checkpoint of ``epoch`` is kept (the last epoch always is)."""
        return not self.keep_epochs or epoch in self.keep_epochs or epoch == self.epochs

    def to_dict(self) -> dict:
        values = asdict(self)
        values.update(values.pop("method_settings"))  # flat, as run configs have always been written
        values["keep_epochs"] = list(self.keep_epochs)
        values["augment"] = self.augment.to_dict()
        return values

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> PretrainConfig:
        values = _nested_method_settings(values)
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"{source}: unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        try:
            if "augment" in values:
                values["augment"] = AugmentConfig.from_dict(values["augment"] or {})
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{source}: augment: {error}") from error
        try:
            if "keep_epochs" in values:
                values["keep_epochs"] = _epoch_list(values["keep_epochs"])
            for name, value in values.items():
                values[name] = _typed(name, value, FIELD_TYPES.get(name))
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{source}: {error}") from None
        return cls(**values)


FIELD_TYPES = {
    "method": str,
    "init": str,
    "arch": str,
    "lr_schedule": str,
    "device": str,
    "image_size": int,
    "batch_size": int,
    "epochs": int,
    "hidden_features": int,
    "out_features": int,
    "seed": int,
    "lr": float,
    "warmup_epochs": float,
    "weight_decay": float,
    "fraction": float,
    "amp": bool,
    "channels_last": bool,
    "compile": bool,
    "monitor_images": int,
    "monitor": str,
    "positives": str,
    "small_crops": int,
    "small_crop_size": int,
    "method_settings": dict,
}


def method_setting_names() -> set[str]:
    """Every setting name of every registered method."""
    from cxrssl.ssl.methods import METHODS

    return {name for method in METHODS.values() for name in method.settings}


def _nested_method_settings(values: dict) -> dict:
    """Settings as written (flat: ``temperature: 0.2`` beside ``lr``, or under ``method_settings``)
    with the method's gathered into ``method_settings``; empty (None) ones mean "the default"."""
    values = dict(values)
    nested = values.pop("method_settings", None) or {}
    if not isinstance(nested, dict):
        raise ConfigError(f"method_settings must be a mapping of setting: value, got {nested!r}")
    nested = dict(nested)
    for name in method_setting_names():
        if name in values:
            value = values.pop(name)
            if value is not None:
                nested[name] = value
    values["method_settings"] = {name: value for name, value in nested.items() if value is not None}
    return values


def _epoch_list(value) -> tuple[int, ...]:
    """``keep_epochs`` as a tuple of whole epochs, or a ValueError that shows the form (a text or a
    number would otherwise be read digit by digit, or fail with Python's words)."""
    items = () if value is None else value if isinstance(value, (list, tuple)) else None
    if items is None or not all(isinstance(e, int) and not isinstance(e, bool) for e in items):
        raise ValueError(f"keep_epochs must be a list of whole epochs like [10, 20, 40], got {value!r}")
    return tuple(items)


def _typed(name: str, value, kind):
    """``value`` as a ``kind`` setting, or a ValueError that names the setting."""
    if kind is None or value is None or isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):  # YAML reads 5e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    raise ValueError(
        f"{name} must be {'a number' if kind is float else 'an integer' if kind is int else 'true or false' if kind is bool else 'text'}, got {value!r}"
    )


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
    chosen = _nested_method_settings({key: value for key, value in (overrides or {}).items() if value is not None})
    known = {f.name for f in fields(PretrainConfig)}
    unknown = sorted(set(chosen) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        chosen = {name: _epoch_list(value) if name == "keep_epochs" else _typed(name, value, FIELD_TYPES.get(name)) for name, value in chosen.items()}
    except ValueError as error:
        raise ConfigError(str(error)) from None
    given = chosen.pop("method_settings")
    if chosen.get("method", config.method) != config.method:
        chosen["method_settings"] = given  # another method: the old method's settings give way to the new one's defaults
    elif given:
        chosen["method_settings"] = {**config.method_settings, **given}
    return replace(config, **chosen) if chosen else config


def pretrain_config(run_dir, name_or_path: str | None, overrides: dict | None, resume: bool) -> PretrainConfig:
    """The settings `cxrssl pretrain` runs with: resuming without a config continues with the
    run's own saved settings; otherwise the preset or YAML file (default ``cpu``); then the flags."""
    from cxrssl.run import RunFolder

    run = RunFolder(run_dir)
    if resume and name_or_path is None and run.config.is_file():
        return with_overrides(PretrainConfig.from_dict(run.read_config()["pretrain"], str(run.config)), overrides)
    return load_pretrain_config(name_or_path or "cpu", overrides)
