"""Degradations: how low-resolution and blurred inputs are made from ground truth.

Every random draw goes through an explicit ``torch.Generator`` so evaluation and training data are
bit-for-bit repeatable.
"""

from __future__ import annotations

import torch

from srdeblur.resize import imresize

__all__ = ["mod_crop", "quantize_8bit", "bicubic_downscale", "add_gaussian_noise"]


def mod_crop(image: torch.Tensor, multiple: int) -> torch.Tensor:
    """Crop ``(B, C, H, W)`` at the bottom/right so H and W are multiples of ``multiple`` (SR convention)."""
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    height, width = image.shape[-2:]
    height, width = height - height % multiple, width - width % multiple
    if height == 0 or width == 0:
        raise ValueError(f"image of size {tuple(image.shape[-2:])} is smaller than the scale {multiple}")
    return image[..., :height, :width]


def quantize_8bit(image: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to the 8-bit grid (k / 255), as saving to an 8-bit file would."""
    return torch.round(image.clamp(0, 1) * 255) / 255


def bicubic_downscale(hr: torch.Tensor, scale: int, *, quantize: bool = True) -> torch.Tensor:
    """The SR literature's low-resolution image: MATLAB ``imresize(hr, 1/scale)`` (antialiased bicubic).

    Parameters
    ----------
    hr : (B, C, H, W) float tensor in [0, 1]; H and W must be multiples of ``scale`` (see :func:`mod_crop`).
    scale : integer downscaling factor.
    quantize : round the result to 8 bits, as the published LR images are.

    Returns
    -------
    (B, C, H / scale, W / scale) tensor in [0, 1].
    """
    height, width = hr.shape[-2:]
    if height % scale or width % scale:
        raise ValueError(f"HR size {(height, width)} is not a multiple of the scale {scale}; mod_crop first")
    lr = imresize(hr, size=(height // scale, width // scale))
    return quantize_8bit(lr) if quantize else lr.clamp(0, 1)


def add_gaussian_noise(
    image: torch.Tensor, sigma: float | torch.Tensor, *, generator: torch.Generator
) -> torch.Tensor:
    """Add white Gaussian noise of standard deviation ``sigma`` (on the [0, 1] scale; 0.01 = 2.55/255).

    ``sigma`` may be a float or a ``(B,)`` tensor (one level per image). The result is not clamped.
    """
    noise = torch.randn(image.shape, generator=generator, dtype=image.dtype, device=image.device)
    sigma = torch.as_tensor(sigma, dtype=image.dtype, device=image.device)
    if sigma.ndim == 1:
        sigma = sigma.view(-1, *([1] * (image.ndim - 1)))
    return image + sigma * noise
