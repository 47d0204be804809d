import pytest
import torch

from cxrssl.models import normalize_pixels
from cxrssl.ssl.augment import AugmentConfig, BatchAugment, blur_batch, crop_flip_rotate_matrices

IDENTITY = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, rotation_deg=0.0, jitter_p=0.0, blur_p=0.0)


def _pixels(count=4, size=32, seed=0):
    return torch.randint(0, 256, (count, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_identity_settings_return_the_normalised_input():
    pixels = _pixels()
    views = BatchAugment(IDENTITY, 32)(pixels, torch.Generator().manual_seed(0))
    torch.testing.assert_close(views, normalize_pixels(pixels.unsqueeze(1).float()), atol=1e-4, rtol=0)


def test_flip_mirrors_left_and_right():
    pixels = _pixels()
    flip_always = AugmentConfig(**{**IDENTITY.to_dict(), "flip_p": 1.0})
    views = BatchAugment(AugmentConfig.from_dict(flip_always.to_dict()), 32)(pixels, torch.Generator().manual_seed(0))
    torch.testing.assert_close(views, normalize_pixels(pixels.flip(-1).unsqueeze(1).float()), atol=1e-4, rtol=0)


def test_resized_crop_is_a_zoom_into_the_image():
    # A crop of half the area is resized back to the full size: a 64-px output of a
    # 32-px centre crop of a 64-px ramp spans about half of the ramp's range.
    ramp = torch.linspace(0, 255, 64).round().to(torch.uint8).repeat(1, 64, 1)
    config = AugmentConfig(**{**IDENTITY.to_dict(), "crop_scale": (0.25, 0.25)})
    view = BatchAugment(AugmentConfig.from_dict(config.to_dict()), 64)(ramp, torch.Generator().manual_seed(0))
    pixel_range = (view.max() - view.min()).item() * 0.25 * 255
    assert 110 < pixel_range < 145


def test_crop_stays_inside_the_image():
    config = AugmentConfig(rotation_deg=0.0, flip_p=0.0)
    matrices = crop_flip_rotate_matrices(config, 2000, torch.Generator().manual_seed(1))
    half_width, half_height = matrices[:, 0, 0], matrices[:, 1, 1]
    centre_x, centre_y = matrices[:, 0, 2], matrices[:, 1, 2]
    assert torch.all(centre_x.abs() + half_width <= 1 + 1e-6)
    assert torch.all(centre_y.abs() + half_height <= 1 + 1e-6)
    area = half_width * half_height
    assert area.min() >= 0.3 - 1e-4 and area.max() <= 1.0 + 1e-6


def test_same_generator_same_views_and_two_draws_differ():
    pixels = _pixels(8, 48)
    augment = BatchAugment(AugmentConfig(), 32)
    first = augment(pixels, torch.Generator().manual_seed(5))
    again = augment(pixels, torch.Generator().manual_seed(5))
    torch.testing.assert_close(first, again)
    generator = torch.Generator().manual_seed(5)
    view1, view2 = augment(pixels, generator), augment(pixels, generator)
    assert first.shape == (8, 1, 32, 32)
    assert not torch.allclose(view1, view2)


def test_blur_smooths_and_keeps_the_mean():
    images = torch.rand(3, 1, 32, 32)
    blurred = blur_batch(images, torch.tensor([0.0, 1.0, 2.0]))
    torch.testing.assert_close(blurred[0], images[0])  # sigma 0: untouched
    assert blurred[2].std() < blurred[1].std() < images[1].std()
    assert blurred[2].mean().item() == pytest.approx(images[2].mean().item(), abs=0.02)


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="crop_scale"):
        AugmentConfig(crop_scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="flip_p"):
        AugmentConfig(flip_p=1.5)
    with pytest.raises(ValueError, match="unknown"):
        AugmentConfig.from_dict({"hue": 0.1})
