"""Tests for srdeblur.degrade: cropping, 8-bit quantisation, the SR literature's bicubic LR, seeded noise."""

from __future__ import annotations

import pytest
import torch

from srdeblur.degrade import add_gaussian_noise, bicubic_downscale, mod_crop, quantize_8bit
from srdeblur.resize import imresize


def _on_8bit_grid(image: torch.Tensor) -> bool:
    scaled = image.double() * 255
    return bool(torch.allclose(scaled, scaled.round(), rtol=0, atol=1e-3))


# ------------------------------------------------------------------------------------------------ mod_crop


def test_mod_crop_crops_bottom_right(make_image):
    image = make_image(10, 13)
    cropped = mod_crop(image, 4)
    assert cropped.shape == (1, 3, 8, 12)
    assert torch.equal(cropped, image[..., :8, :12])


def test_mod_crop_keeps_multiples_and_multiple_one(make_image):
    image = make_image(12, 9)
    assert torch.equal(mod_crop(image, 3), image)
    assert torch.equal(mod_crop(image, 1), image)


def test_mod_crop_errors():
    with pytest.raises(ValueError, match="multiple"):
        mod_crop(torch.zeros(1, 1, 8, 8), 0)
    with pytest.raises(ValueError, match="smaller than the scale"):
        mod_crop(torch.zeros(1, 1, 3, 8), 4)


# ------------------------------------------------------------------------------------------------ quantize


def test_quantize_8bit_hand_values():
    values = torch.tensor([-0.2, 0.0, 0.2, 3.4 / 255, 200.6 / 255, 1.0, 1.3])
    expected = torch.tensor([0, 0, 51, 3, 201, 255, 255], dtype=torch.float32) / 255
    torch.testing.assert_close(quantize_8bit(values), expected, rtol=0, atol=1e-7)


def test_quantize_8bit_is_idempotent_and_on_grid(make_image):
    image = make_image(9, 11) * 1.3 - 0.1
    once = quantize_8bit(image)
    assert _on_8bit_grid(once)
    assert once.min() >= 0 and once.max() <= 1
    assert torch.equal(quantize_8bit(once), once)
    assert (once - image.clamp(0, 1)).abs().max() <= 0.5 / 255 + 1e-6


# ------------------------------------------------------------------------------------------------ bicubic LR


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_downscale_shape_range_and_grid(make_image, scale):
    hr = make_image(6 * scale, 8 * scale)
    lr = bicubic_downscale(hr, scale)
    assert lr.shape == (1, 3, hr.shape[2] // scale, hr.shape[3] // scale)
    assert lr.dtype == torch.float32
    assert lr.min() >= 0 and lr.max() <= 1
    assert _on_8bit_grid(lr)
    # It is MATLAB imresize(hr, 1/scale) rounded to 8 bits: within half a level of the float result.
    reference = imresize(hr, scale=1 / scale).clamp(0, 1)
    assert (lr - reference).abs().max() <= 0.5 / 255 + 1e-6


def test_bicubic_downscale_without_quantize_is_clamped_float():
    hr = torch.zeros(1, 1, 8, 8)
    hr[..., :, 4:] = 1.0  # a step edge: bicubic overshoots, the result must still be in [0, 1]
    lr = bicubic_downscale(hr, 2, quantize=False)
    torch.testing.assert_close(lr, imresize(hr, scale=0.5).clamp(0, 1))
    assert lr.min() >= 0 and lr.max() <= 1
    assert not _on_8bit_grid(lr)


def test_bicubic_downscale_rejects_non_multiple(make_image):
    with pytest.raises(ValueError, match="mod_crop"):
        bicubic_downscale(make_image(10, 12), 4)
    with pytest.raises(ValueError, match="not a multiple"):
        bicubic_downscale(make_image(12, 10), 3)


# ------------------------------------------------------------------------------------------------ noise


def test_noise_is_deterministic_per_seed(make_image):
    image = make_image(16, 16)
    a = add_gaussian_noise(image, 0.05, generator=torch.Generator().manual_seed(7))
    b = add_gaussian_noise(image, 0.05, generator=torch.Generator().manual_seed(7))
    c = add_gaussian_noise(image, 0.05, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_noise_std_close_to_sigma_on_large_image():
    image = torch.full((1, 1, 256, 256), 0.5)
    noisy = add_gaussian_noise(image, 0.02, generator=torch.Generator().manual_seed(0))
    noise = noisy - image
    assert abs(noise.std().item() - 0.02) < 0.02 * 0.03
    assert abs(noise.mean().item()) < 0.02 * 0.03


def test_noise_is_not_clamped():
    image = torch.zeros(1, 1, 32, 32)
    noisy = add_gaussian_noise(image, 0.1, generator=torch.Generator().manual_seed(1))
    assert noisy.min() < 0


def test_noise_per_image_sigma():
    image = torch.full((3, 1, 96, 96), 0.5)
    sigma = torch.tensor([0.0, 0.01, 0.1])
    noisy = add_gaussian_noise(image, sigma, generator=torch.Generator().manual_seed(2))
    noise = noisy - image
    assert torch.equal(noisy[0], image[0])
    assert noise[1].std().item() == pytest.approx(0.01, rel=0.05)
    assert noise[2].std().item() == pytest.approx(0.1, rel=0.05)
    # the per-image levels scale one standard-normal draw: same generator state, float sigma 0.1 on all
    scalar = add_gaussian_noise(image, 0.1, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(noisy[2], scalar[2])
