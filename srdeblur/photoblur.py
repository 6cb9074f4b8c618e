"""Blurs that photos bring besides one uniform PSF: shake that changes across the frame, camera roll, a moving
object over a still background. Used to train the deblurring default's blur gate and to benchmark it.

Each is a pure function of a ``(B, C, H, W)`` float image in [0, 1] and an explicit ``torch.Generator``, and
returns the same shape (reflect borders, no noise: add it after). The models are the standard layered ones:
a blur that varies smoothly is a per-pixel convex blend of a few uniform blurs (efficient filter flow, Hirsch
et al. 2010); a moving object is ``blur(object * matte) + background * (1 - blur(matte))``.
"""

from __future__ import annotations

import math

import kornia
import torch

from srdeblur.classical import blur
from srdeblur.kernels import random_motion_psf

__all__ = ["varying_blur", "rotation_blur", "object_motion_blur"]


def _check(sharp: torch.Tensor) -> None:
    if sharp.ndim != 4 or not sharp.is_floating_point():
        raise ValueError(f"expected a floating (B, C, H, W) tensor, got {tuple(sharp.shape)} {sharp.dtype}")


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def varying_blur(sharp: torch.Tensor, *, generator: torch.Generator, size: int = 31) -> torch.Tensor:
    """A camera shake that changes across the frame: 2 to 4 random shakes (``size`` px), each anchored at a
    random point, blended per pixel with Gaussian weights (width: half the diagonal) normalised to sum 1 —
    the efficient-filter-flow model of a blur that varies smoothly (rotation, rolling shutter, depth)."""
    _check(sharp)
    height, width = sharp.shape[-2:]
    count = 2 + int(torch.randint(3, (), generator=generator))
    rows = torch.arange(height, dtype=torch.float32)[:, None]
    cols = torch.arange(width, dtype=torch.float32)[None, :]
    spread = 0.5 * math.hypot(height, width)
    weights, blurred = [], []
    for _ in range(count):
        kernel = random_motion_psf(size, generator=generator)
        top, left = (torch.rand(2, generator=generator) * torch.tensor([height, width])).tolist()
        weights.append(torch.exp(-((rows - top) ** 2 + (cols - left) ** 2) / (2 * spread**2)))
        blurred.append(blur(sharp, kernel))
    total = sum(weights)
    return sum(w / total * b for w, b in zip(weights, blurred))


def rotation_blur(sharp: torch.Tensor, *, generator: torch.Generator, max_reach: float = 12.0) -> torch.Tensor:
    """Camera roll during the exposure: the mean of 16 copies rotated through a random angle about a random
    centre (which may lie outside the frame), so pixels far from it move up to ``max_reach`` px and pixels near
    it stay sharp. Bilinear rotations by kornia; the angle is chosen so the farthest corner moves 30-100 % of
    ``max_reach``."""
    _check(sharp)
    height, width = sharp.shape[-2:]
    centre_y = _uniform(-0.25, 1.25, generator) * height
    centre_x = _uniform(-0.25, 1.25, generator) * width
    farthest = max(math.hypot(y - centre_y, x - centre_x) for y in (0, height) for x in (0, width))
    reach = _uniform(0.3, 1.0, generator) * max_reach
    sweep = math.degrees(reach / max(farthest, 1.0))
    angles = torch.linspace(-sweep / 2, sweep / 2, 16, dtype=sharp.dtype)
    centre = torch.tensor([[centre_x, centre_y]], dtype=sharp.dtype)
    copies = [kornia.geometry.transform.rotate(sharp, angle.expand(sharp.shape[0]), center=centre.expand(sharp.shape[0], 2),
                                               padding_mode="reflection") for angle in angles]
    return torch.stack(copies).mean(dim=0)


def object_motion_blur(sharp: torch.Tensor, *, generator: torch.Generator, size: int = 31) -> torch.Tensor:
    """A moving object over a still background: a random soft-edged ellipse (a quarter to two thirds of the
    shorter side across) blurred by its own random shake of ``size`` px, composited in the layered model."""
    _check(sharp)
    height, width = sharp.shape[-2:]
    short = min(height, width)
    centre_y, centre_x = _uniform(0.2, 0.8, generator) * height, _uniform(0.2, 0.8, generator) * width
    radius_y, radius_x = (_uniform(0.125, 0.33, generator) * short for _ in range(2))
    rows = torch.arange(height, dtype=sharp.dtype)[:, None]
    cols = torch.arange(width, dtype=sharp.dtype)[None, :]
    distance = torch.sqrt(((rows - centre_y) / radius_y) ** 2 + ((cols - centre_x) / radius_x) ** 2)
    matte = (1.5 - distance).clamp(0, 0.5).mul(2).expand_as(sharp[:, :1])  # 1 inside, soft 0..1 rim, 0 outside
    kernel = random_motion_psf(size, generator=generator)
    moving = blur(sharp * matte, kernel)
    coverage = blur(matte.contiguous(), kernel)
    return (moving + sharp * (1 - coverage)).clamp(0, 1)
