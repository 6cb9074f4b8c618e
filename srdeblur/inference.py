"""``upscale`` and ``deblur``: every restoration method behind one call each.

Inputs and outputs are ``(B, C, H, W)`` float32 in [0, 1] with ``C`` = 1 or 3; outputs are clamped to
[0, 1] and keep the input's channel count (grayscale images go through the RGB network replicated and come
back as the mean of its three outputs).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from srdeblur import classical
from srdeblur.nets import LapSR, SRNDeblur
from srdeblur.resize import imresize

__all__ = ["UPSCALE_METHODS", "DEBLUR_METHODS", "SCALES", "upscale", "deblur", "upscale_with_net", "deblur_with_net"]

UPSCALE_METHODS = ("net", "bicubic", "lanczos")
DEBLUR_METHODS = ("net", "wiener", "rl")
SCALES = (2, 3, 4, 8)
# LR pixels of reflect padding around the network's input, cropped from its output: borders then see
# image-like context instead of the zeros of convolution padding.
NET_BORDER = 8


def _check_image(image: torch.Tensor) -> None:
    if image.ndim != 4 or image.shape[1] not in (1, 3):
        raise ValueError(f"expected a (B, 1|3, H, W) image tensor, got shape {tuple(image.shape)}")


def _as_rgb(image: torch.Tensor) -> torch.Tensor:
    return image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image


def _like_input(output: torch.Tensor, channels: int) -> torch.Tensor:
    return output.mean(dim=1, keepdim=True) if channels == 1 else output


@torch.inference_mode()
def upscale_with_net(image: torch.Tensor, model: LapSR, *, scale: int) -> torch.Tensor:
    """Network super-resolution of ``(B, C, H, W)`` -> ``(B, C, scale H, scale W)``, not clamped.

    x2, x4, x8 run the shared stage 1, 2, 3 times; x3 runs x4 and shrinks by 3/4 with MATLAB-style bicubic.
    """
    pyramid_scale = 4 if scale == 3 else scale
    levels = LapSR.levels_for_scale(pyramid_scale)
    height, width = image.shape[-2:]
    border = min(NET_BORDER, height - 1, width - 1)
    rgb = _as_rgb(image)
    if border > 0:
        rgb = F.pad(rgb, (border,) * 4, mode="reflect")
    output = model(rgb.contiguous(memory_format=torch.channels_last), levels)[-1]
    crop = border * pyramid_scale
    output = output[..., crop : crop + height * pyramid_scale, crop : crop + width * pyramid_scale]
    if scale == 3:
        output = imresize(output, size=(height * 3, width * 3))
    return _like_input(output.contiguous(), image.shape[1])


def upscale(
    image: torch.Tensor,
    *,
    scale: int,
    method: Literal["net", "bicubic", "lanczos"] = "net",
    model: nn.Module | None = None,
) -> torch.Tensor:
    """Upscale ``(B, C, H, W)`` in [0, 1] by an integer ``scale`` in {2, 3, 4, 8}.

    Parameters
    ----------
    method : "net" (the shipped LapSR network, or ``model``), "bicubic" (MATLAB-compatible) or "lanczos"
        (Lanczos-3).
    model : a loaded network for ``method="net"``; default: the shipped ``lapsr`` weights.

    Returns
    -------
    ``(B, C, scale H, scale W)`` float32 in [0, 1].
    """
    _check_image(image)
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale}")
    if method == "bicubic":
        output = imresize(image, scale=scale, kernel="cubic")
    elif method == "lanczos":
        output = imresize(image, scale=scale, kernel="lanczos3")
    elif method == "net":
        if model is None:
            from srdeblur.weights import load_model

            model = load_model("lapsr")
        output = upscale_with_net(image, model, scale=scale)  # type: ignore[arg-type]
    else:
        raise ValueError(f"unknown upscale method {method!r}; expected one of {UPSCALE_METHODS}")
    return output.clamp(0, 1)


@torch.inference_mode()
def deblur_with_net(image: torch.Tensor, model: SRNDeblur) -> torch.Tensor:
    """Blind deblurring of ``(B, C, H, W)`` -> same shape, not clamped.

    The input is reflect-padded by ``NET_BORDER`` px plus up to the network's size multiple, then cropped.
    """
    height, width = image.shape[-2:]
    multiple = model.multiple
    border = min(NET_BORDER * 2, height - 1, width - 1)
    extra_h = (-(height + 2 * border)) % multiple
    extra_w = (-(width + 2 * border)) % multiple
    rgb = F.pad(_as_rgb(image), (border,) * 4, mode="reflect") if border > 0 else _as_rgb(image)
    rgb = F.pad(rgb, (0, extra_w, 0, extra_h), mode="replicate")
    output = model(rgb.contiguous(memory_format=torch.channels_last))[-1]
    output = output[..., border : border + height, border : border + width]
    return _like_input(output.contiguous(), image.shape[1])


def deblur(
    image: torch.Tensor,
    *,
    method: Literal["net", "wiener", "rl"] = "wiener",
    psf: torch.Tensor | None = None,
    iterations: int = 30,
    balance: float = 0.005,
    tv_weight: float = 0.0,
    model: nn.Module | None = None,
) -> torch.Tensor:
    """Deblur ``(B, C, H, W)`` in [0, 1]; ``wiener`` and ``rl`` need the ``psf`` ``(kh, kw)`` (sum 1).

    ``iterations`` and ``tv_weight`` apply to Richardson-Lucy, ``balance`` to Wiener.
    """
    _check_image(image)
    if method in ("wiener", "rl"):
        if psf is None:
            raise ValueError(f"--method {method} needs a PSF (e.g. --psf gaussian:1.5)")
        if method == "wiener":
            return classical.wiener(image, psf, balance=balance).clamp(0, 1)
        return classical.richardson_lucy(image, psf, iterations=iterations, tv_weight=tv_weight).clamp(0, 1)
    if method == "net":
        if model is None:
            from srdeblur.weights import load_model

            model = load_model("srndeblur")
        return deblur_with_net(image, model).clamp(0, 1)  # type: ignore[arg-type]
    raise ValueError(f"unknown deblur method {method!r}; expected one of {DEBLUR_METHODS}")
