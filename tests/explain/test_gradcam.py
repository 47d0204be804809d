import numpy as np
import pytest
import torch
from torch import nn

from cxrssl.eval.model import ProbeModel
from cxrssl.explain.gradcam import gradcam_maps, last_conv_block, overlay

pytest.importorskip("pytorch_grad_cam")


def _bright_spot_model() -> ProbeModel:
    """A detector of bright pixels: its evidence for 'positive' is wherever the image is bright."""
    detector = nn.Conv2d(1, 4, 3, padding=1, bias=False)
    target = nn.Conv2d(4, 4, 1, bias=False)
    with torch.no_grad():
        detector.weight.fill_(1 / 9)
        target.weight.copy_(torch.eye(4).view(4, 4, 1, 1))
    backbone = nn.Sequential(detector, nn.ReLU(), target, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    probe = nn.Linear(4, 1)
    with torch.no_grad():
        probe.weight.fill_(1.0)
        probe.bias.fill_(-1.0)
    return ProbeModel(backbone, probe)


@pytest.mark.parametrize("quadrant", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_a_pattern_in_one_quadrant_lights_that_quadrant(quadrant):
    model = _bright_spot_model()
    image = torch.zeros(1, 32, 32, dtype=torch.uint8)
    top, left = 16 * quadrant[0] + 4, 16 * quadrant[1] + 4
    image[0, top : top + 8, left : left + 8] = 255
    heat = gradcam_maps(model, model.backbone[2], image)[0]
    assert heat.shape == (32, 32)
    mass = [[heat[16 * r : 16 * r + 16, 16 * c : 16 * c + 16].sum() for c in (0, 1)] for r in (0, 1)]
    lit = np.unravel_index(np.argmax(mass), (2, 2))
    assert tuple(lit) == quadrant
    assert mass[quadrant[0]][quadrant[1]] > 0.9 * heat.sum()


def test_last_conv_block_of_a_resnet_and_of_a_plain_network():
    from cxrssl.models import build_backbone

    resnet = build_backbone("resnet18")
    assert last_conv_block(resnet) is resnet.layer4[-1]
    model = _bright_spot_model()
    assert last_conv_block(model.backbone) is model.backbone[2]


def test_overlay_is_rgb_of_the_same_size():
    picture = overlay(np.full((20, 30), 128, np.uint8), np.zeros((20, 30)))
    assert picture.shape == (20, 30, 3) and picture.dtype == np.uint8
