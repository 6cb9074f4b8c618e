"""``upscale`` and ``deblur``: every restoration method behind one call each.

Inputs and outputs are ``(B, C, H, W)`` float32 in [0, 1] with ``C`` = 1 or 3; outputs are clamped to
[0, 1] and keep the input's channel count (grayscale images go through the RGB network replicated and come
back as the mean of its three outputs).

Precision: with ``precision="bfloat16"`` the networks' hidden layers run in bfloat16 on CPUs that compute it
natively (AVX512-BF16 / AMX), and in float32 elsewhere; the layers that read or write the image always run in
float32 (:func:`srdeblur.nets.float32_layer`). Measured with ``benchmarks/bench_backends.py`` on such a CPU:
1.5-1.8x faster, Set5 Y-PSNR within 0.001 dB of float32 (x2 and x4). ``precision="auto"`` (the default) is
that, except that the shipped SR networks' feature path runs in int8 on the CPU where PyTorch has the x86
quantized engine and the manifest stores the activation ranges (:mod:`srdeblur.int8`, :func:`int8_applies`):
1.4x faster again at x4, Set5 0.03 (x4) to 0.07 dB (x2) below bfloat16. ``precision="float32"`` computes
everything in float32.

Self-ensemble (``ensemble=8``, EDSR's "+" models): the network runs on the image under each of the 8
flips and 90-degree rotations, each output is turned back, and the 8 are averaged (:func:`self_ensemble`).
The networks are not equivariant, so their errors partly differ and partly cancel; it costs 8x the time.
``ensemble=2`` / ``4`` use the first 2 / 4 of the transforms.
"""

from __future__ import annotations

import functools
import logging
from typing import Callable, Literal

import torch
from torch import nn
from torch.nn import functional as F

from srdeblur import blind, classical
from srdeblur.devices import default_device, network_autocast, parse_device
from srdeblur.degrade import estimate_noise
from srdeblur.io import Canvas
from srdeblur.nets import LapSR, SRNDeblur
from srdeblur.resize import imresize
from srdeblur.tiling import DEFAULT_TILE_OVERLAP, TileFunction, auto_tile, run_tile, tiled_bands, tiled_forward

log = logging.getLogger(__name__)

__all__ = [
    "UPSCALE_METHODS", "DEBLUR_METHODS", "SCALES", "upscale", "deblur", "upscale_with_net", "deblur_with_net",
    "tiled_forward", "tiled_bands", "auto_tile", "DEBLUR_TILE_OVERLAP", "PRECISIONS", "bfloat16_is_native", "uses_bfloat16",
    "ENSEMBLES", "self_ensemble", "default_sr_weights", "degradation_logit", "shipped_model", "known_psf_network", "GATE_THRESHOLD",
    "deconvolve_with_net", "MAX_TRAINED_PSF", "BLUR_GATE_THRESHOLD", "BLUR_GATE_SURE", "blur_logit",
]

UPSCALE_METHODS = ("net", "bicubic", "lanczos")
DEBLUR_METHODS = ("auto", "blind", "net", "wiener", "rl")
SCALES = (2, 3, 4, 8)
PRECISIONS = ("auto", "bfloat16", "float32")
ENSEMBLES = (1, 2, 4, 8)
# LR pixels of reflect padding around the network's input, cropped from its output: borders then see
# image-like context instead of the zeros of convolution padding.
NET_BORDER = 8
# The deblurring network reaches much farther (its 1/4-scale pass sees ~4x the context): measured on a
# 512x512 photo in 128-px tiles, tiles differ from the whole image by up to 12-20 levels with 32 px of
# context, 3 with 64, and at most 1 with 96.
DEBLUR_TILE_OVERLAP = 96
# Rough peak bytes of activations per output pixel (batch 1), to size tiles from free memory.
_NET_BYTES_PER_OUTPUT_PIXEL = 1024
_RESIZE_BYTES_PER_OUTPUT_PIXEL = 256
# The known-PSF network's peak, measured with ru_maxrss on an 800 x 1024 photo: 527 B/px (PSF 29 px), 572 (75 px).
# The earlier allowance (2 x 1024) tiled a 0.8-MP photo into four overlapping tiles: 1.6x the work.
_DECONV_BYTES_PER_OUTPUT_PIXEL = 768


def bfloat16_is_native() -> bool:
    """Whether this CPU computes bfloat16 convolutions natively (oneDNN's check; False if it cannot tell)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private torch API: absent means "don't know"
        return False


def uses_bfloat16(precision: str) -> bool:
    """Whether the networks' hidden layers run in bfloat16 for ``precision`` on this CPU (see the module
    docstring); raises ValueError for an unknown ``precision``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision in ("auto", "bfloat16") and bfloat16_is_native()


def _network_precision(precision: str, device: torch.device | None = None) -> torch.autocast:
    """The autocast context the networks run under for ``precision`` on ``device`` (default the CPU; CUDA:
    fp16/bf16 hidden layers, see :func:`srdeblur.devices.network_autocast`)."""
    device = torch.device("cpu") if device is None else device
    cpu_bfloat16 = uses_bfloat16(precision) if device.type == "cpu" else False
    return network_autocast(device, precision, cpu_bfloat16=cpu_bfloat16)


def _resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` parsed (:func:`srdeblur.devices.parse_device`), or the default device for ``None``."""
    return default_device() if device is None else parse_device(device)


def _on_device(function: TileFunction, device: torch.device) -> TileFunction:
    """``function`` computed on ``device``: each piece goes there, the result comes back as float32 on the CPU
    (outputs are assembled on the CPU); tensors the function creates land on ``device`` too."""
    if device.type == "cpu":
        return function

    def on_device(piece: torch.Tensor) -> torch.Tensor:
        with torch.device(device):
            return function(piece.to(device)).float().cpu()

    return on_device


def _device_budget(device: torch.device) -> int | None:
    """Bytes of activations a tile may take on ``device`` (None: the CPU's default, see :func:`auto_tile`)."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return max(64 << 20, free // 2)


def _dihedral(image: torch.Tensor, index: int, *, inverse: bool = False) -> torch.Tensor:
    """Transform ``index`` in 0..7 of ``(..., H, W)``: ``index // 2`` quarter turns after a left-right flip if
    ``index`` is odd (``inverse``: undo it)."""
    turns, flip = divmod(index, 2)
    if inverse:
        turned = torch.rot90(image, -turns, dims=(-2, -1))
        return turned.flip(-1) if flip else turned
    return torch.rot90(image.flip(-1) if flip else image, turns, dims=(-2, -1))


def self_ensemble(function: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, *, count: int = 8) -> torch.Tensor:
    """Mean of ``function`` over the first ``count`` (1, 2, 4 or 8) flips/rotations of ``image``, each undone.

    ``function`` maps ``(B, C, H, W)`` to ``(B, C, sH, sW)`` for any H, W (``s``: its scale factor); so does
    the result, in float32. The transforms are the identity, a left-right flip, then both turned by 90, 180,
    270 degrees.
    """
    if count not in ENSEMBLES:
        raise ValueError(f"ensemble must be one of {ENSEMBLES}, got {count}")
    total = None
    for index in range(count):
        output = _dihedral(function(_dihedral(image, index).contiguous()), index, inverse=True).float()
        total = output if total is None else total.add_(output)
    return total / count


def _check_image(image: torch.Tensor) -> None:
    if image.ndim != 4 or image.shape[1] not in (1, 3):
        raise ValueError(f"expected a (B, 1|3, H, W) image tensor, got shape {tuple(image.shape)}")


def _as_rgb(image: torch.Tensor) -> torch.Tensor:
    return image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image


def _like_input(output: torch.Tensor, channels: int) -> torch.Tensor:
    return output.mean(dim=1, keepdim=True) if channels == 1 else output


@torch.inference_mode()
def upscale_with_net(image: torch.Tensor, model: LapSR, *, scale: int, precision: str = "auto") -> torch.Tensor:
    """Network super-resolution of ``(B, C, H, W)`` -> ``(B, C, scale H, scale W)`` float32, not clamped.

    x2, x4, x8 run the shared stage 1, 2, 3 times; x3 runs x4 and shrinks by 3/4 with MATLAB-style bicubic.
    ``precision``: see the module docstring.
    """
    pyramid_scale = 4 if scale == 3 else scale
    levels = LapSR.levels_for_scale(pyramid_scale)
    height, width = image.shape[-2:]
    border = min(NET_BORDER, height - 1, width - 1)
    rgb = _as_rgb(image)
    if border > 0:
        rgb = F.pad(rgb, (border,) * 4, mode="reflect")
    with _network_precision(precision, rgb.device):
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
    tile: int | None = None,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    on_tile: Callable[[int, int], None] | None = None,
    into: Canvas | None = None,
    precision: str = "auto",
    ensemble: int = 1,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Upscale ``(B, C, H, W)`` in [0, 1] by an integer ``scale`` in {2, 3, 4, 8}.

    Parameters
    ----------
    method : "net" (a shipped LapSR network, or ``model``), "bicubic" (MATLAB-compatible) or "lanczos"
        (Lanczos-3).
    model : a loaded network for ``method="net"``; default: the shipped weights :func:`default_sr_weights`
        picks for this image (``lapsr`` for clean inputs, ``lapsr-real`` for noisy / compressed / soft ones).
    tile : process in tiles of this many input pixels (0: whole image; None: chosen from free memory).
    tile_overlap : context per tile side in input pixels; results are cross-faded (see :func:`tiled_forward`).
    on_tile : progress callback ``(tiles done, tiles total)``.
    into : write the result band by band into this 8/16-bit canvas (batch 1) and return it instead of a
        float32 tensor: the memory-bounded path for very large outputs.
    precision : ``"auto"`` (the shipped network's feature path in int8 where :func:`int8_applies`, else as
        ``"bfloat16"``), ``"bfloat16"`` (bfloat16 hidden layers where the CPU has them natively) or
        ``"float32"``; the network only (see the module docstring). A ``model`` passed in runs as it is.
    ensemble : 1, 2, 4 or 8: average the network over that many flips/rotations (:func:`self_ensemble`;
        that many times the time). The network only.
    device : where to compute: "auto", "cpu", "cuda", "cuda:N", "mps" or a ``torch.device`` (default: the
        CPU, or the device of :func:`srdeblur.devices.using_device`). Tiles go to the device one by one and
        come back to the CPU, where the output is assembled; ``model`` is moved there (in place). On CUDA
        the network's hidden layers run in fp16/bf16 (``precision="auto"``), tiles are sized from free GPU
        memory and a tile that runs out of memory is split and retried.

    Returns
    -------
    ``(B, C, scale H, scale W)`` float32 in [0, 1] on the CPU (or ``into``).

    Raises
    ------
    srdeblur.devices.DeviceError
        (a ValueError) for a device that is unknown or not present.
    """
    _check_image(image)
    target = _resolve_device(device)
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale}")
    if method == "bicubic":
        function: TileFunction = lambda piece: imresize(piece, scale=scale, kernel="cubic")  # noqa: E731
    elif method == "lanczos":
        function = lambda piece: imresize(piece, scale=scale, kernel="lanczos3")  # noqa: E731
    elif method == "net":
        if model is None:
            model = shipped_model(default_sr_weights(image), int8=int8_applies(precision, target))
        uses_bfloat16(precision)  # an unknown precision fails here, before any work
        model = model.to(target)
        function = _ensembled(lambda piece: upscale_with_net(piece, model, scale=scale, precision=precision), ensemble)  # type: ignore[arg-type]
    else:
        raise ValueError(f"unknown upscale method {method!r}; expected one of {UPSCALE_METHODS}")
    if tile is None:
        per_pixel = _NET_BYTES_PER_OUTPUT_PIXEL if method == "net" else _RESIZE_BYTES_PER_OUTPUT_PIXEL
        tile = auto_tile(image, bytes_per_output_pixel=per_pixel, scale=scale, budget=_device_budget(target))
    return _run(image, _on_device(function, target), scale=scale, tile=tile, overlap=tile_overlap, on_tile=on_tile,
                into=into)


# The gate's logit above which an image counts as degraded. Chosen on training images only
# (benchmarks/calibrate_sr_gate.py: 20 clean and 100 degraded LR crops of the held-out training images):
# -2.0 sends every clean crop to lapsr and 94 % of the degraded ones to lapsr-real (mean 27.79 dB, the
# oracle's choice 27.84); -2.5 is the last value that keeps every clean crop, -3.0 loses 0.19 dB on them.
GATE_THRESHOLD = -2.0
# The gate looks at the centred crop of at most this side (LR pixels): enough to see noise and JPEG blocks.
GATE_CROP = 512


def shipped_model(name: str, *, int8: bool = False) -> nn.Module:
    """The shipped weights ``name`` (:func:`srdeblur.weights.load_model`; ``int8``: the int8 SR network where
    its manifest allows), loaded once per process and weights folder."""
    from srdeblur.weights import weights_dir

    return _load_once(name, str(weights_dir()), int8)


@functools.lru_cache(maxsize=8)
def _load_once(name: str, folder: str, int8: bool = False) -> nn.Module:
    from pathlib import Path

    from srdeblur.weights import load_model

    return load_model(name, folder=Path(folder), int8=int8)


def int8_applies(precision: str, device: str | torch.device | None = None) -> bool:
    """Whether the SR network's feature path runs in int8 (:mod:`srdeblur.int8`): ``precision="auto"`` on the
    CPU where PyTorch has the x86 quantized engine (weights without stored ranges stay float). Raises
    ValueError for an unknown ``precision``."""
    from srdeblur import int8

    uses_bfloat16(precision)  # validates it
    return precision == "auto" and _resolve_device(device).type == "cpu" and int8.available()


@torch.inference_mode()
def degradation_logit(image: torch.Tensor, gate: nn.Module) -> torch.Tensor:
    """``(B,)`` logits of "degraded" from :class:`srdeblur.nets.DegradationGate` on the centred crop (at most
    :data:`GATE_CROP` px a side) of each ``(B, C, H, W)`` image."""
    height, width = image.shape[-2:]
    top, left = max(0, (height - GATE_CROP) // 2), max(0, (width - GATE_CROP) // 2)
    crop = _as_rgb(image[..., top : top + GATE_CROP, left : left + GATE_CROP]).float()
    return gate(crop.to(next(gate.parameters()).device))[0].cpu()


def default_sr_names() -> tuple[str, ...]:
    """The shipped weights :func:`default_sr_weights` may load: ``lapsr``, plus ``srgate`` and ``lapsr-real``
    where the weights folder has both."""
    from srdeblur.weights import weights_dir

    extra = ("srgate", "lapsr-real")
    return ("lapsr", *extra) if all((weights_dir() / f"{n}.json").is_file() for n in extra) else ("lapsr",)


def default_sr_weights(image: torch.Tensor, *, gate: nn.Module | None = None) -> str:
    """The shipped SR weights for ``image`` (batch 1, or the batch as a whole by its mean logit): ``lapsr-real``
    where the gate (default: the shipped ``srgate``) finds noise, JPEG or blur, else ``lapsr``.

    A weights folder without ``srgate`` or ``lapsr-real`` (e.g. ``SRDEBLUR_WEIGHTS`` pointing at one's own
    ``lapsr``) always gives ``lapsr``."""
    if gate is None:
        if default_sr_names() == ("lapsr",):
            return "lapsr"
        gate = shipped_model("srgate")
    logit = degradation_logit(image, gate)
    return "lapsr-real" if float(logit.mean()) > GATE_THRESHOLD else "lapsr"


def _ensembled(function: TileFunction, count: int) -> TileFunction:
    """``function`` itself for ``count`` 1, else its :func:`self_ensemble` (an unknown count fails here)."""
    if count not in ENSEMBLES:
        raise ValueError(f"ensemble must be one of {ENSEMBLES}, got {count}")
    return function if count == 1 else lambda piece: self_ensemble(function, piece, count=count)


def _run(image: torch.Tensor, function: TileFunction, *, scale: int, tile: int, overlap: int,
         on_tile: Callable[[int, int], None] | None, into: Canvas | None) -> torch.Tensor:
    """Whole or tiled, into a float32 tensor or a canvas; clamped to [0, 1]."""
    if into is None:
        if tile:
            return tiled_forward(image, function, scale=scale, tile=tile, overlap=overlap, on_tile=on_tile).clamp_(0, 1)
        # Untiled, a lack of memory still splits the image and retries (as for a tile; the GPU's case above all).
        return run_tile(function, image, scale, max(image.shape[-2:]), overlap).clamp(0, 1)
    if image.shape[0] != 1:
        raise ValueError("a canvas holds one image; got a batch of {image.shape[0]}")
    if tile:
        for top, band in tiled_bands(image, function, scale=scale, tile=tile, overlap=overlap, on_tile=on_tile):
            into.paste(top, band)
    else:
        into.paste(0, run_tile(function, image, scale, max(image.shape[-2:]), overlap))
    return into  # type: ignore[return-value]


@torch.inference_mode()
def deblur_with_net(image: torch.Tensor, model: SRNDeblur, *, precision: str = "auto") -> torch.Tensor:
    """Blind deblurring of ``(B, C, H, W)`` -> same shape, float32, not clamped (``precision``: see the module
    docstring).

    The input is reflect-padded by ``NET_BORDER`` px plus up to the network's size multiple, then cropped.
    """
    height, width = image.shape[-2:]
    multiple = model.multiple
    border = min(NET_BORDER * 2, height - 1, width - 1)
    extra_h = (-(height + 2 * border)) % multiple
    extra_w = (-(width + 2 * border)) % multiple
    rgb = F.pad(_as_rgb(image), (border,) * 4, mode="reflect") if border > 0 else _as_rgb(image)
    rgb = F.pad(rgb, (0, extra_w, 0, extra_h), mode="replicate")
    with _network_precision(precision, rgb.device):
        output = model(rgb.contiguous(memory_format=torch.channels_last))[-1]
    output = output[..., border : border + height, border : border + width]
    return _like_input(output.contiguous(), image.shape[1])


def _decided(on_decision: Callable[[dict], None] | None, image: torch.Tensor, decision: dict) -> None:
    """Tell ``on_decision`` (if any) ``decision`` once per image of the ``(B, C, H, W)`` batch, a copy each."""
    if on_decision is not None:
        for _ in range(image.shape[0]):
            on_decision({key: list(value) if isinstance(value, list) else value for key, value in decision.items()})


def deblur(
    image: torch.Tensor,
    *,
    method: Literal["net", "auto", "blind", "wiener", "rl"] = "net",
    psf: torch.Tensor | None = None,
    psf_size: int = blind.DEFAULT_PSF_SIZE,
    on_psf: Callable[[torch.Tensor], None] | None = None,
    on_decision: Callable[[dict], None] | None = None,
    iterations: int = 30,
    balance: float = 0.005,
    tv_weight: float = 0.0,
    model: nn.Module | None = None,
    tile: int | None = None,
    tile_overlap: int = DEBLUR_TILE_OVERLAP,
    on_tile: Callable[[int, int], None] | None = None,
    into: Canvas | None = None,
    precision: str = "auto",
    ensemble: int = 1,
    device: str | torch.device | None = None,
    noise: float | None = None,
    blur_gate: nn.Module | None | Literal[False] = None,
) -> torch.Tensor:
    """Deblur ``(B, C, H, W)`` in [0, 1]; ``wiener`` and ``rl`` need the ``psf`` ``(kh, kw)`` (sum 1).

    ``net`` with a ``psf`` is the learned known-PSF deconvolution (:class:`srdeblur.nets.USRDeconv`, shipped
    weights ``usrdeconv``), told the noise level ``noise`` (sigma on [0, 1]; None: estimated from each image,
    :func:`srdeblur.degrade.estimate_noise`); without one it is the blind network.

    ``blind`` estimates each image's PSF (``psf_size`` px square, :func:`srdeblur.blind.estimate_psf`),
    passes it to ``on_psf`` as a ``(psf_size, psf_size)`` tensor if given, and deconvolves with
    Richardson-Lucy. ``auto`` first asks the blur gate (``blur_gate``, a :class:`srdeblur.nets.DegradationGate`;
    None: the shipped ``blurgate``; False: none) whether the photo is blurred by a camera shake, defocus or a
    smoothly varying shake (:func:`blur_logit` above :data:`BLUR_GATE_THRESHOLD`) and returns the others — sharp
    photos, and photos where only part of the frame moved — exactly as they are; where the gate is unsure
    (logit at most :data:`BLUR_GATE_SURE`) it runs the network; on the other blurred photos it does what
    ``blind`` does where the estimate is credible (:func:`srdeblur.blind.is_credible`) and runs the network on
    the other images — or, with the shipped ``usrdeconv``, the mean of the learned deconvolution and
    :data:`MIX_RL_ITERATIONS` Richardson-Lucy iterations with the estimate, where the learned one's re-blurred
    residual is at most :data:`REBLUR_LIMIT` times the noise (else the network). ``iterations`` applies
    to Richardson-Lucy (``rl``, ``blind``; ``auto`` without ``usrdeconv``), ``tv_weight`` to all of it,
    ``balance`` to Wiener; ``auto`` runs the network alone on images smaller than twice ``psf_size``, where no
    PSF can be estimated. ``tile``,
    ``tile_overlap``, ``on_tile``, ``into``, ``precision`` and ``ensemble`` apply to the network (see
    :func:`upscale`); the classical
    methods work on the whole image at once (their FFTs are global).

    ``device`` (see :func:`upscale`): the network and the deconvolutions (Wiener, Richardson-Lucy, their FFTs)
    run there; the blind PSF estimate itself runs on the CPU. The result is on the CPU.

    ``on_decision``, if given, is called once per image, before its restoration, with what is done to it:
    ``{"path": p}``, ``p`` the method that runs ("none": the photo returned as it is, "blind": the estimated PSF
    and Richardson-Lucy (``auto`` with ``usrdeconv``: the mean above), "net": the blind network, "wiener", "rl", "net-psf": the known-PSF network); for
    ``auto`` also ``blur_logit`` (None without a gate), for ``auto`` and ``blind`` also
    ``psf_spread`` (:func:`srdeblur.blind.psf_spread` of the estimate, px), ``edge_slope_ratio``
    (:func:`srdeblur.blind.edge_slope_ratio`) and ``reasons``, the gate's objections to the estimate
    (:func:`srdeblur.blind.why_not_credible`, and ``auto``'s re-blur check, whose ``reblur_ratio`` is reported
    where it ran, else None): why ``auto`` ran the network, empty where it deconvolved
    (``blind`` deconvolves anyway), or the blur gate's ("looks sharp: ..."). A photo the gate leaves alone or too
    small for a PSF has no estimate (``None`` for both numbers); the latter has the reason "image smaller than
    twice the N-px PSF".
    """
    _check_image(image)
    target = _resolve_device(device)
    if method in ("wiener", "rl"):
        if psf is None:
            raise ValueError(f"--method {method} needs a PSF (e.g. --psf gaussian:1.5)")
        _decided(on_decision, image, {"path": method})
        if method == "wiener":
            wiener = _on_device(lambda piece: classical.wiener(piece, psf, balance=balance), target)
            return wiener(image).clamp(0, 1)
        lucy = _on_device(lambda piece: classical.richardson_lucy(piece, psf, iterations=iterations, tv_weight=tv_weight),
                          target)
        return lucy(image).clamp(0, 1)
    if method == "auto":
        return torch.cat([_auto_one(one_image, blur_gate=blur_gate, psf_size=psf_size, on_psf=on_psf,
                                    on_decision=on_decision, iterations=iterations, tv_weight=tv_weight, model=model,
                                    tile=tile, tile_overlap=tile_overlap, on_tile=on_tile, precision=precision,
                                    ensemble=ensemble, target=target) for one_image in image.split(1)])
    if method == "blind":
        restored = []
        for one_image, estimate in zip(image.split(1), blind.estimate_psf(image, size=psf_size)):
            if on_psf is not None:
                on_psf(estimate)
            if on_decision is not None:
                spread, slope_ratio = blind.psf_spread(estimate), blind.edge_slope_ratio(one_image, estimate)
                _decided(on_decision, one_image, {"path": "blind", "psf_spread": spread, "edge_slope_ratio": slope_ratio,
                                                  "reasons": blind.why_not_credible(spread, slope_ratio)})
            restored.append(_lucy(one_image, estimate, iterations=iterations, tv_weight=tv_weight, target=target))
        return torch.cat(restored)
    if method == "net" and psf is not None:
        _decided(on_decision, image, {"path": "net-psf"})
        return _deconvolve(image, psf, noise=noise, model=model, tile=tile, tile_overlap=tile_overlap,
                           on_tile=on_tile, into=into, precision=precision, target=target)
    if method == "net":
        _decided(on_decision, image, {"path": "net"})
        if model is None:
            from srdeblur.weights import load_model

            model = load_model("srndeblur")
        uses_bfloat16(precision)  # an unknown precision fails here, before any work
        model = model.to(target)
        function = _ensembled(lambda piece: deblur_with_net(piece, model, precision=precision), ensemble)  # type: ignore[arg-type]
        if tile is None:
            tile = auto_tile(image, bytes_per_output_pixel=_NET_BYTES_PER_OUTPUT_PIXEL, scale=1,
                             budget=_device_budget(target))
        return _run(image, _on_device(function, target), scale=1, tile=tile, overlap=tile_overlap, on_tile=on_tile,
                    into=into)
    raise ValueError(f"unknown deblur method {method!r}; expected one of {DEBLUR_METHODS}")


def _lucy(image: torch.Tensor, psf: torch.Tensor, *, iterations: int, tv_weight: float,
          target: torch.device) -> torch.Tensor:
    lucy = _on_device(lambda piece: classical.richardson_lucy(piece, psf, iterations=iterations, tv_weight=tv_weight),
                      target)
    return lucy(image).clamp(0, 1)


#: ``auto`` deblurs a photo only where the shipped ``blurgate`` classifier's logit of "blurred by one camera
#: shake, defocus or a smoothly varying shake" is above this; otherwise the photo is returned as it is.
#: Chosen on held-out training crops (``benchmarks/calibrate_blur_gate.py``), never the benchmarks.
BLUR_GATE_THRESHOLD = -2.0
#: Between the threshold and this logit (even odds) the gate is unsure, and ``auto`` runs the blind network,
#: which stays close to the photo, instead of a deconvolution that would ruin it were it sharp after all. On
#: the calibration draws this band holds a quarter of the softened photos, 6 % of the uniform blurs and 9 % of
#: the varying ones.
BLUR_GATE_SURE = 0.0


def _shipped_if_present(name: str) -> nn.Module | None:
    """The shipped weights ``name``, or None where the weights folder has none (e.g. ``SRDEBLUR_WEIGHTS``
    pointing at one's own ``srndeblur``). Without ``blurgate`` ``auto`` deblurs every photo, as it did before
    the gate; without ``usrdeconv`` it deconvolves with Richardson-Lucy alone."""
    from srdeblur.weights import weights_dir

    return shipped_model(name) if (weights_dir() / f"{name}.json").is_file() else None


def _shipped_deconvolution(iterations: int) -> nn.Module | None:
    """The shipped known-PSF network run at ``iterations`` HQS iterations (None without one)."""
    shipped = _shipped_if_present("usrdeconv")
    return None if shipped is None else _at_iterations(shipped, iterations)


def known_psf_network() -> nn.Module:
    """The shipped known-PSF network as ``deblur(..., method="net", psf=...)`` runs it: at
    :data:`KNOWN_PSF_ITERATIONS` iterations, built once per process. Raises WeightsError where it is missing."""
    return _at_iterations(shipped_model("usrdeconv"), KNOWN_PSF_ITERATIONS)


@functools.lru_cache(maxsize=4)
def _at_iterations(model: nn.Module, iterations: int) -> nn.Module:
    from srdeblur.nets import with_iterations

    return with_iterations(model, iterations)


def blur_logit(image: torch.Tensor, gate: nn.Module) -> float:
    """The blur gate's logit of "worth deblurring" for one ``(1, C, H, W)`` photo (its centred crop of at most
    :data:`GATE_CROP` px a side)."""
    return float(degradation_logit(_as_rgb(image), gate)[0])


def _auto_one(image: torch.Tensor, *, blur_gate: nn.Module | None | Literal[False], psf_size: int, on_psf,
              on_decision, iterations: int, tv_weight: float, model, tile, tile_overlap, on_tile, precision: str,
              ensemble: int, target: torch.device) -> torch.Tensor:
    """``deblur``'s default for one ``(1, C, H, W)`` photo: leave it alone unless the blur gate finds it blurred;
    the blind network where the gate is unsure (:data:`BLUR_GATE_SURE`); else the blind estimate, deconvolved
    by the learned network and by Richardson-Lucy and averaged, where it is credible and explains the photo
    (:data:`REBLUR_LIMIT`). Where the centred crop's estimate fails either check, a second estimate from the crop
    with the most strong edges (:func:`_estimate_regions`) gets the same checks; the blind network runs where
    that fails too."""
    decision: dict = {"path": "blind", "blur_logit": None, "region": None, "psf_spread": None,
                      "edge_slope_ratio": None, "reblur_ratio": None, "reasons": []}
    if blur_gate is None:
        blur_gate = _shipped_if_present("blurgate")
    if blur_gate is not None and blur_gate is not False:
        logit = blur_logit(image, blur_gate.to(target))
        decision["blur_logit"] = round(logit, 3)
        if logit <= BLUR_GATE_THRESHOLD:
            decision.update(path="none", reasons=[f"looks sharp: blur gate {logit:.2f} <= {BLUR_GATE_THRESHOLD:g}"])
            _decided(on_decision, image, decision)
            return image.clone()
    network = functools.partial(deblur, method="net", model=model, tile=tile, tile_overlap=tile_overlap,
                                on_tile=on_tile, precision=precision, ensemble=ensemble, device=target)
    if decision["blur_logit"] is not None and decision["blur_logit"] <= BLUR_GATE_SURE:
        decision.update(path="net", reasons=[f"blur gate unsure: {decision['blur_logit']:.2f} <= {BLUR_GATE_SURE:g}"])
        _decided(on_decision, image, decision)
        return network(image)
    if min(image.shape[-2:]) < 2 * psf_size:
        decision.update(path="net", reasons=[f"image smaller than twice the {psf_size}-px PSF"])
        _decided(on_decision, image, decision)
        return network(image)
    deconvolution = _shipped_deconvolution(AUTO_DECONV_ITERATIONS)
    sigma = float(estimate_noise(image)[0]) if deconvolution is not None else None  # once per photo
    for region in _estimate_regions(image):
        estimate = blind.estimate_psf(image, size=psf_size, max_side=ESTIMATE_SIDE, region=region)[0]
        spread, slope_ratio = blind.psf_spread(estimate), blind.edge_slope_ratio(image, estimate)
        reasons = blind.why_not_credible(spread, slope_ratio)  # empty: blind.is_credible
        decision.update(path="net" if reasons else "blind", region=region, psf_spread=spread,
                        edge_slope_ratio=slope_ratio, reblur_ratio=None)
        if reasons or deconvolution is None:
            decision["reasons"] += [_from_region(region, reason) for reason in reasons]
            if reasons:
                continue
            break
        learned = _deconvolve(image, estimate, noise=sigma, model=deconvolution, tile=tile, tile_overlap=tile_overlap,
                              on_tile=on_tile, into=None, precision=precision, target=target).clamp(0, 1)
        ratio = round(blind.reblur_ratio(image, estimate, learned, sigma), 3)
        decision["reblur_ratio"] = ratio
        if ratio <= REBLUR_LIMIT:
            decision["reasons"] = []
            break
        decision.update(path="net")
        decision["reasons"].append(_from_region(region, f"the PSF does not explain the photo: re-blurred residual "
                                                        f"{ratio:.1f}x the noise > {REBLUR_LIMIT:g}"))
    if on_psf is not None:
        on_psf(estimate)
    if decision["path"] == "net":
        _decided(on_decision, image, decision)
        return network(image)
    if deconvolution is None:  # without a shipped usrdeconv: Richardson-Lucy alone, as before
        _decided(on_decision, image, decision)
        return _lucy(image, estimate, iterations=iterations, tv_weight=tv_weight, target=target)
    _decided(on_decision, image, decision)
    lucy = _lucy(image, estimate, iterations=MIX_RL_ITERATIONS, tv_weight=tv_weight, target=target)
    return (0.5 * (learned + lucy)).clamp(0, 1)


def _from_region(region: str, reason: str) -> str:
    """A reason against an estimate; those against the second one (the edge-rich crop's) say so."""
    return reason if region == "centre" else f"edge-rich crop: {reason}"


def _estimate_regions(image: torch.Tensor) -> tuple[str, ...]:
    """Where ``auto`` estimates the PSF, in order: the centred crop, then (if that estimate is not credible or
    does not explain the photo, and the photo is larger than the crop) the crop with the most strong edges."""
    height, width = image.shape[-2:]
    side = ESTIMATE_SIDE
    if max(height, width) <= side:
        return ("centre",)
    centre = (max(0, (height - side) // 2), max(0, (width - side) // 2))
    edges = blind.edge_rich_crop(image[:1], side=side)
    moved = max(abs(a - b) for a, b in zip(centre, edges))
    return ("centre", "edges") if moved >= side // 16 else ("centre",)  # else nearly the same pixels


#: Side of the crop ``auto`` estimates the PSF from (:func:`srdeblur.blind.estimate_psf`'s ``max_side``).
ESTIMATE_SIDE = 640


#: ``auto`` falls back on the blind network where the learned deconvolution with the estimated PSF leaves a
#: re-blurred residual (:func:`srdeblur.blind.reblur_ratio`) above this many times the noise: the PSF is wrong.
#: Not calibrated on training images alone: on the held-out training photos (321 px, too small for good
#: estimates; ``benchmarks/calibrate_reblur_check.py``) the network beat the mix at every limit down to 0.75,
#: which would send most well-estimated photos to the network. 1.0 is the most cautious limit that kept
#: ``levin`` above 28.4 dB in a measurement on ``levin`` and ``sun2013``'s first 10 photos (see the README).
REBLUR_LIMIT = 1.0
#: HQS iterations of the shipped known-PSF network (trained at 6) for ``--psf K --method net``, a PSF the user
#: knows, and in ``auto``, where the PSF is an estimate. The prior is shared and told its noise level, so the
#: same weights run at any count (the data weights resampled). Measured (true kernels, one thread): `sun2013`
#: 4 photos x 8 kernels at 1 % noise 33.03 / 33.19 / 33.26 / 33.25 dB at 6 / 8 / 10 / 12 iterations, `levin`
#: 31.67 / 31.62 / 31.55 at 6 / 8 / 10 (real blur, whose stored kernels fit less well: more data steps trust
#: them more). In ``auto``, 10 iterations gained 0.10 dB on the first 10 `sun2013` photos x 8 kernels but took
#: `beach` kernel 3 from -0.83 to -1.36 dB below its input, so the estimate gets the trained count.
KNOWN_PSF_ITERATIONS = 8
AUTO_DECONV_ITERATIONS = 6
#: Richardson-Lucy iterations of ``auto``'s mix: the mean of the learned deconvolution and Richardson-Lucy
#: with the same estimate beats either alone (their errors differ: ringing vs over-smoothing), and 10
#: iterations instead of 30 keep the default within 12 s per megapixel.
MIX_RL_ITERATIONS = 10


# The largest PSF side in the known-PSF network's training (camera shakes and lines up to this many pixels).
MAX_TRAINED_PSF = 75


@torch.inference_mode()
def deconvolve_with_net(image: torch.Tensor, model: nn.Module, psf: torch.Tensor, sigma: torch.Tensor, *,
                        precision: str = "auto") -> torch.Tensor:
    """Known-PSF deconvolution of ``(B, C, H, W)`` by :class:`srdeblur.nets.USRDeconv` with the ``(kh, kw)``
    ``psf`` and ``(B,)`` noise levels ``sigma``; same shape, float32, not clamped."""
    rgb = _as_rgb(image).float()
    with _network_precision(precision, rgb.device):
        output = model(rgb, psf.to(rgb.device, torch.float32), sigma.to(rgb.device, torch.float32))[-1]
    return _like_input(output.float().contiguous(), image.shape[1])


def _deconvolve(image: torch.Tensor, psf: torch.Tensor, *, noise: float | None, model: nn.Module | None,
                tile: int | None, tile_overlap: int, on_tile, into, precision: str, target) -> torch.Tensor:
    if max(psf.shape) > MAX_TRAINED_PSF:
        log.warning("PSF of %dx%d px is larger than the %d px the network was trained on; results may be poor",
                    *psf.shape, MAX_TRAINED_PSF)
    if noise is not None and not (0 <= noise <= 0.5):
        raise ValueError(f"noise must be a sigma in [0, 0.5], got {noise}")
    if min(image.shape[-2:]) < max(psf.shape):
        raise ValueError(f"psf {tuple(psf.shape)} is larger than the image {tuple(image.shape[-2:])}")
    if model is None:
        model = known_psf_network()
    uses_bfloat16(precision)
    model = model.to(target)
    # One noise level per image, measured on the whole image (not per tile: tiles must agree).
    sigma = estimate_noise(image) if noise is None else torch.full((image.shape[0],), float(noise))
    function = lambda piece: deconvolve_with_net(piece, model, psf, sigma, precision=precision)  # noqa: E731
    # A tile needs the PSF's reach of context on each side on top of the network's own.
    overlap = max(tile_overlap, max(psf.shape) + 16)
    if tile is None:
        tile = auto_tile(image, bytes_per_output_pixel=_DECONV_BYTES_PER_OUTPUT_PIXEL, scale=1,
                         budget=_device_budget(target))
    if tile:
        tile = max(tile, 2 * max(psf.shape))
    return _run(image, _on_device(function, target), scale=1, tile=tile, overlap=overlap, on_tile=on_tile,
                into=into)
