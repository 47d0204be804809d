"""The augmentation module A of Gazda et al. 2021, applied to whole batches.

A = random resized crop (crop, then resize back to the input size), horizontal flip,
rotation, Gaussian blur and colour jitter. All five run on a batch of tensors at
once, on whatever device the batch is on: crop, flip and rotation are one affine
resampling (``grid_sample``), the blur is a grouped convolution with one kernel per
image. This keeps per-image Python work out of the training loop.

Defaults, chosen for radiographs rather than natural photos:

- crop scale (0.3, 1.0) instead of SimCLR's (0.08, 1.0): an 8 % crop of a chest film
  is often a featureless patch of lung or soft tissue, with no anatomy left to match;
- rotation ±10°: patients are positioned, bedside films tilt by a few degrees;
- flip p = 0.5 as in the paper, although it moves the heart to the wrong side; the
  paper used it, and it can be switched off (``flip_p=0``);
- colour jitter = brightness and contrast only, ±40 % with p = 0.8 (SimCLR's
  strength); saturation and hue do not exist in a grey image;
- Gaussian blur with p = 0.5 and sigma in (0.1, 2.0) pixels, as in SimCLR;
- multi-crop's small views (Caron et al. 2020) cover 10-40 % of the film, below the
  full-size views' 30-100 % but not the 5-14 % of ImageNet's: a tenth of a chest
  film still holds a rib, a hilum or a costophrenic angle.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from cxrssl.models import normalize_pixels


@dataclass(frozen=True)
class AugmentConfig:
    crop_scale: tuple[float, float] = (0.3, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    rotation_deg: float = 10.0
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    small_crop_scale: tuple[float, float] = (0.1, 0.4)  # multi-crop's small views (PretrainConfig.small_crops)

    def __post_init__(self):
        for name in ("crop_scale", "small_crop_scale"):
            low, high = getattr(self, name)
            if not 0 < low <= high <= 1:
                raise ValueError(f"{name} must satisfy 0 < low <= high <= 1, got {getattr(self, name)}")
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"crop_ratio must be increasing and positive, got {self.crop_ratio}")
        for name in ("flip_p", "jitter_p", "blur_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)}")
        if self.blur_sigma[0] <= 0 or self.blur_sigma[0] > self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must be positive and increasing, got {self.blur_sigma}")
        if not 0 <= self.rotation_deg <= 180:
            raise ValueError(f"rotation_deg must be between 0 and 180 degrees, got {self.rotation_deg}")
        for name in ("brightness", "contrast"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1) (a share of the intensity), got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, values: dict) -> AugmentConfig:
        """Settings as a YAML mapping gives them: every value typed (a number, or a pair of numbers) before use."""
        if not isinstance(values, dict):
            raise ValueError(f"expected a mapping of augmentation settings, got {values!r}")
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown augmentation setting(s): {', '.join(sorted(unknown))}")
        return cls(**{key: _number_or_pair(key, value, isinstance(getattr(cls, key), tuple)) for key, value in values.items()})

    def to_dict(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


def _number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _number_or_pair(name: str, value, pair: bool):
    if not pair:
        return _number(name, value)
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{name} must be a pair of numbers like [0.3, 1.0], got {value!r}")
    return tuple(_number(name, v) for v in value)


def _uniform(low: float, high: float, count: int, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(count, generator=generator)


def _coin(p: float, count: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(count, generator=generator) < p


def crop_flip_rotate_matrices(config: AugmentConfig, count: int, generator: torch.Generator) -> torch.Tensor:
    """(count, 2, 3) affine maps from output to input coordinates, for ``affine_grid``."""
    area = _uniform(*config.crop_scale, count, generator)
    log_ratio = _uniform(math.log(config.crop_ratio[0]), math.log(config.crop_ratio[1]), count, generator)
    # Half-extents of the crop in [-1, 1] coordinates (1 = the whole image).
    width = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)
    height = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    center_x = (torch.rand(count, generator=generator) * 2 - 1) * (1 - width)
    center_y = (torch.rand(count, generator=generator) * 2 - 1) * (1 - height)
    angle = torch.deg2rad(_uniform(-config.rotation_deg, config.rotation_deg, count, generator))
    flip = torch.where(_coin(config.flip_p, count, generator), -1.0, 1.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack(
        [
            torch.stack([cos * width * flip, -sin * height, center_x], dim=1),
            torch.stack([sin * width * flip, cos * height, center_y], dim=1),
        ],
        dim=1,
    )


def gaussian_kernels(sigmas: torch.Tensor, radius: int) -> torch.Tensor:
    """(count, 2 * radius + 1) normalised 1-D kernels; sigma 0 gives the identity."""
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    safe = sigmas.clamp(min=1e-6).unsqueeze(1)
    kernels = torch.exp(-0.5 * (offsets / safe) ** 2)
    kernels = kernels / kernels.sum(dim=1, keepdim=True)
    identity = (offsets == 0).float().expand_as(kernels)
    return torch.where((sigmas > 0).unsqueeze(1), kernels, identity)


def blur_batch(images: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Blur image k of an (N, 1, H, W) batch with ``sigmas[k]`` (separably)."""
    count, _, height, width = images.shape
    radius = max(1, math.ceil(3 * float(sigmas.max())))
    radius = min(radius, (min(height, width) - 1) // 2)
    kernels = gaussian_kernels(sigmas.cpu(), radius).to(images.device, images.dtype)
    stacked = images.reshape(1, count, height, width)  # one group per image
    padded = F.pad(stacked, (radius, radius, 0, 0), mode="reflect")
    stacked = F.conv2d(padded, kernels.view(count, 1, 1, -1), groups=count)
    padded = F.pad(stacked, (0, 0, radius, radius), mode="reflect")
    stacked = F.conv2d(padded, kernels.view(count, 1, -1, 1), groups=count)
    return stacked.reshape(count, 1, height, width)


class BatchAugment:
    """Draw one random view of every image in a uint8 batch.

    ``__call__(pixels, generator)`` takes (N, H, W) or (N, 1, H, W) uint8 pixels and
    returns normalised float views (N, 1, S, S). All randomness comes from
    ``generator`` (a CPU generator), so a seeded generator gives the same views on
    any device.
    """

    def __init__(self, config: AugmentConfig, output_size: int):
        self.config = config
        self.output_size = output_size

    def __call__(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if pixels.dim() == 3:
            pixels = pixels.unsqueeze(1)
        count = pixels.shape[0]
        config = self.config
        images = pixels.float() / 255.0

        matrices = crop_flip_rotate_matrices(config, count, generator).to(images.device)
        grid = F.affine_grid(matrices, [count, 1, self.output_size, self.output_size], align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

        jitter = _coin(config.jitter_p, count, generator)
        brightness = torch.where(jitter, _uniform(1 - config.brightness, 1 + config.brightness, count, generator), 1.0)
        contrast = torch.where(jitter, _uniform(1 - config.contrast, 1 + config.contrast, count, generator), 1.0)
        brightness, contrast = brightness.to(images.device).view(-1, 1, 1, 1), contrast.to(images.device).view(-1, 1, 1, 1)
        images = (images * brightness).clamp(0, 1)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = ((images - mean) * contrast + mean).clamp(0, 1)

        blur = _coin(config.blur_p, count, generator)
        sigmas = torch.where(blur, _uniform(*config.blur_sigma, count, generator), 0.0)
        if bool(blur.any()):
            images = blur_batch(images, sigmas)
        return normalize_pixels(images * 255.0)
