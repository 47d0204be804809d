"""Backbones m(.): torchvision ResNets that read one-channel radiographs.

Grayscale input is handled with an adapted stem: the first convolution takes one
channel instead of three. Replicating a grey image into three identical channels
would make the network spend the first layer's parameters and memory on copies;
when ImageNet weights are loaded into an adapted stem, the three colour filters are
summed, which gives exactly the response the RGB network had to a grey image.
The classifier is removed, so the backbone outputs the global-average-pooled last
layer (512-d for resnet18/34, 2048-d for resnet50 and wide_resnet50_2).
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from cxrssl.errors import ConfigError

ARCHITECTURES = {
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "wide_resnet50_2": 2048,
}
# The one default architecture: of the presets, of every method, of --init backbones.
# The paper's wide_resnet50_2 is the `paper` preset's choice; ResNet-18 is what a CPU
# trains in minutes, and what the `cpu` and `demo` presets use.
DEFAULT_ARCH = "resnet18"
MAX_IMAGE_SIZE = 2048  # pixels per side: beyond this a saved size is damage, not a setting (and no setting trains it)

# Fixed normalisation of uint8 radiographs: (pixel / 255 - mean) / std. Fixed rather
# than estimated per dataset so that a checkpoint means the same thing everywhere;
# it is stored with every checkpoint.
PIXEL_MEAN = 0.5
PIXEL_STD = 0.25


def feature_dim(arch: str) -> int:
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch]


def build_backbone(arch: str) -> nn.Module:
    """A randomly initialised backbone for one-channel input, with no classifier."""
    feature_dim(arch)  # validates the name
    network = getattr(torchvision.models, arch)(weights=None)
    old_stem = network.conv1
    network.conv1 = nn.Conv2d(1, old_stem.out_channels, old_stem.kernel_size, old_stem.stride, old_stem.padding, bias=False)
    nn.init.kaiming_normal_(network.conv1.weight, mode="fan_out", nonlinearity="relu")
    network.fc = nn.Identity()
    return network


def rgb_stem_to_gray(weight: torch.Tensor) -> torch.Tensor:
    """Fold a (out, 3, k, k) RGB stem into (out, 1, k, k) for grey input."""
    return weight.sum(dim=1, keepdim=True)


def normalize_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (or 0-255 float) images to the network's input scale."""
    return (pixels.float() / 255.0 - PIXEL_MEAN) / PIXEL_STD
