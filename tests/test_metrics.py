"""Tests for srdeblur.metrics: golden values vs scikit-image and hand-computed numbers, and the paper
convention end to end on Set5 bicubic (skipped without the shared data)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from srdeblur.metrics import align_shift, psnr, quantize, rgb_to_y, shave, ssim

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("SRDEBLUR_DATA") or REPO_ROOT.parent / "shared" / "data")
SET5 = DATA_ROOT / "bench" / "Set5"


# ---------------------------------------------------------------------------------------------- helpers
def to_tensor(array: np.ndarray) -> torch.Tensor:
    """HxW or HxWxC array in [0, 1] (or uint8) -> float32 (1, C, H, W) tensor in [0, 1]."""
    if array.dtype == np.uint8:
        array = array / 255.0
    if array.ndim == 2:
        array = array[..., None]
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)[None]


def to_array255(image: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) tensor in [0, 1] -> float64 HxWxC array on the 8-bit grid 0..255 (NumPy rounding)."""
    array = image[0].permute(1, 2, 0).double().numpy()
    return np.floor(np.clip(array, 0.0, 1.0) * 255.0 + 0.5)


def luma255(array255: np.ndarray) -> np.ndarray:
    """MATLAB rgb2ycbcr(uint8) luma, via scikit-image: HxWx3 0..255 -> HxW uint8-valued float64."""
    luma = rgb2ycbcr(array255 / 255.0)[..., 0]
    # 255000 Y is an integer for 8-bit RGB: snap away float noise so exact ties (Y = k + 0.5) round up.
    return np.floor(np.round(luma * 255000) / 255000 + 0.5)


def random_pair(shape: tuple[int, ...], seed: int, noise: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    target = torch.rand(shape, generator=generator)
    prediction = (target + noise * torch.randn(shape, generator=generator)).clamp(0, 1)
    return prediction, target


def astronaut_pair(*, gray: bool, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A 64x80 natural crop and a noisy, slightly blurred copy of it."""
    crop = skdata.astronaut()[100:164, 180:260]
    target = to_tensor(crop)
    if gray:
        target = target.mean(dim=1, keepdim=True)
    generator = torch.Generator().manual_seed(seed)
    blurred = 0.5 * target + 0.25 * (target.roll(1, dims=-1) + target.roll(1, dims=-2))
    prediction = (blurred + 0.02 * torch.randn(target.shape, generator=generator)).clamp(0, 1)
    return prediction, target


# ------------------------------------------------------------------------------------------- rgb_to_y
@pytest.mark.parametrize(
    ("rgb", "expected"),
    [
        ((1.0, 1.0, 1.0), 235.0),
        ((0.0, 0.0, 0.0), 16.0),
        ((1.0, 0.0, 0.0), 16.0 + 65.481),
        ((0.0, 1.0, 0.0), 16.0 + 128.553),
        ((0.0, 0.0, 1.0), 16.0 + 24.966),
        ((0.5, 0.5, 0.5), 16.0 + 219.0 / 2),
    ],
)
def test_rgb_to_y_hand_values(rgb, expected):
    image = torch.tensor(rgb, dtype=torch.float64).view(1, 3, 1, 1).expand(2, 3, 4, 5)
    y = rgb_to_y(image)
    assert y.shape == (2, 1, 4, 5)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y * 255, torch.full_like(y, expected), rtol=0, atol=1e-10)


def test_rgb_to_y_gray_is_r_equals_g_equals_b():
    gray = torch.rand(2, 1, 6, 7, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(rgb_to_y(gray), (16 + 219 * gray) / 255)
    torch.testing.assert_close(rgb_to_y(gray), rgb_to_y(gray.expand(2, 3, 6, 7)))


def test_rgb_to_y_matches_skimage_rgb2ycbcr():
    image = np.random.default_rng(2).random((9, 11, 3))
    expected = rgb2ycbcr(image)[..., 0] / 255
    result = rgb_to_y(torch.from_numpy(image).permute(2, 0, 1)[None])[0, 0].numpy()
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-12)


def test_rgb_to_y_keeps_float32():
    assert rgb_to_y(torch.rand(1, 3, 4, 4)).dtype == torch.float32


@pytest.mark.parametrize("shape", [(1, 2, 4, 4), (3, 4, 4), (1, 4, 4, 4)])
def test_rgb_to_y_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match="shape"):
        rgb_to_y(torch.rand(shape))


def test_rgb_to_y_rejects_integer_images():
    with pytest.raises(TypeError):
        rgb_to_y(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))


# ------------------------------------------------------------------------------------------- quantize
def test_quantize_hand_values():
    image = torch.tensor([-0.2, 0.0, 10.2 / 255, 10.7 / 255, 1.0, 1.3], dtype=torch.float64)
    expected = torch.tensor([0.0, 0.0, 10.0, 11.0, 255.0, 255.0], dtype=torch.float64) / 255
    torch.testing.assert_close(quantize(image), expected)


def test_quantize_rounds_halves_up_like_matlab():
    x = torch.tensor([253 / 510], dtype=torch.float64)
    assert (x * 255).item() == 126.5  # precondition: an exact half, where half-to-even would give 126
    assert quantize(x).item() * 255 == pytest.approx(127.0)


def test_quantize_is_idempotent_on_the_grid_and_keeps_dtype():
    image = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(3))
    once = quantize(image)
    assert once.dtype == torch.float32
    torch.testing.assert_close(quantize(once), once, rtol=0, atol=0)
    levels = once.double() * 255
    torch.testing.assert_close(levels, levels.round(), rtol=0, atol=1e-4)


def test_quantize_other_bit_depths():
    image = torch.tensor([0.2, 0.4, 0.9], dtype=torch.float64)
    torch.testing.assert_close(quantize(image, bits=1), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    expected_2_bits = torch.tensor([1 / 3, 1 / 3, 1.0], dtype=torch.float64)  # 0.6, 1.2, 2.7 levels
    torch.testing.assert_close(quantize(image, bits=2), expected_2_bits)
    with pytest.raises(ValueError, match="bits"):
        quantize(image, bits=0)


# ---------------------------------------------------------------------------------------------- shave
def test_shave_removes_exactly_the_border():
    image = torch.arange(2 * 1 * 7 * 9, dtype=torch.float32).view(2, 1, 7, 9)
    shaved = shave(image, 2)
    assert shaved.shape == (2, 1, 3, 5)
    torch.testing.assert_close(shaved, image[:, :, 2:5, 2:7])
    assert shave(image, 0) is image


@pytest.mark.parametrize("border", [-1, 4, 10])
def test_shave_rejects_bad_borders(border):
    with pytest.raises(ValueError):
        shave(torch.rand(1, 1, 7, 9), border)


# ----------------------------------------------------------------------------------------------- psnr
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_psnr_rgb_matches_skimage_on_random_images(channels, seed):
    prediction, target = random_pair((1, channels, 24, 20), seed)
    expected = peak_signal_noise_ratio(to_array255(target), to_array255(prediction), data_range=255)
    result = psnr(prediction, target, channel="rgb")
    assert result.shape == (1,)
    assert result.dtype == torch.float64
    assert result.item() == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("gray", [False, True])
def test_psnr_y_matches_skimage_on_natural_images(gray):
    prediction, target = astronaut_pair(gray=gray)
    target255, prediction255 = to_array255(target), to_array255(prediction)
    if gray:  # a gray image is luma of R = G = B
        target255, prediction255 = np.repeat(target255, 3, -1), np.repeat(prediction255, 3, -1)
    true_y, test_y = luma255(target255)[4:-4, 4:-4], luma255(prediction255)[4:-4, 4:-4]
    expected = peak_signal_noise_ratio(true_y, test_y, data_range=255)
    assert psnr(prediction, target, shave=4).item() == pytest.approx(expected, abs=1e-9)


def test_psnr_constant_offset_of_one_level():
    target = torch.full((1, 3, 8, 8), 100 / 255)
    prediction = target + 1 / 255
    assert psnr(prediction, target, channel="rgb").item() == pytest.approx(20 * math.log10(255), abs=1e-9)
    assert 20 * math.log10(255) == pytest.approx(48.13, abs=0.005)


def test_psnr_y_of_black_vs_white_gray_images():
    # Y = 16 vs 235: an error of 219 levels everywhere.
    black, white = torch.zeros(1, 1, 5, 5), torch.ones(1, 1, 5, 5)
    assert psnr(black, white).item() == pytest.approx(20 * math.log10(255 / 219), abs=1e-9)


def test_psnr_identical_images_is_inf():
    image = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(4))
    assert torch.equal(psnr(image, image), torch.full((2,), math.inf, dtype=torch.float64))


def test_psnr_is_per_image_in_a_batch():
    target = torch.full((3, 1, 6, 6), 100 / 255)
    prediction = target + torch.tensor([0.0, 1.0, 2.0]).view(3, 1, 1, 1) / 255
    result = psnr(prediction, target, channel="rgb")
    expected = [math.inf, 20 * math.log10(255), 20 * math.log10(255 / 2)]
    assert result.tolist() == pytest.approx(expected, abs=1e-9)


def test_psnr_shave_ignores_errors_in_the_border():
    target = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(5))
    prediction = target.clone()
    prediction[..., :3, :] = 0.0  # an error only in the top 3 rows
    assert math.isfinite(psnr(prediction, target, shave=2).item())
    assert psnr(prediction, target, shave=3).item() == math.inf


def test_psnr_quantization_effect():
    target = quantize(torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(6)).double())
    prediction = target + 0.4 / 255  # sub-level error: vanishes on the 8-bit grid
    assert psnr(prediction, target, channel="rgb").item() == math.inf
    unquantized = psnr(prediction, target, channel="rgb", quantize_output=False).item()
    assert unquantized == pytest.approx(20 * math.log10(255 / 0.4), abs=1e-6)


def test_psnr_y_rounds_luma_like_matlab_uint8():
    # Gray 0 vs 1/255: Y = 16 vs 16.8588 -> uint8 16 vs 17, one level apart after rounding.
    black, one = torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 1 / 255)
    assert psnr(one, black).item() == pytest.approx(20 * math.log10(255), abs=1e-9)
    assert psnr(one, black, quantize_output=False).item() == pytest.approx(20 * math.log10(255 / (219 / 255)))


def test_psnr_y_rounds_exact_luma_ties_up():
    # (R, G, B) = (0, 204, 68): Y = 16 + (128.553 * 204 + 24.966 * 68) / 255 = 125.5 exactly -> 126.
    tie = torch.tensor([0.0, 204.0, 68.0]).view(1, 3, 1, 1).expand(1, 3, 4, 4) / 255
    assert rgb_to_y(tie.double())[0, 0, 0, 0].item() * 255 == pytest.approx(125.5, abs=1e-4)
    gray_126 = torch.full((1, 3, 4, 4), 128 / 255)  # Y = 16 + 219 * 128 / 255 = 125.93 -> 126
    gray_125 = torch.full((1, 3, 4, 4), 127 / 255)  # Y = 125.07 -> 125
    assert psnr(tie, gray_126).item() == math.inf
    assert psnr(tie, gray_125).item() == pytest.approx(20 * math.log10(255), abs=1e-9)


def test_psnr_error_paths():
    image = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="same shape"):
        psnr(image, torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError, match="same shape"):
        psnr(image, torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="shave"):
        psnr(image, image, shave=4)
    with pytest.raises(ValueError, match="channel"):
        psnr(image, image, channel="lab")


# ----------------------------------------------------------------------------------------------- ssim
def skimage_ssim(target255: np.ndarray, prediction255: np.ndarray, *, channel_axis: int | None) -> float:
    return structural_similarity(
        target255,
        prediction255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=channel_axis,
    )


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_ssim_rgb_matches_skimage_on_random_images(channels, seed):
    prediction, target = random_pair((1, channels, 23, 30), seed, noise=0.1)
    target255, prediction255 = to_array255(target), to_array255(prediction)
    if channels == 1:
        expected = skimage_ssim(target255[..., 0], prediction255[..., 0], channel_axis=None)
    else:
        expected = skimage_ssim(target255, prediction255, channel_axis=-1)
    result = ssim(prediction, target, channel="rgb")
    assert result.shape == (1,)
    assert result.item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("gray", [False, True])
def test_ssim_y_matches_skimage_on_natural_images(gray):
    prediction, target = astronaut_pair(gray=gray, seed=1)
    target255, prediction255 = to_array255(target), to_array255(prediction)
    if gray:
        target255, prediction255 = np.repeat(target255, 3, -1), np.repeat(prediction255, 3, -1)
    true_y, test_y = luma255(target255)[3:-3, 3:-3], luma255(prediction255)[3:-3, 3:-3]
    expected = skimage_ssim(true_y, test_y, channel_axis=None)
    assert ssim(prediction, target, shave=3).item() == pytest.approx(expected, abs=1e-6)


def test_ssim_rgb_on_natural_image_matches_skimage():
    prediction, target = astronaut_pair(gray=False, seed=2)
    expected = skimage_ssim(to_array255(target), to_array255(prediction), channel_axis=-1)
    assert ssim(prediction, target, channel="rgb").item() == pytest.approx(expected, abs=1e-6)


def test_ssim_batch_equals_per_image_and_identical_is_one():
    prediction, target = random_pair((3, 3, 16, 16), seed=7, noise=0.1)
    batched = ssim(prediction, target)
    singles = torch.cat([ssim(prediction[i : i + 1], target[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, singles, rtol=0, atol=1e-12)
    assert (batched < 1).all()
    torch.testing.assert_close(ssim(target, target), torch.ones(3, dtype=torch.float64))


def test_ssim_error_paths():
    image = torch.rand(1, 1, 14, 14)
    with pytest.raises(ValueError, match="same shape"):
        ssim(image, torch.rand(1, 1, 14, 15))
    with pytest.raises(ValueError, match="11x11"):
        ssim(image, image, shave=2)
    with pytest.raises(ValueError, match="11x11"):
        ssim(torch.rand(1, 3, 10, 30), torch.rand(1, 3, 10, 30))


# ---------------------------------------------------------------------------------------- align_shift
def test_align_shift_recovers_known_shifts_per_image():
    gray = to_tensor(skdata.camera()[200:240, 220:264])  # (1, 1, 40, 44)
    target = torch.cat([gray, gray.flip(-1)])
    shifts = [(2, -3), (-4, 1)]
    prediction = torch.cat([t.roll(s, dims=(-2, -1)) for t, s in zip(target.split(1), shifts)])
    aligned, cropped = align_shift(prediction, target, max_shift=5)
    assert aligned.shape == cropped.shape == (2, 1, 30, 34)
    torch.testing.assert_close(cropped, target[..., 5:35, 5:39])
    torch.testing.assert_close(aligned, cropped, rtol=0, atol=0)
    assert psnr(prediction, target)[0] < 30  # the misalignment really matters before aligning


def test_align_shift_with_a_cropped_shift_on_rgb():
    image = to_tensor(skdata.astronaut()[50:90, 200:246])  # (1, 3, 40, 46)
    # prediction[i, j] = target[i + 1, j - 2]: the content moved by (-1, +2).
    target, prediction = image[..., 3:33, 3:39], image[..., 4:34, 1:37]
    aligned, cropped = align_shift(prediction, target, max_shift=3)
    torch.testing.assert_close(aligned, cropped, rtol=0, atol=0)
    torch.testing.assert_close(aligned, image[..., 6:30, 6:36], rtol=0, atol=0)


def test_align_shift_zero_and_error_paths():
    prediction, target = random_pair((1, 1, 12, 12), seed=8)
    aligned, cropped = align_shift(prediction, target, max_shift=0)
    assert torch.equal(aligned, prediction) and torch.equal(cropped, target)
    with pytest.raises(ValueError):
        align_shift(prediction, target, max_shift=-1)
    with pytest.raises(ValueError):
        align_shift(prediction, target, max_shift=6)
    with pytest.raises(ValueError, match="same shape"):
        align_shift(prediction, target[..., :11])


def test_align_shift_finds_quarter_pixel_shifts_with_a_border():
    # target[r, c] = bilinear sample of the photo at (r + 1.25, c - 2.5): a quarter-pixel grid finds it exactly,
    # the integer grid cannot (the nearest integer shifts leave an interpolation error).
    photo = to_tensor(skdata.camera()[180:240, 200:270]).double()  # (1, 1, 60, 70)
    rows, columns = torch.arange(60.0)[:, None] + 1.25, torch.arange(70.0)[None, :] - 2.5
    r0, c0, fr, fc = rows.floor().long(), columns.floor().long(), rows % 1, columns % 1
    def at(r, c):
        return photo[0, 0, r.clamp(0, 59), c.clamp(0, 69)]
    sampled = ((1 - fr) * (1 - fc) * at(r0, c0) + (1 - fr) * fc * at(r0, c0 + 1)
               + fr * (1 - fc) * at(r0 + 1, c0) + fr * fc * at(r0 + 1, c0 + 1))
    target = sampled[None, None]
    aligned, cropped = align_shift(photo, target, max_shift=4, step=0.25, border=10)
    assert aligned.shape == cropped.shape == (1, 1, 40, 50)
    torch.testing.assert_close(aligned, cropped, rtol=0, atol=1e-12)
    integer, _ = align_shift(photo, target, max_shift=4, border=10)
    assert psnr(integer, cropped)[0] < psnr(aligned, cropped)[0] - 10


def test_align_shift_fractional_keeps_integer_shifts_exact():
    gray = to_tensor(skdata.camera()[200:240, 220:264])
    prediction = gray.roll((2, -3), dims=(-2, -1))
    aligned, cropped = align_shift(prediction, gray, max_shift=5, step=0.25)
    torch.testing.assert_close(aligned, cropped.double(), rtol=0, atol=0)


@pytest.mark.parametrize(("options", "message"), [
    ({"step": 0.3}, "step must be 1/n"), ({"step": 0.0}, "step must be 1/n"), ({"step": 2.0}, "step must be 1/n"),
    ({"border": 2}, "border must be an integer of at least max_shift"),
])
def test_align_shift_rejects_bad_step_and_border(options, message):
    prediction, target = random_pair((1, 1, 20, 20), seed=9)
    with pytest.raises(ValueError, match=message):
        align_shift(prediction, target, max_shift=3, **options)


# ------------------------------------------------------------------------- paper convention end to end
#: Published bicubic Set5 Y-PSNR / SSIM (MATLAB ``imresize`` and MATLAB metrics): Kim et al., VDSR (CVPR 2016),
#: Table 3, the values every later SR paper (DRRN, LapSRN, ...) copies.
PUBLISHED_SET5_BICUBIC = {2: (33.66, 0.9299), 3: (30.39, 0.8682), 4: (28.42, 0.8104)}
#: What an independent resize measures with this module's metrics: LR and SR made by Pillow's
#: ``Image.resize(BICUBIC)`` (antialiased Keys a = -0.5, not srdeblur.resize), rounded to 0.01 dB
#: (``../shared/README.md``). Pillow and MATLAB round their kernels differently, hence 0.02 dB below published at x2.
PILLOW_SET5_BICUBIC_PSNR = {2: 33.64, 3: 30.38, 4: 28.42}


@pytest.mark.skipif(not SET5.is_dir(), reason=f"Set5 not found under {DATA_ROOT} (set SRDEBLUR_DATA)")
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_set5_bicubic_reproduces_published_numbers(scale):
    paths = sorted(SET5.glob("*.png"))
    assert len(paths) == 5
    psnrs, ssims = [], []
    for path in paths:
        with Image.open(path) as opened:
            hr = opened.convert("RGB")
        width, height = hr.width - hr.width % scale, hr.height - hr.height % scale
        hr = hr.crop((0, 0, width, height))  # mod-crop to the scale
        lr = hr.resize((width // scale, height // scale), Image.Resampling.BICUBIC)
        sr = lr.resize((width, height), Image.Resampling.BICUBIC)
        prediction, target = to_tensor(np.asarray(sr)), to_tensor(np.asarray(hr))
        psnrs.append(psnr(prediction, target, shave=scale).item())
        ssims.append(ssim(prediction, target, shave=scale).item())
    # The Pillow pipeline's value, to its rounding (0.005 dB) ...
    assert np.mean(psnrs) == pytest.approx(PILLOW_SET5_BICUBIC_PSNR[scale], abs=0.006)
    # ... and the published one, to within the 0.02 dB by which Pillow's resize differs from MATLAB's.
    expected_psnr, expected_ssim = PUBLISHED_SET5_BICUBIC[scale]
    assert np.mean(psnrs) == pytest.approx(expected_psnr, abs=0.025)
    assert np.mean(ssims) == pytest.approx(expected_ssim, abs=0.001)
