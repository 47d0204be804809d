import pytest
import torch
import torch.nn.functional as F

from cxrssl.errors import ConfigError
from cxrssl.models import ARCHITECTURES, build_backbone, feature_dim, rgb_stem_to_gray


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_one_channel_stem_and_pooled_features(arch):
    backbone = build_backbone(arch).eval()
    assert backbone.conv1.in_channels == 1
    assert backbone(torch.randn(2, 1, 64, 64)).shape == (2, ARCHITECTURES[arch])


def test_folded_rgb_stem_sees_a_grey_image_as_the_rgb_stem_did():
    rgb_weight = torch.randn(8, 3, 7, 7)
    grey = torch.rand(1, 1, 32, 32)
    as_rgb = F.conv2d(grey.expand(1, 3, 32, 32), rgb_weight, padding=3)
    folded = F.conv2d(grey, rgb_stem_to_gray(rgb_weight), padding=3)
    torch.testing.assert_close(folded, as_rgb, rtol=1e-5, atol=1e-5)


def test_unknown_architecture():
    with pytest.raises(ConfigError, match="unknown architecture 'vit'"):
        feature_dim("vit")
