"""Image resizing that reproduces MATLAB's ``imresize``: the resampler of the super-resolution literature.

Low-resolution test and training images in SR papers are made with MATLAB's ``imresize(hr, 1/scale)``:
bicubic (Keys, a = -0.5) with antialiasing (the kernel is stretched by ``1/scale`` when shrinking) and
symmetric (half-sample) border handling. :func:`imresize` implements exactly that, separably, as a gather of
``P`` taps per output pixel — memory ``O(P * output)``, no dense ``(out, in)`` matrix — so it also serves
as the ``bicubic`` and ``lanczos`` upscalers.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch

Kernel = Literal["cubic", "lanczos3"]

__all__ = ["imresize", "output_size", "cubic", "lanczos3"]


def cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with ``a = -0.5`` (MATLAB's ``cubic``); support ``[-2, 2]``."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    inner = 1.5 * ax3 - 2.5 * ax2 + 1.0
    outer = -0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0
    return torch.where(ax <= 1, inner, torch.where(ax <= 2, outer, torch.zeros_like(ax)))


def lanczos3(x: torch.Tensor) -> torch.Tensor:
    """Lanczos kernel with three lobes, ``sinc(x) sinc(x / 3)``; support ``[-3, 3]``."""
    return torch.where(x.abs() < 3, torch.sinc(x) * torch.sinc(x / 3), torch.zeros_like(x))


_KERNELS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], float]] = {
    "cubic": (cubic, 4.0),
    "lanczos3": (lanczos3, 6.0),
}


def output_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """MATLAB's output size for a scale factor: ``ceil(size * scale)`` per axis."""
    # The small epsilon keeps e.g. 255 * (1/3) * 3 from rounding up to 256 through float error.
    return tuple(int(math.ceil(s * scale - 1e-9)) for s in size)  # type: ignore[return-value]


def _contributions(
    in_length: int, out_length: int, scale: float, kernel: Kernel, antialias: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tap indices and weights of one axis, as MATLAB's ``contributions``.

    Returns
    -------
    indices : (out_length, P) int64 tensor of input positions (0-based, symmetric-padded into range).
    weights : (out_length, P) float64 tensor, each row summing to 1.
    """
    function, width = _KERNELS[kernel]
    stretch = scale < 1 and antialias
    if stretch:
        width = width / scale
    u = torch.arange(1, out_length + 1, dtype=torch.float64)
    centre = u / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinate of each output pixel
    left = torch.floor(centre - width / 2)
    taps = int(math.ceil(width)) + 2
    indices = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    distance = centre[:, None] - indices
    weights = scale * function(distance * scale) if stretch else function(distance)
    weights = weights / weights.sum(dim=1, keepdim=True)
    # Symmetric padding: index sequence 1..n, n..1, repeated (MATLAB's aux array).
    mirror = torch.cat([torch.arange(in_length), torch.arange(in_length - 1, -1, -1)])
    indices = mirror[torch.remainder(indices.long() - 1, 2 * in_length)]
    keep = weights.abs().sum(dim=0) > 0
    return indices[:, keep], weights[:, keep]


def _resize_axis(image: torch.Tensor, axis: int, out_length: int, scale: float, kernel: Kernel, antialias: bool) -> torch.Tensor:
    in_length = image.shape[axis]
    indices, weights = _contributions(in_length, out_length, scale, kernel, antialias)
    taps = indices.shape[1]
    gathered = image.index_select(axis, indices.reshape(-1).to(image.device))
    shape = list(image.shape)
    shape[axis : axis + 1] = [out_length, taps]
    gathered = gathered.reshape(shape)
    weight_shape = [1] * len(shape)
    weight_shape[axis], weight_shape[axis + 1] = out_length, taps
    weights = weights.to(device=image.device, dtype=image.dtype).reshape(weight_shape)
    return (gathered * weights).sum(dim=axis + 1)


def imresize(
    image: torch.Tensor,
    *,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    kernel: Kernel = "cubic",
    antialias: bool = True,
) -> torch.Tensor:
    """Resize like MATLAB's ``imresize`` (bicubic by default, antialiased when shrinking).

    Parameters
    ----------
    image : torch.Tensor
        ``(B, C, H, W)`` float tensor; any range (no clamping is done — clamp or quantise afterwards, as
        MATLAB does for integer images).
    scale : float, optional
        Scale factor for both axes (``0.25`` shrinks 4x). The output size is ``ceil(H * scale)``.
    size : (int, int), optional
        Output ``(height, width)``; then each axis' scale is ``out / in``. Give exactly one of scale, size.
    kernel : {"cubic", "lanczos3"}
        Keys cubic (a = -0.5, MATLAB's default) or Lanczos-3.
    antialias : bool
        Stretch the kernel by ``1 / scale`` when shrinking, as MATLAB does.

    Returns
    -------
    torch.Tensor
        ``(B, C, H_out, W_out)``, same dtype and device.
    """
    if image.ndim != 4:
        raise ValueError(f"imresize expects a (B, C, H, W) tensor, got shape {tuple(image.shape)}")
    if (scale is None) == (size is None):
        raise ValueError("imresize needs exactly one of scale= or size=")
    if kernel not in _KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; expected one of {sorted(_KERNELS)}")
    height, width = image.shape[-2:]
    if scale is not None:
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        scales = (float(scale), float(scale))
        out_size = output_size((height, width), scale)
    else:
        out_size = (int(size[0]), int(size[1]))  # type: ignore[index]
        if min(out_size) < 1:
            raise ValueError(f"output size must be positive, got {out_size}")
        scales = (out_size[0] / height, out_size[1] / width)
    # MATLAB resizes along the axis with the smaller scale first (less work when shrinking).
    order = (0, 1) if scales[0] <= scales[1] else (1, 0)
    out = image
    for axis in order:
        if out.shape[2 + axis] == out_size[axis] and scales[axis] == 1:
            continue
        out = _resize_axis(out, 2 + axis, out_size[axis], scales[axis], kernel, antialias)
    return out
