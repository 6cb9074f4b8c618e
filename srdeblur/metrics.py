"""Image quality metrics computed exactly as super-resolution papers do.

The "paper convention" (SRCNN, VDSR, LapSRN, EDSR, ... and their MATLAB evaluation scripts):

1. Quantize the restored image to 8 bits (``round(clip(x, 0, 1) * 255)``); the ground truth too (a no-op
   for ground truth read from an 8-bit file).
2. Convert RGB to the luma channel Y of MATLAB's ``rgb2ycbcr`` (ITU-R BT.601, studio range):
   ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` with R, G, B in [0, 1], so Y lies in [16, 235] on the
   0..255 scale. MATLAB's ``rgb2ycbcr`` on a uint8 image returns uint8, so Y is rounded to integer levels
   too; the published numbers include that rounding (BasicSR-style code that keeps Y in floating point
   reads about 0.01-0.035 dB higher on Set5 bicubic). ``quantize_output=False`` skips both roundings.
3. Shave ``scale`` pixels from each border (the caller passes ``shave=scale``; the default here is 0).
4. Measure on the 0..255 scale in float64: PSNR with peak 255; SSIM of Wang et al. 2004 (Gaussian window
   11 x 11, sigma 1.5, K1 = 0.01, K2 = 0.03, population covariances) averaged over the "valid" region
   where the window fits entirely inside the image, like MATLAB's ``ssim_index`` (``filter2(..., 'valid')``).
   scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
   data_range=255)`` filters with an 11-tap Gaussian (``truncate=3.5``) and then crops the 5-pixel border
   from the SSIM map, which is the same region: the two agree to about 1e-12 (tested to 1e-6).

With these choices, bicubic (Pillow BICUBIC, which reproduces MATLAB's imresize) on Set5 measures
33.638 / 30.385 / 28.417 dB and SSIM 0.9292 / 0.8678 / 0.8100 at x2 / x3 / x4; the papers publish
33.64 / 30.38 / 28.42 dB and 0.9299 / 0.8682 / 0.8104 (tests/test_metrics.py checks this).

All functions take float tensors of shape (B, C, H, W) with values in [0, 1], C = 3 (RGB) or 1 (gray),
and return one value per image (shape (B,)), so a batch is measured in one call.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "CHANNELS",
    "PIXEL_MAX",
    "align_shift",
    "psnr",
    "quantize",
    "rgb_to_y",
    "shave",
    "ssim",
]

_logger = logging.getLogger(__name__)

PIXEL_MAX = 255.0
"""Peak value (data range) of the 8-bit scale on which PSNR and SSIM are measured."""

CHANNELS = ("y", "rgb")
"""Accepted values of the ``channel`` option of :func:`psnr` and :func:`ssim`."""

# MATLAB rgb2ycbcr, luma row, for inputs in [0, 1] and output on the 0..255 scale (BT.601 studio range).
# The weights sum to exactly 219 = 235 - 16, so a gray value g maps to 16 + 219 g.
_Y_OFFSET = 16.0
_Y_WEIGHTS = (65.481, 128.553, 24.966)

# Wang et al. 2004 SSIM constants.
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03


def _check_image(image: Tensor, name: str) -> None:
    """Raise unless ``image`` is a floating-point (B, C, H, W) tensor with C = 1 or 3."""
    if not isinstance(image, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(image).__name__}")
    if not image.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor in [0, 1], got dtype {image.dtype}")
    if image.ndim != 4 or image.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have shape (B, 1 or 3, H, W), got {tuple(image.shape)}")


def _check_pair(prediction: Tensor, target: Tensor) -> None:
    """Raise unless prediction and target are valid images of identical shape."""
    _check_image(prediction, "prediction")
    _check_image(target, "target")
    if prediction.shape != target.shape:
        raise ValueError(
            f"prediction and target must have the same shape, got {tuple(prediction.shape)} "
            f"and {tuple(target.shape)}"
        )


def rgb_to_y(image: Tensor) -> Tensor:
    """Luma channel Y of MATLAB's ``rgb2ycbcr`` (ITU-R BT.601, studio range).

    ``Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255``. A gray image is treated as R = G = B, so
    ``Y = (16 + 219 g) / 255``.

    Parameters
    ----------
    image : Tensor
        Float tensor of shape (B, 3, H, W) (RGB) or (B, 1, H, W) (gray), values in [0, 1].

    Returns
    -------
    Tensor
        Shape (B, 1, H, W), same dtype as ``image``, values in [16/255, 235/255] for inputs in [0, 1].
        Not rounded: the paper convention keeps Y in floating point.

    Raises
    ------
    ValueError
        If the shape is not (B, 1 or 3, H, W).
    TypeError
        If ``image`` is not a floating-point tensor.
    """
    _check_image(image, "image")
    if image.shape[1] == 1:
        return (_Y_OFFSET + sum(_Y_WEIGHTS) * image) / PIXEL_MAX
    red, green, blue = image[:, 0:1], image[:, 1:2], image[:, 2:3]
    weight_r, weight_g, weight_b = _Y_WEIGHTS
    return (_Y_OFFSET + weight_r * red + weight_g * green + weight_b * blue) / PIXEL_MAX


def quantize(image: Tensor, *, bits: int = 8) -> Tensor:
    """Round an image to the grid of an unsigned ``bits``-bit integer, keeping it float in [0, 1].

    ``floor(clip(x, 0, 1) * (2**bits - 1) + 0.5) / (2**bits - 1)``: halves round up (away from zero), as
    MATLAB's ``im2uint8`` does, rather than torch.round's half-to-even.

    Parameters
    ----------
    image : Tensor
        Float tensor of any shape, nominally in [0, 1]; values outside are clipped.
    bits : int, optional
        Bit depth of the grid, 1 to 16. Default 8 (levels k / 255).

    Returns
    -------
    Tensor
        Same shape and dtype as ``image``, values in {0, 1/(2**bits-1), ..., 1}.

    Raises
    ------
    ValueError
        If ``bits`` is not in 1..16.
    TypeError
        If ``image`` is not a floating-point tensor.
    """
    if not isinstance(bits, int) or not 1 <= bits <= 16:
        raise ValueError(f"bits must be an integer in 1..16, got {bits!r}")
    if not isinstance(image, Tensor) or not image.is_floating_point():
        raise TypeError("image must be a floating-point torch.Tensor")
    levels = float(2**bits - 1)
    return torch.floor(image.clamp(0.0, 1.0) * levels + 0.5) / levels


def shave(image: Tensor, border: int) -> Tensor:
    """Remove ``border`` pixels from each of the four borders of an image.

    Parameters
    ----------
    image : Tensor
        Tensor of shape (..., H, W) with at least 2 dimensions.
    border : int
        Pixels removed from the top, bottom, left and right; 0 returns the image unchanged.

    Returns
    -------
    Tensor
        A view of shape (..., H - 2 border, W - 2 border).

    Raises
    ------
    ValueError
        If ``border`` is negative or leaves no pixel (2 border >= H or W), or the image has < 2 dims.
    """
    if image.ndim < 2:
        raise ValueError(f"image must have at least 2 dimensions (..., H, W), got {tuple(image.shape)}")
    if not isinstance(border, int) or border < 0:
        raise ValueError(f"border must be a non-negative integer, got {border!r}")
    height, width = image.shape[-2:]
    if 2 * border >= min(height, width):
        raise ValueError(f"shave border {border} leaves no pixel of a {height}x{width} image")
    if border == 0:
        return image
    return image[..., border : height - border, border : width - border]


def _luma_of_uint8(image: Tensor) -> Tensor:
    """Y of MATLAB's ``rgb2ycbcr`` on a uint8 image: rounded to integer levels, returned in [0, 1].

    MATLAB returns uint8 for uint8 input, and the published numbers include that rounding (without it,
    Set5 x2 bicubic reads 33.67 dB instead of 33.64). ``255000 Y`` is an integer for 8-bit R, G, B, so
    the sum is formed exactly in float64 and exact ties such as (R, G, B) = (0, 204, 68) -> Y = 125.5
    round half up deterministically, instead of by floating-point luck.

    ``image`` is float64 (B, 1 or 3, H, W) already on the 8-bit grid; the result is float64 (B, 1, H, W).
    """
    levels = torch.round(image * PIXEL_MAX)
    weight_r, weight_g, weight_b = (round(1000 * weight) for weight in _Y_WEIGHTS)
    if image.shape[1] == 1:
        scaled = (weight_r + weight_g + weight_b) * levels
    else:
        scaled = weight_r * levels[:, 0:1] + weight_g * levels[:, 1:2] + weight_b * levels[:, 2:3]
    scale = 1000.0 * PIXEL_MAX
    luma_levels = torch.floor((scaled + _Y_OFFSET * scale + scale / 2) / scale)
    return luma_levels / PIXEL_MAX


def _prepare(
    prediction: Tensor, target: Tensor, *, border: int, channel: str, quantize_output: bool
) -> tuple[Tensor, Tensor]:
    """Apply the paper convention: quantize, select the channel, shave, scale to 0..255 in float64."""
    _check_pair(prediction, target)
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {CHANNELS}, got {channel!r}")
    # float64 first: the 8-bit rounding and the PSNR of near-identical images need the precision.
    prediction, target = prediction.double(), target.double()
    if quantize_output:
        prediction, target = quantize(prediction), quantize(target)
    if channel == "y" and quantize_output:
        prediction, target = _luma_of_uint8(prediction), _luma_of_uint8(target)
    elif channel == "y":
        prediction, target = rgb_to_y(prediction), rgb_to_y(target)
    return shave(prediction, border) * PIXEL_MAX, shave(target, border) * PIXEL_MAX


def psnr(
    prediction: Tensor,
    target: Tensor,
    *,
    shave: int = 0,
    channel: str = "y",
    quantize_output: bool = True,
) -> Tensor:
    """Peak signal-to-noise ratio per image, paper convention (see the module docstring).

    ``10 log10(255**2 / MSE)`` with the MSE over all measured pixels (and all 3 channels for
    ``channel="rgb"``, like ``skimage.metrics.peak_signal_noise_ratio``), in float64.

    Parameters
    ----------
    prediction, target : Tensor
        Float tensors of identical shape (B, C, H, W), C = 3 (RGB) or 1 (gray), values in [0, 1].
    shave : int, optional
        Pixels removed from each border before measuring; papers use the SR scale. Default 0.
    channel : {"y", "rgb"}, optional
        ``"y"`` (default): luma of MATLAB's ``rgb2ycbcr``; a gray image is used as R = G = B.
        ``"rgb"``: the channels as given (the single channel of a gray image).
    quantize_output : bool, optional
        Round both images to the 8-bit grid first, and for ``channel="y"`` their luma too, as MATLAB's
        ``rgb2ycbcr`` does on uint8 images (default True, as papers do with saved PNGs).
        If False, the values are measured as given, unclipped and unrounded.

    Returns
    -------
    Tensor
        Shape (B,), float64, in dB. ``inf`` (``float('inf')``) for an image identical to its target.

    Raises
    ------
    ValueError
        On a shape mismatch, an unknown ``channel``, or a ``shave`` that leaves no pixel.
    TypeError
        If an input is not a floating-point tensor.
    """
    measured, reference = _prepare(
        prediction, target, border=shave, channel=channel, quantize_output=quantize_output
    )
    mse = (measured - reference).square().mean(dim=(1, 2, 3))
    # Division by a zero MSE gives +inf, the conventional PSNR of identical images.
    return 10.0 * torch.log10(PIXEL_MAX**2 / mse)


def _gaussian_window(size: int, sigma: float, *, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Normalised 1-D Gaussian of ``size`` taps (odd), shape (size,); its outer product is fspecial's."""
    offsets = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    weights = torch.exp(-(offsets**2) / (2.0 * sigma**2))
    return weights / weights.sum()


def _filter_valid(images: Tensor, window: Tensor) -> Tensor:
    """Separable 'valid' Gaussian filtering of (N, K, H, W) -> (N, K, H - s + 1, W - s + 1)."""
    size = window.numel()
    groups = images.shape[1]
    vertical = window.view(1, 1, size, 1).expand(groups, 1, size, 1)
    horizontal = window.view(1, 1, 1, size).expand(groups, 1, 1, size)
    return F.conv2d(F.conv2d(images, vertical, groups=groups), horizontal, groups=groups)


def ssim(
    prediction: Tensor,
    target: Tensor,
    *,
    shave: int = 0,
    channel: str = "y",
    quantize_output: bool = True,
) -> Tensor:
    """Structural similarity (Wang et al. 2004) per image, paper convention (see the module docstring).

    Gaussian window 11 x 11 with sigma 1.5, K1 = 0.01, K2 = 0.03, data range 255, population
    (co)variances, SSIM map averaged over the 'valid' region where the window fits entirely, i.e.
    ``H - 10`` by ``W - 10`` after shaving. Matches scikit-image's ``structural_similarity(...,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)`` to ~1e-12;
    for ``channel="rgb"`` the per-channel values are averaged, as scikit-image does with ``channel_axis``.

    Parameters
    ----------
    prediction, target : Tensor
        Float tensors of identical shape (B, C, H, W), C = 3 (RGB) or 1 (gray), values in [0, 1].
    shave : int, optional
        Pixels removed from each border before measuring; papers use the SR scale. Default 0.
    channel : {"y", "rgb"}, optional
        ``"y"`` (default): luma of MATLAB's ``rgb2ycbcr``; ``"rgb"``: the mean over the channels as given.
    quantize_output : bool, optional
        Round both images (and for ``channel="y"`` their luma) to the 8-bit grid first (default True).

    Returns
    -------
    Tensor
        Shape (B,), float64, at most 1 (1 for identical images).

    Raises
    ------
    ValueError
        On a shape mismatch, an unknown ``channel``, or when fewer than 11 x 11 pixels remain after shaving.
    TypeError
        If an input is not a floating-point tensor.
    """
    measured, reference = _prepare(
        prediction, target, border=shave, channel=channel, quantize_output=quantize_output
    )
    height, width = measured.shape[-2:]
    if min(height, width) < _SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs at least {_SSIM_WINDOW}x{_SSIM_WINDOW} pixels after shaving, got {height}x{width}"
        )
    batch, channels = measured.shape[:2]
    window = _gaussian_window(_SSIM_WINDOW, _SSIM_SIGMA, dtype=measured.dtype, device=measured.device)
    # One grouped convolution filters x, y, x^2, y^2 and xy of every channel at once.
    x = measured.reshape(batch * channels, 1, height, width)
    y = reference.reshape(batch * channels, 1, height, width)
    moments = _filter_valid(torch.cat([x, y, x * x, y * y, x * y], dim=1), window)
    mean_x, mean_y, mean_xx, mean_yy, mean_xy = moments.unbind(dim=1)
    variance_x = mean_xx - mean_x**2
    variance_y = mean_yy - mean_y**2
    covariance = mean_xy - mean_x * mean_y
    c1 = (_SSIM_K1 * PIXEL_MAX) ** 2
    c2 = (_SSIM_K2 * PIXEL_MAX) ** 2
    ssim_map = ((2 * mean_x * mean_y + c1) * (2 * covariance + c2)) / (
        (mean_x**2 + mean_y**2 + c1) * (variance_x + variance_y + c2)
    )
    return ssim_map.reshape(batch, -1).mean(dim=1)


def _shifts_by_distance(max_shift: int) -> list[tuple[int, int]]:
    """All (dy, dx) in [-max_shift, max_shift]^2, nearest to (0, 0) first (so ties favour small shifts)."""
    span = range(-max_shift, max_shift + 1)
    return sorted(((dy, dx) for dy in span for dx in span), key=lambda s: (s[0] ** 2 + s[1] ** 2, s))


def _shifted_window(prediction: Tensor, border: int, dy: float, dx: float, *,
                    dtype: torch.dtype = torch.float64) -> Tensor:
    """``prediction`` sampled bilinearly at ``(r + dy, c + dx)`` for every target pixel ``(r, c)`` inside
    ``border``, as ``dtype``: ``(B, C, H - 2 border, W - 2 border)``. Needs ``|dy|, |dx| <= border``."""
    height, width = prediction.shape[-2:]
    top, left = math.floor(dy), math.floor(dx)
    fy, fx = dy - top, dx - left

    def crop(oy: int, ox: int) -> Tensor:
        return prediction[..., border + oy : height - border + oy, border + ox : width - border + ox].to(dtype)

    if not fx and not fy:  # an integer shift only copies pixels
        return crop(top, left)
    window = crop(top, left) * ((1 - fy) * (1 - fx))
    if fx:
        window = window + crop(top, left + 1) * ((1 - fy) * fx)
    if fy:
        window = window + crop(top + 1, left) * (fy * (1 - fx))
    if fx and fy:
        window = window + crop(top + 1, left + 1) * (fy * fx)
    return window


def align_shift(
    prediction: Tensor, target: Tensor, *, max_shift: int = 5, step: float = 1.0, border: int | None = None
) -> tuple[Tensor, Tensor]:
    """Align a restored image to its ground truth by the shift that fits best (Levin et al. 2009 protocol).

    Deblurring benchmarks made with a kernel whose centre convention differs from the method's leave the
    result shifted; the protocol measures it at the shift that fits best. Levin et al.'s
    ``comp_upto_shift`` tries shifts up to 5 px in quarter-pixel steps (bilinear interpolation) and
    shaves 15 px: ``max_shift=5, step=0.25, border=15``. Here the integer shifts are searched first, then
    the fractional ones of the ``step`` grid within 1 px of the best integer shift (the error is smooth in
    the shift, so this finds the grid's optimum without trying all 41 x 41 shifts). Every candidate
    compares the same target pixels, so maximising PSNR is minimising the MSE (float64, all channels,
    values as given). Each image of the batch gets its own shift; among equally good shifts the one
    nearest to (0, 0) wins.

    Parameters
    ----------
    prediction, target : Tensor
        Float tensors of identical shape (B, C, H, W), C = 3 or 1, values in [0, 1].
    max_shift : int, optional
        Largest shift tried along each axis, in pixels; 0 compares the images as they are. Default 5.
    step : float, optional
        Shift resolution in pixels: 1 (integer shifts, the default) or ``1/n`` (e.g. 0.25).
    border : int, optional
        Pixels shaved from every side of the target; at least ``max_shift`` (the default).

    Returns
    -------
    aligned_prediction, cropped_target : tuple of Tensor
        Both of shape (B, C, H - 2 border, W - 2 border); the target keeps its dtype, the prediction is
        float64 where interpolated. ``aligned_prediction[b]`` is ``prediction[b]`` sampled at
        ``(r + dy, c + dx)`` for the best (dy, dx) of image b, i.e. a prediction equal to the target
        rolled by (dy, dx) is undone.

    Raises
    ------
    ValueError
        On a shape mismatch, a negative ``max_shift``, a ``step`` that is not ``1/n``, a ``border`` below
        ``max_shift``, or one that leaves no pixel.
    TypeError
        If an input is not a floating-point tensor.
    """
    _check_pair(prediction, target)
    if not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"max_shift must be a non-negative integer, got {max_shift!r}")
    if not 0 < step <= 1 or abs(1 / step - round(1 / step)) > 1e-9:
        raise ValueError(f"step must be 1/n for a whole n (1, 0.5, 0.25, ...), got {step!r}")
    border = max_shift if border is None else border
    if not isinstance(border, int) or border < max_shift:
        raise ValueError(f"border must be an integer of at least max_shift ({max_shift}), got {border!r}")
    cropped_target = shave(target, border)
    # The search takes differences in the inputs' precision and sums them in float64 (several times faster
    # than converting every window to float64; the quarter-pixel weights are exact in binary).
    common = torch.promote_types(prediction.dtype, target.dtype)
    reference = cropped_target.to(common)

    def mse(images: slice, shift: tuple[float, float]) -> Tensor:
        window = _shifted_window(prediction[images], border, *shift, dtype=common)
        return (window - reference[images]).square().sum(dim=(1, 2, 3), dtype=torch.float64) / reference[0].numel()

    best_error = torch.full((target.shape[0],), math.inf, dtype=torch.float64, device=target.device)
    best_shift: list[tuple[float, float]] = [(0, 0)] * target.shape[0]
    for shift in _shifts_by_distance(max_shift):
        error = mse(slice(None), shift)
        for index in torch.nonzero(error < best_error).flatten().tolist():
            best_shift[index] = shift
        best_error = torch.minimum(best_error, error)
    if step < 1:
        for index, (dy, dx) in enumerate(best_shift):
            for shift in _fractional_neighbours(dy, dx, step, max_shift):
                error = float(mse(slice(index, index + 1), shift)[0])
                if error < float(best_error[index]):
                    best_shift[index], best_error[index] = shift, error
    _logger.debug("align_shift: best (dy, dx) per image %s", best_shift)
    aligned = torch.cat([_shifted_window(prediction[index : index + 1], border, dy, dx)
                         for index, (dy, dx) in enumerate(best_shift)])
    if step == 1:
        aligned = aligned.to(prediction.dtype)  # integer shifts only copy pixels
    return aligned, cropped_target


def _fractional_neighbours(dy: float, dx: float, step: float, max_shift: int) -> list[tuple[float, float]]:
    """The ``step`` grid within 1 px of (dy, dx), inside [-max_shift, max_shift]^2, nearest to (0, 0) first."""
    count = round(1 / step)
    offsets = [k * step for k in range(-count + 1, count)]
    grid = {(dy + oy, dx + ox) for oy in offsets for ox in offsets
            if abs(dy + oy) <= max_shift and abs(dx + ox) <= max_shift}
    return sorted(grid, key=lambda s: (s[0] ** 2 + s[1] ** 2, s))
