"""Tests for srdeblur.resize: MATLAB ``imresize`` golden values from an independent NumPy reference, Pillow
agreement in the interior, invariants and error paths."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from srdeblur.resize import cubic, imresize, lanczos3, output_size


# ------------------------------------------------------------------------------------------------------------
# An independent reference of MATLAB's imresize (toolbox/images/images/imresize.m), written densely: each axis
# is an (out, in) matrix built from MATLAB's ``contributions``; float64 throughout.


def _ref_cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    inner = 1.5 * ax**3 - 2.5 * ax**2 + 1
    outer = -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2
    return np.where(ax <= 1, inner, np.where(ax <= 2, outer, 0.0))


def _ref_lanczos3(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < 3, np.sinc(x) * np.sinc(x / 3), 0.0)


_REF_KERNELS = {"cubic": (_ref_cubic, 4.0), "lanczos3": (_ref_lanczos3, 6.0)}


def _ref_matrix(in_length: int, out_length: int, scale: float, kernel: str, antialias: bool = True) -> np.ndarray:
    function, width = _REF_KERNELS[kernel]
    if scale < 1 and antialias:
        h = lambda x: scale * function(scale * x)  # noqa: E731 - MATLAB's stretched kernel
        width = width / scale
    else:
        h = function
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]
    weights = h(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    aux = np.concatenate([np.arange(1, in_length + 1), np.arange(in_length, 0, -1)])  # 1..n, n..1
    indices = aux[np.mod(indices.astype(np.int64) - 1, aux.size)]
    matrix = np.zeros((out_length, in_length))
    for row in range(out_length):
        for tap in range(taps):
            matrix[row, indices[row, tap] - 1] += weights[row, tap]
    return matrix


def ref_imresize(image: np.ndarray, out_size: tuple[int, int], scales: tuple[float, float], kernel: str = "cubic",
                 antialias: bool = True) -> np.ndarray:
    """(H, W) float64 -> out_size, the axis with the smaller scale first (as MATLAB)."""
    result = image.astype(np.float64)
    order = (0, 1) if scales[0] <= scales[1] else (1, 0)
    for axis in order:
        matrix = _ref_matrix(result.shape[axis], out_size[axis], scales[axis], kernel, antialias)
        result = matrix @ result if axis == 0 else result @ matrix.T
    return result


def _random_image(height: int, width: int, channels: int = 1, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, channels, height, width, generator=generator, dtype=torch.float64)


# ------------------------------------------------------------------------------------------------------------
# kernels


def test_cubic_kernel_hand_values():
    x = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, -0.5, -1.5], dtype=torch.float64)
    expected = torch.tensor([1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0, 0.5625, -0.0625], dtype=torch.float64)
    torch.testing.assert_close(cubic(x), expected, rtol=0, atol=1e-12)


def test_lanczos3_kernel_hand_values():
    x = torch.tensor([0.0, 0.5, 1.0, 2.0, 3.0, 3.5, -0.5], dtype=torch.float64)
    six_over_pi2 = 6 / math.pi**2  # sinc(1/2) sinc(1/6) = (2/pi) (3/pi)
    expected = torch.tensor([1.0, six_over_pi2, 0.0, 0.0, 0.0, 0.0, six_over_pi2], dtype=torch.float64)
    torch.testing.assert_close(lanczos3(x), expected, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------------------------
# golden values against the reference


@pytest.mark.parametrize(
    ("height", "width", "scale"),
    [
        (8, 8, 1 / 2),
        (9, 12, 1 / 3),
        (12, 16, 1 / 4),
        (5, 7, 2),
        (4, 6, 3),
        (12, 8, 0.75),
        (3, 5, 1 / 4),  # kernel (16 taps) far wider than the image: the mirror sequence repeats
        (7, 5, 4),
    ],
)
@pytest.mark.parametrize("kernel", ["cubic", "lanczos3"])
def test_imresize_scale_matches_matlab_reference(height, width, scale, kernel):
    image = _random_image(height, width, seed=height * 31 + width)
    out = imresize(image, scale=scale, kernel=kernel)
    out_size = (math.ceil(height * scale - 1e-9), math.ceil(width * scale - 1e-9))
    expected = ref_imresize(image[0, 0].numpy(), out_size, (scale, scale), kernel)
    assert out.shape == (1, 1, *out_size)
    np.testing.assert_allclose(out[0, 0].numpy(), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("in_size", "out_size"),
    [((10, 14), (7, 20)), ((16, 9), (5, 27)), ((6, 6), (6, 13)), ((11, 13), (4, 5))],
)
def test_imresize_size_non_square_matches_matlab_reference(in_size, out_size):
    image = _random_image(*in_size, seed=3)
    out = imresize(image, size=out_size)
    scales = (out_size[0] / in_size[0], out_size[1] / in_size[1])
    expected = ref_imresize(image[0, 0].numpy(), out_size, scales)
    assert out.shape == (1, 1, *out_size)
    np.testing.assert_allclose(out[0, 0].numpy(), expected, rtol=0, atol=1e-10)


def test_imresize_without_antialias_matches_reference():
    image = _random_image(12, 12, seed=4)
    out = imresize(image, scale=0.5, antialias=False)
    expected = ref_imresize(image[0, 0].numpy(), (6, 6), (0.5, 0.5), antialias=False)
    np.testing.assert_allclose(out[0, 0].numpy(), expected, rtol=0, atol=1e-10)
    # and it really differs from the antialiased result
    assert not torch.allclose(out, imresize(image, scale=0.5), atol=1e-3)


def test_imresize_float32_batch_and_channels_are_independent():
    image = _random_image(10, 9, channels=3, seed=5).float()
    batch = torch.cat([image, image.flip(-1)])
    out = imresize(batch, scale=1 / 3)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 4, 3)
    for b in range(2):
        for c in range(3):
            expected = ref_imresize(batch[b, c].double().numpy(), (4, 3), (1 / 3, 1 / 3))
            np.testing.assert_allclose(out[b, c].numpy(), expected, rtol=0, atol=2e-6)


def test_imresize_downscale_by_two_hand_computed_interior():
    # x1/2: output pixel j sits at input coordinate 2j + 0.5 (0-based) with symmetric normalised weights, which
    # reproduce a linear ramp exactly away from the borders: value(j) = 2j + 0.5.
    ramp = torch.arange(16, dtype=torch.float64).repeat(1, 1, 4, 1)  # (1, 1, 4, 16), value = column
    out = imresize(ramp, size=(4, 8))
    interior = out[0, 0, :, 2:-2]
    expected = torch.tensor([4.5, 6.5, 8.5, 10.5], dtype=torch.float64).expand(4, 4)
    torch.testing.assert_close(interior, expected, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------------------------
# agreement with Pillow in the interior


@pytest.mark.parametrize("out_hw", [(36, 30), (24, 20), (18, 15), (144, 120), (50, 40)])
def test_imresize_interior_agrees_with_pillow_bicubic(out_hw):
    rng = np.random.default_rng(0)
    coarse = rng.integers(30, 220, (12, 10, 3)).astype(np.uint8)
    image = np.array(Image.fromarray(coarse).resize((60, 72), Image.BICUBIC))  # (72, 60, 3), smooth-ish
    tensor = torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)[None]
    ours = (imresize(tensor, size=out_hw).clamp(0, 1) * 255).round().to(torch.int16)[0].permute(1, 2, 0).numpy()
    pillow = np.asarray(Image.fromarray(image).resize((out_hw[1], out_hw[0]), Image.BICUBIC), dtype=np.int16)
    border = 4
    difference = np.abs(ours - pillow)[border:-border, border:-border]
    assert difference.max() <= 1
    assert (difference == 0).mean() > 0.7


# ------------------------------------------------------------------------------------------------------------
# invariants


@pytest.mark.parametrize("kernel", ["cubic", "lanczos3"])
@pytest.mark.parametrize("scale", [1 / 4, 1 / 3, 0.5, 0.75, 2, 3])
def test_constant_image_stays_constant(kernel, scale):
    image = torch.full((1, 3, 11, 13), 0.37)
    out = imresize(image, scale=scale, kernel=kernel)
    torch.testing.assert_close(out, torch.full_like(out, 0.37), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("size", "scale", "expected"),
    [((10, 11), 0.5, (5, 6)), ((255, 256), 1 / 3, (85, 86)), ((7, 9), 2, (14, 18)), ((5, 5), 0.75, (4, 4)),
     ((9, 12), 1 / 3, (3, 4))],
)
def test_output_size_is_ceil(size, scale, expected):
    assert output_size(size, scale) == expected
    assert imresize(torch.zeros(1, 1, *size), scale=scale).shape[-2:] == expected


def test_size_and_scale_agree_when_consistent():
    image = _random_image(12, 18, channels=3, seed=6).float()
    for scale in (0.5, 1 / 3, 2):
        size = (round(12 * scale), round(18 * scale))
        torch.testing.assert_close(imresize(image, scale=scale), imresize(image, size=size), rtol=0, atol=1e-6)


def test_scale_one_is_identity_and_dtype_kept():
    image = _random_image(6, 7, channels=2, seed=7)
    out = imresize(image, scale=1)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, image, rtol=0, atol=1e-12)


def test_values_are_not_clamped():
    # Bicubic overshoots at a step edge; imresize documents that it does not clamp.
    step = torch.zeros(1, 1, 4, 8)
    step[..., 4:] = 1.0
    out = imresize(step, scale=2)
    assert out.max() > 1.0 and out.min() < 0.0


# ------------------------------------------------------------------------------------------------------------
# error paths


@pytest.mark.parametrize("shape", [(8, 8), (3, 8, 8), (1, 1, 1, 8, 8)])
def test_rejects_non_4d(shape):
    with pytest.raises(ValueError, match="B, C, H, W"):
        imresize(torch.zeros(shape), scale=0.5)


def test_needs_exactly_one_of_scale_and_size():
    image = torch.zeros(1, 1, 8, 8)
    with pytest.raises(ValueError, match="exactly one"):
        imresize(image)
    with pytest.raises(ValueError, match="exactly one"):
        imresize(image, scale=0.5, size=(4, 4))


def test_rejects_unknown_kernel():
    with pytest.raises(ValueError, match="unknown kernel"):
        imresize(torch.zeros(1, 1, 8, 8), scale=0.5, kernel="box")  # type: ignore[arg-type]


@pytest.mark.parametrize("scale", [0, -1.0])
def test_rejects_non_positive_scale(scale):
    with pytest.raises(ValueError, match="positive"):
        imresize(torch.zeros(1, 1, 8, 8), scale=scale)


def test_rejects_empty_size():
    with pytest.raises(ValueError, match="positive"):
        imresize(torch.zeros(1, 1, 8, 8), size=(0, 4))
