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


# ------------------------------------------------------------------------------------------------ realistic

import io  # noqa: E402
import math  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from srdeblur.degrade import (  # noqa: E402
    PRESETS,
    RealisticConfig,
    RoundConfig,
    anisotropic_gaussian_kernel,
    degradation_generator,
    estimate_noise,
    generalized_gaussian_kernel,
    jpeg_compress,
    plateau_kernel,
    realistic_downscale,
    sinc_kernel,
)


def _moments(kernel: np.ndarray) -> np.ndarray:
    half = kernel.shape[0] // 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1]
    return np.array([[(kernel * x * x).sum(), (kernel * x * y).sum()], [(kernel * x * y).sum(), (kernel * y * y).sum()]])


def test_anisotropic_gaussian_has_the_hand_covariance():
    sx, sy, theta = 3.0, 1.5, math.radians(30)
    kernel = anisotropic_gaussian_kernel(41, sx, sy, theta)
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    expected = rotation @ np.diag([sx**2, sy**2]) @ rotation.T
    assert kernel.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(_moments(kernel), expected, atol=0.02)


def test_generalized_gaussian_beta_one_is_the_gaussian_and_plateau_hand_values():
    np.testing.assert_allclose(generalized_gaussian_kernel(21, 2.0, 1.0, 0.4, 1.0),
                               anisotropic_gaussian_kernel(21, 2.0, 1.0, 0.4), atol=1e-12)
    # 1 / (1 + q^beta): q = 0 at the centre, q = 1 one sigma along the x axis -> ratio 2 for any beta.
    kernel = plateau_kernel(21, 3.0, 3.0, 0.0, 1.7)
    assert kernel[10, 10] / kernel[10, 13] == pytest.approx(2.0)


def test_sinc_kernel_is_an_ideal_low_pass():
    kernel = sinc_kernel(41, math.pi / 2)
    assert kernel.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(kernel, kernel.T, atol=1e-15)
    response = np.abs(np.fft.fft2(kernel, (256, 256)))[0]
    assert response[int(0.1 * 128)] == pytest.approx(1.0, abs=0.03)  # pass band (0.1 pi)
    assert response[int(0.3 * 128)] == pytest.approx(1.0, abs=0.05)
    assert response[int(0.7 * 128)] < 0.05 and response[int(0.9 * 128)] < 0.05  # stop band


def test_jpeg_compress_is_libjpeg_as_pillow_encodes_it():
    rng = np.random.default_rng(0)
    image = np.clip(np.cumsum(rng.normal(0, 0.02, (48, 40, 3)), axis=1) + 0.5, 0, 1).astype(np.float32)
    for quality in (20, 90):
        buffer = io.BytesIO()
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(buffer, "JPEG", quality=quality)
        reference = np.asarray(Image.open(buffer)).astype(np.float32) / 255
        np.testing.assert_array_equal(jpeg_compress(image, quality), reference)
    assert np.abs(jpeg_compress(image, 20) - image).mean() > np.abs(jpeg_compress(image, 90) - image).mean()


def _flat_patch(value: float = 0.5, size: int = 64) -> torch.Tensor:
    return torch.full((1, 3, size, size), value)


def _only_noise(sigma: float, gray: float = 0.0, gaussian: float = 1.0, poisson: float = 1.0) -> RealisticConfig:
    stage = RoundConfig(blur_probability=0.0, resize_probabilities=(0.0, 0.0, 1.0), gaussian_noise_probability=gaussian,
                        noise_sigma=(sigma, sigma), poisson_scale=(poisson, poisson), gray_noise_probability=gray,
                        jpeg_probability=0.0)
    # final JPEG at 100 and no sinc: close to transparent, so the noise statistics can be checked
    return RealisticConfig(first=stage, second=stage, second_probability=0.0, final_sinc_probability=0.0,
                           final_jpeg_quality=(100, 100))


def test_gaussian_noise_stage_has_the_drawn_sigma():
    # gray noise (the same in every channel) passes JPEG 100's 4:2:0 chroma subsampling unchanged
    gray = realistic_downscale(_flat_patch(size=256), 1, _only_noise(0.05, gray=1.0), generator=torch.Generator().manual_seed(1))
    assert float((gray - 0.5).std()) == pytest.approx(0.05, rel=0.08)
    colour = realistic_downscale(_flat_patch(size=128), 1, _only_noise(0.05), generator=torch.Generator().manual_seed(2))
    assert float((gray[:, 0] - gray[:, 2]).abs().mean()) < 0.01 < float((colour[:, 0] - colour[:, 2]).abs().mean())


def test_poisson_noise_stage_has_shot_noise_variance():
    # Poisson at 256 photons per unit, scaled by 2: sigma = 2 sqrt(I / 256) = 0.0884 at I = 0.5
    lr = realistic_downscale(_flat_patch(size=256), 1, _only_noise(0.0, gray=1.0, gaussian=0.0, poisson=2.0),
                             generator=torch.Generator().manual_seed(3))
    assert float((lr - 0.5).std()) == pytest.approx(2 * math.sqrt(0.5 / 256), rel=0.08)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("scale", [2, 4])
def test_realistic_downscale_shapes_range_grid_and_determinism(make_image, preset, scale):
    hr = make_image(64, 48).expand(2, 3, -1, -1).contiguous()
    lr = realistic_downscale(hr, scale, preset, generator=degradation_generator(7, 3))
    assert lr.shape == (2, 3, 64 // scale, 48 // scale) and lr.dtype == torch.float32
    assert lr.min() >= 0 and lr.max() <= 1 and _on_8bit_grid(lr)
    again = realistic_downscale(hr, scale, preset, generator=degradation_generator(7, 3))
    assert torch.equal(lr, again)
    other = realistic_downscale(hr, scale, preset, generator=degradation_generator(7, 4))
    assert not torch.equal(lr, other)
    # it degrades: farther from the clean bicubic LR than 8-bit rounding
    assert float((lr - bicubic_downscale(hr, scale)).abs().mean()) > 1 / 255


def test_strong_degrades_more_than_mild_on_average(make_image):
    hr = make_image(96, 96)
    errors = {}
    for preset in ("mild", "strong"):
        values = [float((realistic_downscale(hr, 4, preset, generator=degradation_generator(0, i))
                         - bicubic_downscale(hr, 4)).square().mean()) for i in range(12)]
        errors[preset] = sum(values) / len(values)
    assert errors["strong"] > errors["mild"]


def test_realistic_downscale_errors(make_image):
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="unknown degradation preset"):
        realistic_downscale(make_image(16, 16), 2, "heavy", generator=generator)
    with pytest.raises(ValueError, match="not a multiple"):
        realistic_downscale(make_image(15, 16), 2, generator=generator)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        realistic_downscale(torch.zeros(1, 1, 16, 16), 2, generator=generator)


def test_estimate_noise_recovers_a_known_sigma():
    flat = torch.full((2, 3, 128, 128), 0.5)
    noisy = add_gaussian_noise(flat, torch.tensor([0.01, 0.04]), generator=torch.Generator().manual_seed(0))
    estimate = estimate_noise(noisy)
    assert estimate.shape == (2,)
    torch.testing.assert_close(estimate, torch.tensor([0.01, 0.04]), rtol=0.1, atol=0)
    assert float(estimate_noise(flat)[0]) < 1e-6
