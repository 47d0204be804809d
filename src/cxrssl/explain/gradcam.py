"""Grad-CAM through the frozen backbone and the fitted probe (the paper's Fig. 4 and 5).

The model explained is backbone -> folded linear probe (``eval.model.ProbeModel``),
so the heat map shows where the *positive-class logit of the probe* comes from, not
where some pretext head looks. The target is the last convolutional block (ResNet's
``layer4[-1]``). The method is pytorch-grad-cam's ``GradCAM``, used as a library.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cxrssl.extras import require
from cxrssl.hardware import resolve_device
from cxrssl.models import normalize_pixels


def last_conv_block(backbone: nn.Module) -> nn.Module:
    """ResNet's last residual block, or else the network's last Conv2d.

    A backbone read at every stage (``eval.features.BlockReadout``) is explained at its
    ResNet's last block too: the map then shows where the last stage's share of the score
    comes from (the earlier stages' share does not pass through that block).
    """
    backbone = getattr(backbone, "backbone", backbone)  # BlockReadout wraps the ResNet
    if hasattr(backbone, "layer4"):
        return backbone.layer4[-1]
    convolutions = [module for module in backbone.modules() if isinstance(module, nn.Conv2d)]
    if not convolutions:
        raise ValueError("the backbone has no convolution to explain")
    return convolutions[-1]


def gradcam_maps(model: nn.Module, target_layer: nn.Module, pixels: torch.Tensor, batch_size: int = 16, output: int = 0) -> np.ndarray:
    """(N, S, S) heat maps in [0, 1] for the logit in column ``output``: the positive class, or one finding of a multi-label model.

    ``pixels``: (N, S, S) uint8. Each map is scaled to its own maximum by the library.
    Runs on the GPU when one is visible, like feature extraction (which may already
    have moved the backbone there).
    """
    # pytorch-grad-cam is an optional dependency (the `explain` extra), imported only here
    GradCAM = require("pytorch_grad_cam", "explain").GradCAM
    ClassifierOutputTarget = require("pytorch_grad_cam.utils.model_targets", "explain").ClassifierOutputTarget

    device = resolve_device()
    model = model.to(device).eval()
    maps = []
    with GradCAM(model=model, target_layers=[target_layer]) as cam:
        for start in range(0, len(pixels), batch_size):
            inputs = normalize_pixels(pixels[start : start + batch_size].unsqueeze(1).to(device))
            maps.append(cam(input_tensor=inputs, targets=[ClassifierOutputTarget(output)] * len(inputs)))
    return np.concatenate(maps) if maps else np.zeros((0, *pixels.shape[1:]), np.float32)


def overlay(gray: np.ndarray, heat: np.ndarray, image_weight: float = 0.55) -> np.ndarray:
    """The radiograph (uint8, H×W) under its heat map, as RGB uint8."""
    show_cam_on_image = require("pytorch_grad_cam.utils.image", "explain").show_cam_on_image  # optional: the `explain` extra

    rgb = np.repeat((gray.astype(np.float32) / 255.0)[..., None], 3, axis=-1)
    return show_cam_on_image(rgb, heat.astype(np.float32), use_rgb=True, image_weight=image_weight)
