"""Tests for srdeblur.classical: blur, Wiener and Richardson-Lucy against scipy / scikit-image and by hand."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from skimage import data, restoration, transform

from srdeblur.classical import blur, pad_for_deconvolution, richardson_lucy, wiener
from srdeblur.kernels import gaussian_psf, motion_psf, random_motion_psf


def psnr(estimate: np.ndarray, reference: np.ndarray) -> float:
    mse = np.mean((np.asarray(estimate, np.float64) - np.asarray(reference, np.float64)) ** 2)
    return float(10 * np.log10(1 / mse))


def as_batch(array: np.ndarray) -> torch.Tensor:
    """(H, W) -> (1, 1, H, W) float32."""
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    """A 64 x 64 natural grayscale image in [0, 1]."""
    return transform.resize(data.camera(), (64, 64), anti_aliasing=True).astype(np.float32)


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    """A (1, 3, 96, 96) natural RGB image in [0, 1]."""
    rgb = transform.resize(data.astronaut(), (96, 96), anti_aliasing=True).astype(np.float32)
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous()


def noisy_blur(image: torch.Tensor, psf: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (blur(image, psf) + sigma * torch.randn(image.shape, generator=generator)).clamp(0, 1)


# --- blur ---------------------------------------------------------------------------------------------------

SCIPY_MODES = {"reflect": "mirror", "replicate": "nearest", "circular": "wrap", "zeros": "constant"}
PSFS = {
    "motion 5x5 (direct path)": lambda: motion_psf(5, 30),
    "random 15x15 (FFT path)": lambda: random_motion_psf(15, generator=torch.Generator().manual_seed(1)),
    "asymmetric even 4x6": lambda: torch.rand(4, 6, generator=torch.Generator().manual_seed(2)),
}


@pytest.mark.parametrize("psf_name", list(PSFS))
@pytest.mark.parametrize("padding", list(SCIPY_MODES))
def test_blur_matches_scipy_convolve(camera, psf_name, padding):
    psf = PSFS[psf_name]()
    expected = ndi.convolve(camera.astype(np.float64), psf.double().numpy(), mode=SCIPY_MODES[padding])
    result = blur(as_batch(camera), psf, padding=padding)[0, 0].numpy()
    np.testing.assert_allclose(result, expected, atol=2e-6)


def test_blur_is_convolution_not_correlation():
    # A PSF whose only weight sits one row below the centre moves the image one row down.
    image = torch.rand(1, 1, 8, 9, generator=torch.Generator().manual_seed(0))
    psf = torch.zeros(3, 3)
    psf[2, 1] = 1.0
    shifted = blur(image, psf, padding="circular")
    torch.testing.assert_close(shifted, torch.roll(image, 1, dims=-2))


def test_blur_batch_and_channels_are_independent(astronaut):
    batch = torch.cat([astronaut, astronaut.flip(-1)])
    psf = gaussian_psf(1.2)
    whole = blur(batch, psf)
    for b in range(2):
        for c in range(3):
            torch.testing.assert_close(whole[b, c], blur(batch[b : b + 1, c : c + 1], psf)[0, 0])


def test_blur_keeps_dtype_and_shape(astronaut):
    result = blur(astronaut.double(), motion_psf(9, 10))
    assert result.shape == astronaut.shape and result.dtype == torch.float64


# --- Wiener -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("balance", [0.001, 0.05])
def test_wiener_equals_skimage_on_the_same_array(camera, balance):
    # 64 x 48 has only factors 2 and 3, so pad=0 is exactly skimage's periodic deconvolution.
    image = camera[:, :48]
    psf = motion_psf(7, 30)
    blurred = noisy_blur(as_batch(image), psf, 0.01)
    ours = wiener(blurred, psf, balance=balance, pad=0, clip=False)[0, 0].numpy()
    expected = restoration.wiener(blurred[0, 0].numpy(), psf.numpy(), balance, clip=False)
    np.testing.assert_allclose(ours, expected, atol=2e-5)


def test_wiener_without_regularisation_inverts_an_invertible_blur():
    # The periodic blur by [0.2, 0.6, 0.2] has transfer function 0.6 + 0.4 cos(w) >= 0.2: exactly invertible.
    image = torch.rand(2, 3, 30, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    psf = torch.tensor([[0.2, 0.6, 0.2]], dtype=torch.float64)
    blurred = blur(image, psf, padding="circular")
    torch.testing.assert_close(wiener(blurred, psf, balance=0.0, pad=0), image)


def test_wiener_improves_a_blurred_image(astronaut):
    psf = motion_psf(9, 30)
    blurred = noisy_blur(astronaut, psf, 0.005)
    restored = wiener(blurred, psf)
    assert restored.shape == astronaut.shape and restored.dtype == torch.float32
    assert 0 <= restored.min() and restored.max() <= 1
    assert psnr(restored.numpy(), astronaut.numpy()) > psnr(blurred.numpy(), astronaut.numpy()) + 1.0


def test_wiener_delta_psf_is_identity(astronaut):
    delta = torch.ones(1, 1)
    torch.testing.assert_close(wiener(astronaut, delta, balance=0.0), astronaut, atol=1e-5, rtol=0)


# --- Richardson-Lucy ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("iterations", [1, 10, 30])
def test_richardson_lucy_equals_skimage_on_the_same_padded_array(camera, iterations):
    # Both run on the same reflect-padded 160 x 160 array (factors 2 and 5: pad=0 adds nothing). They differ
    # only in the boundary rule inside the loop (periodic here, zero for skimage), whose influence has not
    # reached the central 64 x 64 after 30 iterations.
    psf = motion_psf(7, 30)
    blurred = noisy_blur(as_batch(camera), psf, 0.01)
    margin = 48
    padded = np.pad(blurred[0, 0].numpy(), margin, mode="reflect")
    centre = (slice(margin, -margin), slice(margin, -margin))
    ours = richardson_lucy(as_batch(padded), psf, iterations=iterations, pad=0, clip=False)[0, 0].numpy()[centre]
    expected = restoration.richardson_lucy(padded, psf.numpy(), num_iter=iterations, clip=False)[centre]
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    assert abs(psnr(ours, camera) - psnr(expected, camera)) < 0.05


def test_richardson_lucy_improves_a_blurred_image(astronaut):
    psf = motion_psf(9, 30)
    blurred = noisy_blur(astronaut, psf, 0.005)
    restored = richardson_lucy(blurred, psf, iterations=20)
    assert restored.shape == astronaut.shape and restored.dtype == torch.float32
    assert 0 <= restored.min() and restored.max() <= 1
    assert psnr(restored.numpy(), astronaut.numpy()) > psnr(blurred.numpy(), astronaut.numpy()) + 1.0


def test_richardson_lucy_delta_psf_is_identity(astronaut):
    image = astronaut * 0.9 + 0.05  # strictly positive, so y / x is defined everywhere
    torch.testing.assert_close(richardson_lucy(image, torch.ones(1, 1), iterations=5), image, atol=1e-5, rtol=0)


def test_richardson_lucy_zero_iterations_returns_the_input(astronaut):
    torch.testing.assert_close(richardson_lucy(astronaut, motion_psf(5, 0), iterations=0), astronaut)


def test_richardson_lucy_planes_are_independent(astronaut):
    psf = motion_psf(7, 60)
    batch = torch.cat([astronaut, astronaut.flip(-2)])
    whole = richardson_lucy(batch, psf, iterations=5)
    single = richardson_lucy(batch[1:, 2:], psf, iterations=5)
    # Mixed planes would differ by tenths; batched and single FFTs round differently in float32 on some CPUs
    # (5e-5 after 5 iterations on an AVX-512/AMX Xeon), so the tolerance is float32 noise, not 1e-5.
    torch.testing.assert_close(whole[1:, 2:], single, atol=2e-4, rtol=0)


def total_variation(image: torch.Tensor) -> float:
    return float((image.diff(dim=-1).abs().sum() + image.diff(dim=-2).abs().sum()).item())


def test_tv_regularisation_smooths(astronaut):
    psf = motion_psf(9, 30)
    blurred = noisy_blur(astronaut, psf, 0.02)
    plain = richardson_lucy(blurred, psf, iterations=15)
    regularised = richardson_lucy(blurred, psf, iterations=15, tv_weight=0.01)
    assert total_variation(regularised) < 0.95 * total_variation(plain)


def test_tv_term_vanishes_on_a_constant_image():
    # grad x = 0 on a constant image, so the TV factor is exactly 1 and both variants agree.
    image = torch.full((1, 1, 24, 24), 0.3)
    psf = motion_psf(5, 45)
    torch.testing.assert_close(
        richardson_lucy(image, psf, iterations=4, tv_weight=0.1), richardson_lucy(image, psf, iterations=4)
    )


# --- padding ------------------------------------------------------------------------------------------------


def test_pad_for_deconvolution_keeps_the_image_and_uses_fft_friendly_sizes(astronaut):
    psf = motion_psf(11, 20)  # 11 x 11 or so: radius 5, default pad 15
    padded, (top, left) = pad_for_deconvolution(astronaut, psf)
    pad = 3 * (max(psf.shape) // 2)
    assert (top, left) == (pad, pad)
    assert padded.shape[:2] == astronaut.shape[:2]
    for size, original in zip(padded.shape[-2:], astronaut.shape[-2:]):
        assert size >= original + 2 * pad
        rest = size
        for prime in (2, 3, 5):
            while rest % prime == 0:
                rest //= prime
        assert rest == 1
    torch.testing.assert_close(padded[..., top : top + 96, left : left + 96], astronaut)


def test_edge_taper_reduces_border_ringing(astronaut):
    # A periodic deconvolution of a non-periodic image rings at the borders; padding + taper must not.
    psf = motion_psf(15, 30)
    blurred = noisy_blur(astronaut, psf, 0.0)
    border = torch.ones(96, 96, dtype=torch.bool)
    border[8:-8, 8:-8] = False
    tapered = wiener(blurred, psf, balance=0.002)
    periodic = wiener(blurred, psf, balance=0.002, pad=0)
    error = lambda restored: (restored - astronaut)[..., border].square().mean().item()  # noqa: E731
    assert error(tapered) < 0.5 * error(periodic)


# --- errors -------------------------------------------------------------------------------------------------

GOOD_IMAGE = torch.rand(1, 1, 16, 16)
GOOD_PSF = torch.full((3, 3), 1 / 9)


@pytest.mark.parametrize("function", [blur, wiener, richardson_lucy])
@pytest.mark.parametrize(
    ("image", "psf"),
    [
        (torch.rand(16, 16), GOOD_PSF),
        (torch.rand(1, 16, 16), GOOD_PSF),
        (torch.rand(1, 1, 1, 16, 16), GOOD_PSF),
        (torch.zeros(1, 1, 16, 16, dtype=torch.uint8), GOOD_PSF),
        (np.zeros((1, 1, 16, 16), np.float32), GOOD_PSF),
        (GOOD_IMAGE, torch.ones(3) / 3),
        (GOOD_IMAGE, torch.ones(1, 3, 3) / 9),
        (GOOD_IMAGE, torch.zeros(0, 3)),
        (GOOD_IMAGE, torch.tensor([[float("nan"), 1.0]])),
    ],
)
def test_bad_shapes_and_types_raise_value_error(function, image, psf):
    with pytest.raises(ValueError):
        function(image, psf)


@pytest.mark.parametrize(
    "call",
    [
        lambda: blur(GOOD_IMAGE, GOOD_PSF, padding="mirror"),
        lambda: blur(GOOD_IMAGE, torch.ones(17, 17) / 289, padding="circular"),
        lambda: wiener(GOOD_IMAGE, GOOD_PSF, balance=-0.1),
        lambda: wiener(GOOD_IMAGE, GOOD_PSF, pad=-1),
        lambda: wiener(GOOD_IMAGE, torch.ones(21, 21) / 441, pad=0),
        lambda: richardson_lucy(GOOD_IMAGE, GOOD_PSF, iterations=-1),
        lambda: richardson_lucy(GOOD_IMAGE, GOOD_PSF, iterations=2.5),
        lambda: richardson_lucy(GOOD_IMAGE, GOOD_PSF, tv_weight=0.25),
        lambda: richardson_lucy(GOOD_IMAGE, GOOD_PSF, tv_weight=-0.01),
        lambda: richardson_lucy(GOOD_IMAGE, GOOD_PSF, pad=1.5),
    ],
)
def test_bad_options_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


@pytest.mark.parametrize("tv_weight", [0.0, 0.002])
def test_richardson_lucy_stays_finite_on_black_surroundings(tv_weight):
    # FFT round-off leaves values ~1e-7 below zero in the black band; without clamping them the
    # multiplicative updates changed sign and diverged to NaN everywhere within 30 iterations.
    generator = torch.Generator().manual_seed(0)
    sharp = torch.zeros(1, 1, 96, 96)
    sharp[..., 30:60, 20:70] = torch.rand(30, 50, generator=generator)
    blurred = blur(sharp, gaussian_psf(4.0))
    restored = richardson_lucy(blurred, gaussian_psf(4.0), iterations=30, tv_weight=tv_weight, clip=False)
    assert torch.isfinite(restored).all() and float(restored.min()) >= 0
    assert float((restored - sharp).square().mean()) < float((blurred - sharp).square().mean())
