"""What the networks are trained and validated on: patches of the training images, degraded per task.

Every function draws through an explicit ``torch.Generator``; :func:`srdeblur.train.train` seeds one per
step from ``(seed, step, rank)``, so a resumed run sees exactly the batches an uninterrupted one would.
Batches are ``(inputs, targets)``: float32 ``(B, 3, H, W)`` tensors in [0, 1] (the known-PSF task adds the
``(B, S, S)`` PSFs and ``(B,)`` noise levels to its inputs; the gate's targets are ``(B,)`` labels).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import cv2
import torch
from torch.nn import functional as F

from srdeblur.classical import blur
from srdeblur.degrade import (PRESETS, add_gaussian_noise, anisotropic_gaussian_kernel, bicubic_downscale,
                              degradation_generator, estimate_noise, jpeg_compress, mod_crop, quantize_8bit,
                              realistic_downscale)
from srdeblur.io import list_images, read_image
from srdeblur.kernels import disk_psf, gaussian_psf, motion_psf, random_motion_psf
from srdeblur.metrics import psnr
from srdeblur.nets import DegradationGate, LapSR, SRNDeblur, USRDeconv

if TYPE_CHECKING:
    from srdeblur.train import TrainConfig

__all__ = [
    "load_training_images", "random_patches", "realistic_lr", "make_sr_batch", "make_gate_batch", "kernel_size_at",
    "random_blur_kernel", "make_deblur_batch", "random_nonblind_psf", "perturb_psf", "make_nonblind_batch",
    "validation_kernels", "validate_sr", "validate_deblur", "validate_nonblind", "validate_gate",
    "TRAINING_DEGRADATIONS", "PHOTO_BLURS", "DEBLURRABLE", "MIN_BLUR_SPREAD", "degrade_photo", "make_blurgate_batch",
    "validate_blurgate",
]


# ----------------------------------------------------------------------------- data


def load_training_images(folders: tuple[str, ...], *, val_fraction: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Read every image under ``folders`` as ``(3, H, W)`` uint8 tensors (compact in memory).

    Returns (train, validation): every ``val_fraction``-th image, in sorted path order, is held out.
    """
    paths = sorted(p for folder in folders for p in list_images(folder, recursive=True))
    if not paths:
        raise ValueError(f"no training images found under {', '.join(folders)}")
    train_images, val_images = [], []
    for index, path in enumerate(paths):
        pixels = read_image(path).pixels[0]
        if pixels.shape[0] == 1:
            pixels = pixels.expand(3, -1, -1)
        as_uint8 = torch.round(pixels * 255).to(torch.uint8)
        (val_images if index % val_fraction == val_fraction - 1 else train_images).append(as_uint8)
    return train_images, val_images


def random_patches(
    images: list[torch.Tensor], count: int, size: int, *, generator: torch.Generator
) -> torch.Tensor:
    """``count`` random ``size``-square crops with random flips/90-degree rotations -> (count, 3, size, size) in [0, 1]."""
    crops = []
    eligible = [img for img in images if min(img.shape[-2:]) >= size]
    if not eligible:
        raise ValueError(f"no training image is at least {size} px on its short side")
    for _ in range(count):
        image = eligible[int(torch.randint(len(eligible), (1,), generator=generator))]
        top = int(torch.randint(image.shape[1] - size + 1, (1,), generator=generator))
        left = int(torch.randint(image.shape[2] - size + 1, (1,), generator=generator))
        crop = image[:, top : top + size, left : left + size]
        flips = torch.randint(2, (3,), generator=generator).tolist()
        if flips[0]:
            crop = crop.flip(-1)
        if flips[1]:
            crop = crop.flip(-2)
        if flips[2]:
            crop = crop.transpose(-1, -2)
        crops.append(crop)
    return torch.stack(crops).float() / 255


# Training draws wider than the evaluation presets: stages also run in BSRGAN's shuffled order.
TRAINING_DEGRADATIONS = {name: replace(preset, shuffle_probability=0.3) for name, preset in PRESETS.items()}


def realistic_lr(hr: torch.Tensor, scale: int, clean_fraction: float, *, generator: torch.Generator,
                 noisy_fraction: float = 0.0) -> torch.Tensor:
    """Per patch of ``hr`` (B, 3, H, W): clean bicubic LR with probability ``clean_fraction``, else a mild (35 %)
    or strong (65 %) realistic degradation; (B, 3, H / scale, W / scale) on the 8-bit grid.

    ``noisy_fraction`` of the degraded patches are instead bicubic LR plus white Gaussian noise of sigma
    1-15 / 255 and nothing else (a noisy PNG: a sensor's noise, no JPEG, which the two-round presets rarely
    leave). At 0 no extra number is drawn, so older runs' batches stay what they were.
    """
    lrs = []
    for patch in hr.split(1):
        draw = float(torch.rand((), generator=generator))
        if draw < clean_fraction:
            lrs.append(bicubic_downscale(patch, scale))
        elif noisy_fraction > 0 and float(torch.rand((), generator=generator)) < noisy_fraction:
            sigma = (1 + 14 * float(torch.rand((), generator=generator))) / 255
            noisy = add_gaussian_noise(bicubic_downscale(patch, scale, quantize=False), sigma, generator=generator)
            lrs.append(quantize_8bit(noisy))
        else:
            preset = "mild" if draw < clean_fraction + 0.35 * (1 - clean_fraction) else "strong"
            lrs.append(realistic_downscale(patch, scale, TRAINING_DEGRADATIONS[preset], generator=generator))
    return torch.cat(lrs)


def make_sr_batch(
    images: list[torch.Tensor], config: TrainConfig, *, generator: torch.Generator
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One SR training batch: LR input and the target at every pyramid level.

    Returns ``lr`` (B, 3, h, w) 8-bit-quantised MATLAB-bicubic downscale (or :func:`realistic_lr`), and targets
    ``[(B, 3, 2h, 2w), ..., (B, 3, H, W)]`` (the HR patch downscaled to each level).
    """
    probabilities = torch.tensor(config.scale_probabilities, dtype=torch.float64)
    levels = int(torch.multinomial(probabilities, 1, generator=generator)) + 1
    scale = 2**levels
    size = config.patch if levels < 3 else (config.patch * 4 // 3) // 8 * 8
    hr = random_patches(images, config.batch, size, generator=generator)
    if config.degradation == "realistic":
        lr = realistic_lr(hr, scale, config.clean_fraction, generator=generator, noisy_fraction=config.noisy_fraction)
    else:
        lr = bicubic_downscale(hr, scale)
    targets = [bicubic_downscale(hr, 2 ** (levels - level), quantize=False) if level < levels else hr
               for level in range(1, levels + 1)]
    return lr, targets


def make_gate_batch(
    images: list[torch.Tensor], config: TrainConfig, *, generator: torch.Generator
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """LR patches at x2 or x4 (B, 3, h, w), half clean bicubic (label 0), half :func:`realistic_lr` with no
    clean share (label 1), and the labels ``[(B,)]``."""
    scale = 2 if float(torch.rand((), generator=generator)) < 0.5 else 4
    hr = random_patches(images, config.batch, config.patch, generator=generator)
    labels = (torch.rand(config.batch, generator=generator) < 0.5).float()
    degraded = realistic_lr(hr, scale, 0.0, generator=generator)
    lr = torch.where(labels.view(-1, 1, 1, 1) > 0, degraded, bicubic_downscale(hr, scale))
    return lr, [labels]


def kernel_size_at(step: int, config: TrainConfig) -> int:
    """Curriculum: the largest kernel side at ``step`` (odd, from 7 to ``max_kernel``; ``max_kernel`` throughout
    if ``config.curriculum`` is 0)."""
    if config.curriculum <= 0:
        return config.max_kernel
    progress = min(1.0, step / max(1.0, config.curriculum * config.total_steps))
    size = 7 + progress * (config.max_kernel - 7)
    return int(size) // 2 * 2 + 1


def random_blur_kernel(size: int, *, generator: torch.Generator) -> torch.Tensor:
    """A training blur no larger than ``size``: camera shake (70%), defocus disk (15%) or Gaussian (15%)."""
    kind, amount = torch.rand(2, generator=generator).tolist()
    if kind < 0.7:
        return random_motion_psf(size, generator=generator)
    if kind < 0.85:
        return disk_psf(1.0 + amount * (size // 2 - 1.5))
    return gaussian_psf(0.5 + amount * (size / 6 - 0.5), size=size)


def make_deblur_batch(
    images: list[torch.Tensor], config: TrainConfig, *, step: int, generator: torch.Generator
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One deblurring batch: blurred, noisy, 8-bit input and the sharp target at every pyramid scale.

    Each sharp patch is cut with a margin, convolved with its own random kernel (one grouped convolution
    for the batch, 'valid' so no border is invented) and cropped to ``patch``. Targets are the sharp patch
    average-pooled like the network's input pyramid: ``[(B,3,P/4,P/4), (B,3,P/2,P/2), (B,3,P,P)]``.
    """
    size = kernel_size_at(step, config)
    margin = config.max_kernel // 2
    sharp = random_patches(images, config.batch, config.patch + 2 * margin, generator=generator)
    kernels = torch.zeros(config.batch, config.max_kernel, config.max_kernel)
    for index in range(config.batch):
        kernel = random_blur_kernel(size, generator=generator)
        kh, kw = kernel.shape
        top, left = (config.max_kernel - kh) // 2, (config.max_kernel - kw) // 2
        kernels[index, top : top + kh, left : left + kw] = kernel.flip(0, 1)  # conv2d correlates
    weight = kernels.repeat_interleave(3, dim=0)[:, None]
    blurred = F.conv2d(sharp.reshape(1, -1, *sharp.shape[-2:]), weight, groups=3 * config.batch)
    blurred = blurred.reshape(config.batch, 3, config.patch, config.patch)
    sigma = torch.rand(config.batch, generator=generator) * config.max_noise
    blurred = quantize_8bit(add_gaussian_noise(blurred, sigma, generator=generator))
    target = sharp[..., margin : margin + config.patch, margin : margin + config.patch]
    targets = [target]
    for _ in range(config.deblur.scales - 1):
        targets.insert(0, F.avg_pool2d(targets[0], 2))
    return blurred, targets


def random_nonblind_psf(size: int, *, generator: torch.Generator) -> torch.Tensor:
    """A known-PSF training blur no larger than ``size`` (odd), from every family ``--psf`` parses and more:
    camera shake (35 %), anisotropic Gaussian (20 %), motion line (15 %), defocus disk (15 %), Gaussian (15 %)."""
    kind, a, b, c = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
    side = 2 * int(torch.randint(3, size // 2 + 1, (), generator=generator)) + 1 if size > 7 else size
    half = side // 2
    if kind < 0.35:
        return random_motion_psf(side, generator=generator)
    if kind < 0.55:
        sigmas = (0.4 + a * (half / 2.5), 0.4 + b * (half / 2.5))
        return torch.from_numpy(anisotropic_gaussian_kernel(side, *sigmas, c * math.pi)).float()
    if kind < 0.70:
        psf = motion_psf(2 + a * (side - 2), 360 * b)
    elif kind < 0.85:
        psf = disk_psf(0.5 + a * (half - 0.5))
    else:
        psf = gaussian_psf(0.4 + a * (half / 2.5), size=side)
    return psf[: size, : size] if psf.shape[0] > size else psf


def perturb_psf(psf: torch.Tensor, *, generator: torch.Generator, amount: float = 0.1) -> torch.Tensor:
    """``psf`` scaled by up to ``amount`` (relative) and rotated by up to ``amount`` x 90 degrees about its
    centre (OpenCV affine warp, bilinear), renormalised: the slightly wrong PSF users measure."""
    scale_draw, angle_draw = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
    scale = 1 + amount * (2 * scale_draw - 1)
    angle = 90 * amount * (2 * angle_draw - 1)
    size = psf.shape[-1]
    matrix = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), angle, scale)
    warped = cv2.warpAffine(psf.double().numpy(), matrix, (size, size), flags=cv2.INTER_LINEAR)
    warped = torch.from_numpy(warped).clamp_min(0)
    return (warped / warped.sum()).float() if warped.sum() > 0 else psf


def _centred(psf: torch.Tensor, size: int) -> torch.Tensor:
    canvas = torch.zeros(size, size)
    kh, kw = psf.shape
    top, left = (size - kh) // 2, (size - kw) // 2
    canvas[top : top + kh, left : left + kw] = psf
    return canvas


def _valid_blur(sharp: torch.Tensor, psf: torch.Tensor) -> torch.Tensor:
    """(C, H, W) convolved with an odd (k, k) PSF, 'valid' part (C, H - k + 1, W - k + 1): no border invented."""
    return F.conv2d(sharp[:, None], psf.flip(0, 1)[None, None].to(sharp.dtype))[:, 0]


def make_nonblind_batch(
    images: list[torch.Tensor], config: TrainConfig, *, step: int, generator: torch.Generator
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], list[torch.Tensor]]:
    """One known-PSF batch: ((blurred (B,3,P,P), psfs (B,S,S), sigma (B,)), [sharp (B,3,P,P)]).

    One odd PSF side ``S`` (<= the curriculum's, small ones more often) per batch, patches of at least ``2 S``;
    each patch has its own PSF of any family, blurred
    'valid' from a sharp crop with margins, Gaussian noise 0-5 % (half the batches 0-2 %), 8-bit quantised.
    The network is told the noise level the way inference knows it: half the time the true sigma (with the
    8-bit rounding's), half scikit-image's estimate; and 20 % of the time a PSF scaled and rotated by <= 10 %.
    """
    limit = kernel_size_at(step, config)
    # Small PSFs more often (most real blurs are under 35 px): side 7 + (limit - 7) u^2, u uniform.
    draw = float(torch.rand((), generator=generator))
    size = int(7 + (limit - 7) * draw**2) // 2 * 2 + 1
    margin = size // 2
    # A patch at least twice the PSF: else every pixel lies within its reach of the border.
    side = max(config.patch, 2 * size)
    sharp = random_patches(images, config.batch, side + 2 * margin, generator=generator)
    top_noise = config.max_noise if float(torch.rand((), generator=generator)) < 0.5 else 0.4 * config.max_noise
    blurred, psfs, sigmas = [], [], []
    for patch in sharp:
        psf = _centred(random_nonblind_psf(size, generator=generator), size)
        sigma = float(torch.rand((), generator=generator)) * top_noise
        noisy = add_gaussian_noise(_valid_blur(patch, psf), sigma, generator=generator)
        observed = quantize_8bit(noisy)
        blurred.append(observed)
        if float(torch.rand((), generator=generator)) < 0.5:
            sigmas.append(math.hypot(sigma, 1 / 255 / math.sqrt(12)))
        else:
            sigmas.append(float(estimate_noise(observed[None])[0]))
        psfs.append(perturb_psf(psf, generator=generator) if float(torch.rand((), generator=generator)) < 0.2 else psf)
    target = sharp[..., margin : margin + side, margin : margin + side]
    return (torch.stack(blurred), torch.stack(psfs), torch.tensor(sigmas)), [target]


def validation_kernels(count: int = 6, *, size: int = 31) -> list[torch.Tensor]:
    """Fixed validation blurs (seeded, never the Levin kernels): 4 camera shakes, a disk and a Gaussian."""
    generator = torch.Generator().manual_seed(20261122)
    shakes = [random_motion_psf(size, generator=generator) for _ in range(count - 2)]
    return shakes + [disk_psf(4.0), gaussian_psf(2.0)]


# ----------------------------------------------------------------------------- validation


@torch.inference_mode()
def validate_sr(model: LapSR, images: list[torch.Tensor], *, crop: int, degradation: str = "bicubic") -> dict[str, float]:
    """Mean Y-PSNR (paper conventions) at x2 and x4 on centre crops of the held-out images: ``x2``, ``x4`` from
    clean bicubic LR, and with ``degradation="realistic"`` also ``strong_x2``, ``strong_x4`` from the seeded
    ``strong`` preset."""
    kinds = ["bicubic"] + (["strong"] if degradation == "realistic" else [])
    results = {}
    for kind in kinds:
        for scale in (2, 4):
            values = []
            for index, image in enumerate(images):
                top = max(0, (image.shape[1] - crop) // 2)
                left = max(0, (image.shape[2] - crop) // 2)
                hr = image[None, :, top : top + crop, left : left + crop].float() / 255
                hr = mod_crop(hr, scale)
                if kind == "bicubic":
                    lr = bicubic_downscale(hr, scale)
                else:
                    lr = realistic_downscale(hr, scale, kind, generator=degradation_generator(0, index))
                sr = model(lr, LapSR.levels_for_scale(scale))[-1]
                values.append(float(psnr(sr.clamp(0, 1), hr, shave=scale)[0]))
            results[f"x{scale}" if kind == "bicubic" else f"{kind}_x{scale}"] = sum(values) / len(values)
    return results


@torch.inference_mode()
def validate_deblur(model: SRNDeblur, images: list[torch.Tensor], *, crop: int) -> dict[str, float]:
    """Mean Y-PSNR of the deblurred result and of the blurred input on held-out centre crops, over fixed
    validation kernels with 1% noise: ``{"psnr": ..., "input": ..., "gain": ...}``."""
    from srdeblur.classical import blur

    outputs, inputs = [], []
    crop = crop // model.multiple * model.multiple
    for index, image in enumerate(images):
        top, left = max(0, (image.shape[1] - crop) // 2), max(0, (image.shape[2] - crop) // 2)
        sharp = image[None, :, top : top + crop, left : left + crop].float() / 255
        sharp = mod_crop(sharp, model.multiple)
        for k, kernel in enumerate(validation_kernels()):
            generator = torch.Generator().manual_seed(1000 * index + k)
            blurred = quantize_8bit(add_gaussian_noise(blur(sharp, kernel), 0.01, generator=generator))
            restored = model(blurred)[-1].clamp(0, 1)
            outputs.append(float(psnr(restored, sharp)[0]))
            inputs.append(float(psnr(blurred, sharp)[0]))
    mean_out, mean_in = sum(outputs) / len(outputs), sum(inputs) / len(inputs)
    return {"psnr": mean_out, "input": mean_in, "gain": mean_out - mean_in}


@torch.inference_mode()
def validate_nonblind(model: USRDeconv, images: list[torch.Tensor], *, crop: int) -> dict[str, float]:
    """Mean Y-PSNR of the network and of Wiener (balance 0.005) given the true PSF, on held-out centre crops
    blurred by the fixed validation kernels with 1 % noise, the noise level estimated from the image:
    ``{"psnr": ..., "wiener": ..., "gain": ...}``."""
    from srdeblur.classical import blur, wiener

    outputs, baselines = [], []
    for index, image in enumerate(images):
        top, left = max(0, (image.shape[1] - crop) // 2), max(0, (image.shape[2] - crop) // 2)
        sharp = image[None, :, top : top + crop, left : left + crop].float() / 255
        for k, kernel in enumerate(validation_kernels()):
            generator = torch.Generator().manual_seed(1000 * index + k)
            blurred = quantize_8bit(add_gaussian_noise(blur(sharp, kernel), 0.01, generator=generator))
            sigma = estimate_noise(blurred)
            restored = model(blurred, kernel, sigma)[-1].clamp(0, 1)
            outputs.append(float(psnr(restored, sharp, shave=8)[0]))
            baselines.append(float(psnr(wiener(blurred, kernel, balance=0.005), sharp, shave=8)[0]))
    mean_out, mean_base = sum(outputs) / len(outputs), sum(baselines) / len(baselines)
    return {"psnr": mean_out, "wiener": mean_base, "gain": mean_out - mean_base}


@torch.inference_mode()
def validate_gate(model: DegradationGate, images: list[torch.Tensor], *, crop: int) -> dict[str, float]:
    """Share of held-out centre crops (x2 and x4) the gate labels right: clean bicubic LR, and the seeded
    ``mild`` and ``strong`` presets: ``{"accuracy", "clean", "mild", "strong"}`` (each a fraction)."""
    right: dict[str, list[float]] = {"clean": [], "mild": [], "strong": []}
    for index, image in enumerate(images):
        top, left = max(0, (image.shape[1] - crop) // 2), max(0, (image.shape[2] - crop) // 2)
        hr = image[None, :, top : top + crop, left : left + crop].float() / 255
        for scale in (2, 4):
            hr_cut = mod_crop(hr, scale)
            right["clean"].append(float(model(bicubic_downscale(hr_cut, scale))[0][0] < 0))
            for kind in ("mild", "strong"):
                lr = realistic_downscale(hr_cut, scale, kind, generator=degradation_generator(0, index))
                right[kind].append(float(model(lr)[0][0] > 0))
    scores = {kind: sum(v) / len(v) for kind, v in right.items()}
    return {"accuracy": (scores["clean"] + (scores["mild"] + scores["strong"]) / 2) / 2, **scores}


# ----------------------------------------------------------------------------- is a photo worth deblurring?

#: What a photo handed to ``deblur`` may have been through, with probabilities: nothing (a sharp photo), the
#: softness of a sharp photo (a Gaussian of sigma 0.3-1 px), a uniform camera shake / defocus / Gaussian, a
#: shake varying across the frame, camera roll, or an object moving over a still background. Every kind may
#: also be noisy and JPEG'd.
PHOTO_BLURS = {"sharp": 0.2, "soft": 0.2, "uniform": 0.3, "varying": 0.1, "rotation": 0.1, "object": 0.1}
#: The kinds that one PSF per photo (or the blind network) should deblur: the blur gate's positive class.
DEBLURRABLE = ("uniform", "varying")
#: A uniform blur narrower than this :func:`srdeblur.blind.psf_spread` (px) is the softness of a sharp photo
#: (a Gaussian of sigma 1 spreads 17 px; Levin et al.'s camera shakes 27-49 px).
MIN_BLUR_SPREAD = 20.0


def degrade_photo(sharp: torch.Tensor, *, generator: torch.Generator) -> tuple[torch.Tensor, str]:
    """A random :data:`PHOTO_BLURS` kind applied to a ``(1, 3, H, W)`` crop: ``(degraded, kind)``, 8-bit.

    Blurs are 9-31 px (a uniform one narrower than :data:`MIN_BLUR_SPREAD` counts as ``"soft"``); then every
    kind gets Gaussian noise (sigma 0-3 %) and a quarter JPEG (quality 60-95).
    """
    from srdeblur.blind import psf_spread
    from srdeblur.photoblur import object_motion_blur, rotation_blur, varying_blur

    kinds = list(PHOTO_BLURS)
    kind = kinds[int(torch.multinomial(torch.tensor(list(PHOTO_BLURS.values())), 1, generator=generator))]
    size = 2 * int(torch.randint(4, 16, (), generator=generator)) + 1  # 9..31 px
    if kind == "sharp":
        blurred = sharp
    elif kind == "soft":
        blurred = blur(sharp, gaussian_psf(0.3 + 0.7 * float(torch.rand((), generator=generator))))
    elif kind == "uniform":
        kernel = random_blur_kernel(size, generator=generator)
        blurred = blur(sharp, kernel)
        kind = "uniform" if psf_spread(kernel) >= MIN_BLUR_SPREAD else "soft"
    elif kind == "varying":
        blurred = varying_blur(sharp, generator=generator, size=size)
    elif kind == "rotation":
        blurred = rotation_blur(sharp, generator=generator, max_reach=size / 2)
    else:
        blurred = object_motion_blur(sharp, generator=generator, size=size)
    sigma = 0.03 * float(torch.rand((), generator=generator))
    degraded = quantize_8bit(add_gaussian_noise(blurred, sigma, generator=generator))
    if float(torch.rand((), generator=generator)) < 0.25:
        quality = int(torch.randint(60, 96, (), generator=generator))
        degraded = torch.from_numpy(jpeg_compress(degraded[0].permute(1, 2, 0).numpy(), quality)).permute(2, 0, 1)[None]
    return degraded, kind


def make_blurgate_batch(
    images: list[torch.Tensor], config: TrainConfig, *, generator: torch.Generator
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``config.batch`` crops through :func:`degrade_photo` (B, 3, P, P) and their labels ``[(B,)]``: 1 for
    the :data:`DEBLURRABLE` kinds, 0 for sharp photos and blurs confined to part of the frame."""
    crops, labels = [], []
    for sharp in random_patches(images, config.batch, config.patch, generator=generator).split(1):
        degraded, kind = degrade_photo(sharp, generator=generator)
        crops.append(degraded)
        labels.append(float(kind in DEBLURRABLE))
    return torch.cat(crops), [torch.tensor(labels)]


@torch.no_grad()
def validate_blurgate(model: DegradationGate, images: list[torch.Tensor], *, crop: int) -> dict[str, float]:
    """Share of held-out centre crops the blur gate labels right, 24 seeded draws of :func:`degrade_photo` per
    image: ``{"accuracy": mean of the deblurrable and the other share, "deblurrable", "other"}``."""
    right: dict[str, list[float]] = {"deblurrable": [], "other": []}
    for index, image in enumerate(images):
        top, left = max(0, (image.shape[1] - crop) // 2), max(0, (image.shape[2] - crop) // 2)
        sharp = image[None, :, top : top + crop, left : left + crop].float() / 255
        for draw in range(24):
            degraded, kind = degrade_photo(sharp, generator=degradation_generator(index, draw))
            logit = float(model(degraded)[0][0])
            if kind in DEBLURRABLE:
                right["deblurrable"].append(float(logit > 0))
            else:
                right["other"].append(float(logit < 0))
    scores = {kind: sum(v) / max(1, len(v)) for kind, v in right.items()}
    return {"accuracy": (scores["deblurrable"] + scores["other"]) / 2, **scores}
