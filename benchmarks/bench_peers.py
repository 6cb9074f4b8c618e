"""Benchmark srdeblur side by side with other tools, in one process, and write a Markdown table and JSON.

Standalone (run by hand, not by CI)::

    python benchmarks/bench_peers.py [--sets set5 set14] [--scales 2 4] [--threads N] [--deblur-images 5]
                                     [--large] [--out benchmarks/results]

Four parts, each reported as a table in ``OUT/bench_peers.md`` (also printed) and ``OUT/bench_peers.json``:

1. **Super-resolution** (``sr``) on Set5 / Set14 at x2 / x4, the paper convention exactly as
   :func:`srdeblur.evaluation.sr_samples` does it: HR mod-cropped, LR by MATLAB-style bicubic quantised to
   8 bits, every method upsamples that same LR, outputs quantised to 8 bits, PSNR / SSIM on Y with ``scale``
   pixels shaved. Methods: srdeblur ``net`` (shipped ``lapsr`` weights) and ``bicubic``; OpenCV
   ``dnn_superres`` FSRCNN, FSRCNN-small, ESPCN and LapSRN (``opencv-contrib-python-headless``, not a project
   dependency: skipped with an install hint when ``cv2.dnn_superres`` is missing). Grayscale images are fed
   to OpenCV as a 3-channel replicate.
2. **Deblurring** (``deblur``) on the first ``--deblur-images`` photos of Sun et al. 2013 x the first
   ``--deblur-kernels`` Levin kernels, noise sigma 0.01 (:func:`srdeblur.evaluation.synthetic_blur_samples`):
   srdeblur ``net`` (``srndeblur`` weights), ``wiener`` and ``rl`` with the true kernel, and scikit-image's
   ``wiener`` / ``richardson_lucy`` with the same kernel, balance and iterations, channel by channel.
   scikit-image does not pad: it gets exactly the reflect-padded, edge-tapered array srdeblur deconvolves
   (:func:`srdeblur.classical.pad_for_deconvolution`, timed with it as srdeblur's own padding is timed with
   srdeblur) and its result is cropped back.
3. **Network throughput** (``throughput``): achieved GFLOP/s of the SR network at x4 on a 256 x 256 input
   (FLOPs of every Conv2d / ConvTranspose2d counted analytically with forward hooks; biases, activations and
   additions not counted) beside the machine's peak measured on a 128 -> 128 channel 3 x 3 convolution of
   256 x 256 (channels_last, inference mode), plus parameters and GFLOPs of both networks.
4. **Large image** (``--large`` only; slow): peak resident memory and wall time of
   ``python -m srdeblur upscale BIG.png --scale 4 -o OUT.png`` on a synthetic 4000 x 3000 photo tiled from
   ``samples/``, measured with ``/usr/bin/time -v`` in a subprocess (``OMP_NUM_THREADS=--threads``).

Timing: ``time.perf_counter`` around the method's own call only (srdeblur: ``inference.upscale`` /
``inference.deblur`` on a float tensor; OpenCV: ``sr.upsample`` on a uint8 BGR array; scikit-image: the
padding and its functions on the float planes, per channel), after one untimed warm-up call per method on
the first image. Conversions between tensors and arrays, quantisation and metrics are not timed. ``torch`` and
``cv2`` both get ``--threads`` threads (default: ``os.cpu_count()``); scikit-image's FFTs use one thread
whatever ``--threads`` says. The machine's load average is recorded: on a shared machine, rerun when it is high.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import skimage
import torch
from skimage import restoration
from torch import nn

from srdeblur import inference
from srdeblur.inference import bfloat16_is_native
from srdeblur.classical import pad_for_deconvolution
from srdeblur.evaluation import (
    DeblurSettings,
    Sample,
    data_root,
    levin_kernels,
    resolve_dataset,
    samples_dir,
    sr_samples,
    synthetic_blur_samples,
)
from srdeblur.io import list_images, read_image, to_array, to_tensor, write_image
from srdeblur.degrade import quantize_8bit
from srdeblur.metrics import align_shift, psnr, ssim
from srdeblur.nets import DeblurConfig, LapSR, SRConfig, SRNDeblur, count_parameters
from srdeblur.resize import imresize
from srdeblur.weights import WeightsError, load_model, read_manifest

PARTS = ("sr", "deblur", "throughput")
INSTALL_HINT = (
    "cv2.dnn_superres is missing: it comes with opencv-contrib-python-headless, which is not a project "
    "dependency. Install it in a separate venv and run this script there:\n"
    "    python -m venv /tmp/bench && /tmp/bench/bin/pip install -e . opencv-contrib-python-headless\n"
    "    /tmp/bench/bin/python benchmarks/bench_peers.py"
)
# OpenCV dnn_superres models: table label, the name setModel() expects, file name pattern.
OPENCV_MODELS = (
    ("FSRCNN", "fsrcnn", "FSRCNN_x{scale}.pb"),
    ("FSRCNN-small", "fsrcnn", "FSRCNN-small_x{scale}.pb"),
    ("ESPCN", "espcn", "ESPCN_x{scale}.pb"),
    ("LapSRN", "lapsrn", "LapSRN_x{scale}.pb"),
)
BICUBIC = "srdeblur bicubic"


# ------------------------------------------------------------------------------------------------ methods


@dataclass
class Method:
    """A restoration method split so that only its own work is timed.

    ``prepare(degraded) -> input`` and ``finish(raw) -> (1, C, H, W) float tensor in [0, 1]`` are untimed
    conversions; ``call(input) -> raw`` is the timed call.
    """

    name: str
    call: Callable[[Any], Any]
    prepare: Callable[[Any], Any] = lambda x: x
    finish: Callable[[Any], torch.Tensor] = lambda x: x
    reference: str | None = None  # the method its time is compared with


def run_timed(method: Method, source: Any) -> tuple[torch.Tensor, float]:
    """``(output tensor, seconds of method.call)`` for one input."""
    prepared = method.prepare(source)
    started = time.perf_counter()
    raw = method.call(prepared)
    seconds = time.perf_counter() - started
    return method.finish(raw), seconds


def tensor_to_bgr(image: torch.Tensor) -> np.ndarray:
    """(1, 1|3, H, W) float tensor in [0, 1] -> (H, W, 3) uint8 BGR; gray is replicated to 3 channels."""
    rgb = to_array(image.expand(-1, 3, -1, -1))
    return np.ascontiguousarray(rgb[..., ::-1])


def bgr_to_tensor(bgr: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 BGR -> (1, 3, H, W) float32 RGB tensor in [0, 1]."""
    return to_tensor(np.ascontiguousarray(bgr[..., ::-1]))


def try_load_model(name: str, notes: list[str]) -> nn.Module | None:
    """The shipped model ``name``, or None with a note when its weights are missing or unusable."""
    try:
        return load_model(name)
    except WeightsError as error:
        notes.append(f"srdeblur net skipped where it needs weights {name!r}: {error}")
        return None


def has_dnn_superres() -> bool:
    return hasattr(cv2, "dnn_superres")


def opencv_sr_methods(scale: int, peers_dir: Path, notes: list[str]) -> list[Method]:
    """OpenCV dnn_superres methods available for ``scale`` (a note for each missing model file)."""
    methods = []
    for label, model_name, pattern in OPENCV_MODELS:
        path = peers_dir / pattern.format(scale=scale)
        if not path.is_file():
            notes.append(f"OpenCV {label} x{scale} skipped: {path} not found")
            continue
        upsampler = cv2.dnn_superres.DnnSuperResImpl_create()
        upsampler.readModel(str(path))
        upsampler.setModel(model_name, scale)
        methods.append(Method(f"OpenCV {label}", upsampler.upsample, prepare=tensor_to_bgr, finish=bgr_to_tensor))
    return methods


def srdeblur_sr_methods(scale: int, model: nn.Module | None) -> list[Method]:
    """srdeblur's bicubic and, when the weights are there, its network."""
    methods = [Method(BICUBIC, lambda lr: inference.upscale(lr, scale=scale, method="bicubic"))]
    if model is not None:
        methods.append(
            Method("srdeblur net", lambda lr: inference.upscale(lr, scale=scale, method="net", model=model))
        )
    return methods


# ------------------------------------------------------------------------------------------ measurement


def y_metrics(output: torch.Tensor, ground_truth: torch.Tensor, *, shave: int) -> tuple[float, float]:
    """Paper-convention Y-PSNR (dB) and SSIM: both quantised to 8 bits, Y of rgb2ycbcr, ``shave`` px off
    each border. A gray ground truth is compared as R = G = B with an RGB output (OpenCV's)."""
    if output.shape[1] != ground_truth.shape[1]:
        ground_truth = ground_truth.expand(-1, output.shape[1], -1, -1)
    return float(psnr(output, ground_truth, shave=shave)[0]), float(ssim(output, ground_truth, shave=shave)[0])


def measure_method(
    method: Method, samples: list[Sample], *, shave: int, source: Callable[[Sample], Any] = lambda s: s.degraded,
    settings: DeblurSettings | None = None,
) -> list[dict]:
    """One row per sample (Y-PSNR, SSIM, seconds, output megapixels), after a warm-up on the first sample.

    With deblurring ``settings``, each output is scored at its best shift (``settings.alignment``), as
    ``srdeblur eval`` does.
    """
    run_timed(method, source(samples[0]))
    rows = []
    for sample in samples:
        output, seconds = run_timed(method, source(sample))
        scored, truth = output, sample.ground_truth
        if settings is not None:
            alignment = settings.alignment(*truth.shape[-2:])
            scored, truth = align_shift(quantize_8bit(output), truth.expand_as(output), **alignment)
        value_psnr, value_ssim = y_metrics(scored, truth, shave=shave)
        rows.append({
            "image": sample.name, "psnr": value_psnr, "ssim": value_ssim, "seconds": seconds,
            "megapixels": output.shape[-2] * output.shape[-1] / 1e6,
        })
    return rows


def summarize(method: str, rows: list[dict], **labels: Any) -> dict:
    """Mean PSNR / SSIM / seconds per image and output megapixels per second of one method's rows."""
    seconds = sum(row["seconds"] for row in rows)
    return {
        **labels, "method": method, "images": len(rows),
        "psnr": sum(row["psnr"] for row in rows) / len(rows),
        "ssim": sum(row["ssim"] for row in rows) / len(rows),
        "seconds_per_image": seconds / len(rows),
        "megapixels_per_second": sum(row["megapixels"] for row in rows) / seconds if seconds > 0 else math.inf,
        "per_image": rows,
    }


def add_time_ratios(summaries: list[dict], reference_of: Callable[[dict], str | None]) -> None:
    """Set ``time_ratio`` = seconds per image / the reference method's (None if it has no reference)."""
    by_method = {summary["method"]: summary for summary in summaries}
    for summary in summaries:
        reference = by_method.get(reference_of(summary) or "")
        summary["time_ratio"] = (
            summary["seconds_per_image"] / reference["seconds_per_image"] if reference else None
        )


# -------------------------------------------------------------------------------------- part 1: SR


def benchmark_sr(args: argparse.Namespace, notes: list[str]) -> list[dict]:
    """Summary rows of every SR method on every (set, scale)."""
    model = try_load_model("lapsr", notes)
    use_peers = has_dnn_superres()
    if not use_peers:
        notes.append(INSTALL_HINT)
        print(INSTALL_HINT, file=sys.stderr)
    results = []
    for set_name in args.sets:
        _, folder = resolve_dataset(set_name)
        for scale in args.scales:
            samples = list(sr_samples(folder, scale=scale, limit=args.limit))
            methods = srdeblur_sr_methods(scale, model)
            if use_peers:
                methods += opencv_sr_methods(scale, args.peers_dir, notes)
            summaries = []
            for method in methods:
                log(f"SR {set_name} x{scale}: {method.name}")
                rows = measure_method(method, samples, shave=scale)
                summaries.append(summarize(method.name, rows, set=set_name, scale=scale))
            add_time_ratios(summaries, lambda summary: BICUBIC)
            results += summaries
    return results


# ---------------------------------------------------------------------------------- part 2: deblur


def skimage_deconvolve(name: str, deconvolve: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Method:
    """A scikit-image 2-D deconvolution applied per channel to srdeblur's padded input, cropped, clipped.

    scikit-image does not pad (it deconvolves periodically, so borders would wrap around): it gets the very
    reflect-padded, edge-tapered array srdeblur deconvolves. Making that array is timed with it, as
    srdeblur's own padding is timed with srdeblur, so the two times cover the same work.
    """

    def call(sample: Sample) -> np.ndarray:
        padded, (top, left) = pad_for_deconvolution(sample.degraded, sample.psf)
        height, width = sample.degraded.shape[-2:]
        crop = (slice(top, top + height), slice(left, left + width))
        psf = sample.psf.numpy()
        return np.stack([np.clip(deconvolve(plane, psf)[crop], 0, 1) for plane in padded[0].numpy()], axis=-1)

    return Method(name, call, finish=to_tensor, reference=name)


def deblur_methods(settings: DeblurSettings, model: nn.Module | None) -> list[Method]:
    """srdeblur's and scikit-image's deconvolutions (true kernel), and srdeblur's network if loaded."""

    def srdeblur_classical(name: str, **options: Any) -> Method:
        return Method(
            f"srdeblur {name}", lambda s: inference.deblur(s.degraded, method=name, psf=s.psf, **options),
            reference=f"skimage {name}",
        )

    methods = [
        Method("input (blurred, noisy)", lambda s: s.degraded),
        srdeblur_classical("wiener", balance=settings.wiener_balance),
        skimage_deconvolve(
            "skimage wiener", lambda plane, psf: restoration.wiener(plane, psf, settings.wiener_balance, clip=False)
        ),
        # Plain RL side by side with scikit-image's (same algorithm); the TV-regularised variant srdeblur's
        # eval uses is listed after it, with no scikit-image counterpart.
        srdeblur_classical("rl", iterations=settings.rl_iterations, tv_weight=0.0),
        skimage_deconvolve(
            "skimage rl",
            lambda plane, psf: restoration.richardson_lucy(plane, psf, num_iter=settings.rl_iterations, clip=False),
        ),
        Method(f"srdeblur rl + tv {settings.rl_tv_weight:g}", lambda s: inference.deblur(
            s.degraded, method="rl", psf=s.psf, iterations=settings.rl_iterations, tv_weight=settings.rl_tv_weight)),
    ]
    if model is not None:
        methods.append(Method("srdeblur net", lambda s: inference.deblur(s.degraded, method="net", model=model)))
    return methods


def benchmark_deblur(args: argparse.Namespace, notes: list[str]) -> tuple[list[dict], dict]:
    """Summary rows of every deblurring method, and the settings used."""
    settings = DeblurSettings()
    model = try_load_model("srndeblur", notes)
    _, folder = resolve_dataset("sun2013")
    _, levin_folder = resolve_dataset("levin")
    kernels = levin_kernels(levin_folder)[: args.deblur_kernels]
    samples = list(
        synthetic_blur_samples(folder, kernels, noise_sigma=settings.noise_sigma, limit=args.deblur_images)
    )
    summaries = []
    for method in deblur_methods(settings, model):
        log(f"deblur: {method.name}")
        rows = measure_method(method, samples, shave=0, source=lambda sample: sample, settings=settings)
        summaries.append(summarize(method.name, rows, reference=method.reference))
    add_time_ratios(summaries, lambda summary: summary["reference"])
    add_psnr_differences(summaries)
    config = {
        "images": args.deblur_images, "kernels": [name for name, _ in kernels], "samples": len(samples),
        "noise_sigma": settings.noise_sigma, "wiener_balance": settings.wiener_balance,
        "rl_iterations": settings.rl_iterations, "rl_tv_weight": settings.rl_tv_weight,
    }
    return summaries, config


def add_psnr_differences(summaries: list[dict]) -> None:
    """Set ``delta_psnr`` = mean Y-PSNR minus the reference method's (None without a reference)."""
    by_method = {summary["method"]: summary for summary in summaries}
    for summary in summaries:
        reference = by_method.get(summary.get("reference") or "")
        summary["delta_psnr"] = summary["psnr"] - reference["psnr"] if reference else None


# ------------------------------------------------------------------------------ part 3: throughput


def conv_flops(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    """Multiply-add FLOPs (2 per MAC) of one Conv2d / ConvTranspose2d call, biases not counted."""
    kh, kw = module.kernel_size
    per_position = 2 * module.in_channels * module.out_channels * kh * kw // module.groups
    if isinstance(module, nn.ConvTranspose2d):
        # Every input pixel scatters a kh x kw x Cout patch.
        return per_position * inputs[0].shape[-2] * inputs[0].shape[-1] * inputs[0].shape[0]
    return per_position * output.shape[-2] * output.shape[-1] * output.shape[0]


def count_flops(forward: Callable[[], Any], model: nn.Module) -> int:
    """FLOPs of the convolutions run by ``forward()``, counted with forward hooks on ``model``'s modules."""
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        total += conv_flops(module, inputs, output)

    handles = [
        module.register_forward_hook(hook)
        for module in model.modules()
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d))
    ]
    try:
        forward()
    finally:
        for handle in handles:
            handle.remove()
    return total


def best_seconds(forward: Callable[[], Any], repeat: int) -> float:
    """Best wall-clock seconds of ``forward()`` over ``repeat`` calls, after one warm-up call."""
    forward()
    best = math.inf
    for _ in range(repeat):
        started = time.perf_counter()
        forward()
        best = min(best, time.perf_counter() - started)
    return best


def network_or_default(name: str, network: type, config_class: type, notes: list[str]) -> nn.Module:
    """The shipped network ``name``, or one of the same architecture with random weights (FLOPs and speed
    do not depend on the weights) built from its manifest's config, else the default config."""
    try:
        return load_model(name)
    except WeightsError:
        pass
    try:
        config = config_class(**read_manifest(name)["config"])
        source = "its manifest's config"
    except (WeightsError, KeyError, TypeError):
        config = config_class()
        source = "the default config"
    notes.append(f"throughput: {name} weights unavailable; random weights with {source} ({config})")
    return network(config).to(memory_format=torch.channels_last).eval()


def random_input(channels: int, size: int, *, seed: int = 0) -> torch.Tensor:
    """(1, channels, size, size) float32 in [0, 1), channels_last."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, channels, size, size, generator=generator).contiguous(memory_format=torch.channels_last)


def peak_convolution(repeat: int, *, bfloat16: bool = False) -> dict:
    """GFLOP/s of a 128 -> 128 channel 3 x 3 convolution on 256 x 256 (channels_last, inference mode), in
    float32 or under bfloat16 autocast."""
    layer = nn.Conv2d(128, 128, 3, padding=1).to(memory_format=torch.channels_last).eval()
    x = random_input(128, 256)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
        flops = count_flops(lambda: layer(x), layer)
        seconds = best_seconds(lambda: layer(x), repeat)
    return {"layer": f"Conv2d 128->128 3x3 on 256x256, {'bfloat16' if bfloat16 else 'float32'}",
            "gflop": flops / 1e9, "seconds": seconds, "gflop_per_second": flops / 1e9 / seconds}


def benchmark_throughput(args: argparse.Namespace, notes: list[str]) -> dict:
    """SR network GFLOP/s at x4 on 256 x 256 vs the measured convolution peak; sizes of both networks."""
    sr_net = network_or_default("lapsr", LapSR, SRConfig, notes)
    lr = random_input(3, 256)
    levels = LapSR.levels_for_scale(4)
    with torch.inference_mode():
        sr_flops = count_flops(lambda: sr_net(lr, levels), sr_net)
        sr_seconds = best_seconds(lambda: sr_net(lr, levels), args.repeat)
    peak = peak_convolution(args.repeat)
    # What srdeblur.inference runs by default where the CPU has native bfloat16 (precision="auto"): the
    # hidden layers in bfloat16, measured against a bfloat16 convolution's peak.
    mixed = None
    if bfloat16_is_native():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            mixed_seconds = best_seconds(lambda: sr_net(lr, levels), args.repeat)
        peak_bf16 = peak_convolution(args.repeat, bfloat16=True)
        mixed = {"seconds": mixed_seconds, "gflop_per_second": sr_flops / 1e9 / mixed_seconds,
                 "peak": peak_bf16, "fraction_of_peak": sr_flops / 1e9 / mixed_seconds / peak_bf16["gflop_per_second"],
                 "speedup_vs_float32": sr_seconds / mixed_seconds}
    deblur_net = network_or_default("srndeblur", SRNDeblur, DeblurConfig, notes)
    blurred = random_input(3, 256)  # a multiple of the network's size multiple; FLOPs scale with the area
    with torch.inference_mode():
        deblur_flops = count_flops(lambda: deblur_net(blurred), deblur_net)
    sr_rate = sr_flops / 1e9 / sr_seconds
    return {
        "sr_net": {
            "parameters": count_parameters(sr_net), "input": "1x3x256x256, x4 (2 pyramid levels)",
            "gflop": sr_flops / 1e9, "seconds": sr_seconds, "gflop_per_second": sr_rate,
            "fraction_of_peak": sr_rate / peak["gflop_per_second"],
        },
        "peak": peak,
        "sr_net_bfloat16": mixed,
        "deblur_net": {
            "parameters": count_parameters(deblur_net),
            "gflop_per_megapixel": deblur_flops / 1e9 / (blurred.shape[-2] * blurred.shape[-1] / 1e6),
        },
        "repeat": args.repeat,
    }


# ------------------------------------------------------------------------------ part 4: large image


def centre_crop_to_aspect(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The largest centred crop of ``image`` with aspect ratio ``width / height``."""
    h, w = image.shape[-2:]
    crop_h, crop_w = min(h, round(w * height / width)), min(w, round(h * width / height))
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    return image[..., top : top + crop_h, left : left + crop_w]


def make_large_photo(path: Path, *, width: int, height: int, columns: int = 4, rows: int = 3) -> None:
    """Write a ``width x height`` RGB PNG: a ``columns x rows`` grid of the sample photos, upscaled."""
    photos = [read_image(p).pixels.expand(-1, 3, -1, -1) for p in list_images(samples_dir())]
    cell_h, cell_w = height // rows, width // columns
    grid_rows = []
    for row in range(rows):
        cells = []
        for column in range(columns):
            photo = photos[(row * columns + column) % len(photos)]
            cell_width = width - cell_w * (columns - 1) if column == columns - 1 else cell_w
            cell_height = height - cell_h * (rows - 1) if row == rows - 1 else cell_h
            cell = centre_crop_to_aspect(photo, cell_height, cell_width)
            cells.append(imresize(cell, size=(cell_height, cell_width)).clamp(0, 1))
        grid_rows.append(torch.cat(cells, dim=-1))
    write_image(path, torch.cat(grid_rows, dim=-2))


def parse_time_v(report: str) -> dict:
    """Peak RSS (MiB), wall, user and system seconds from GNU ``/usr/bin/time -v`` output."""
    def field(label: str) -> str:
        match = re.search(rf"^\s*{re.escape(label)}.*?:\s*(\S+)\s*$", report, re.MULTILINE)
        if not match:
            raise ValueError(f"'{label}' not in /usr/bin/time output")
        return match.group(1)

    wall = 0.0
    for part in field("Elapsed (wall clock) time").split(":"):
        wall = wall * 60 + float(part)
    return {
        "max_rss_mib": int(field("Maximum resident set size")) / 1024, "wall_seconds": wall,
        "user_seconds": float(field("User time")), "system_seconds": float(field("System time")),
    }


def run_cli_upscale(image: Path, output: Path, *, method: str, threads: int) -> dict:
    """Run ``python -m srdeblur upscale`` under ``/usr/bin/time -v``; its measurements or its error."""
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "srdeblur", "upscale", str(image), "--scale", "4",
               "--method", method, "-o", str(output), "--quiet"]
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    finished = subprocess.run(command, capture_output=True, text=True, env=environment)
    result: dict[str, Any] = {
        "method": method, "command": " ".join(command[2:]), "returncode": finished.returncode,
        "short_command": f"srdeblur upscale {image.name} --scale 4 --method {method} -o {output.name}",
    }
    try:
        result.update(parse_time_v(finished.stderr))
    except ValueError as error:
        result["error"] = str(error)
    if finished.returncode != 0:
        lines = [line for line in finished.stderr.splitlines() if line.strip() and not line.startswith("\t")]
        result["error"] = lines[-1] if lines else f"exit code {finished.returncode}"
    return result


def benchmark_large(args: argparse.Namespace, notes: list[str]) -> list[dict]:
    """Peak memory and wall time of the CLI's x4 upscale of a large photo (net if its weights exist, and
    bicubic for reference), each in its own subprocess."""
    width, height = args.large_size
    methods = ["net", "bicubic"]
    try:
        read_manifest("lapsr")
    except WeightsError as error:
        methods.remove("net")
        notes.append(f"large image: net skipped ({error})")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_peers_") as folder:
        big = Path(folder) / "big.png"
        log(f"large: writing a {width}x{height} photo")
        make_large_photo(big, width=width, height=height)
        for method in methods:
            log(f"large: srdeblur upscale --scale 4 --method {method}")
            output = Path(folder) / f"out_{method}.png"
            results.append({"input": f"{width}x{height}", **run_cli_upscale(big, output, method=method,
                                                                           threads=args.threads)})
            output.unlink(missing_ok=True)  # hundreds of MB at full size
    return results


# ------------------------------------------------------------------------------------------ reporting


def markdown_table(headers: list[str], rows: list[list[str]], *, left: int = 1) -> str:
    """A GitHub Markdown table; the first ``left`` columns left-aligned, the others (numbers) right-aligned."""
    align = ["---" if i < left else "---:" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def ratio_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def sr_section(rows: list[dict]) -> str:
    headers = ["method", "scale", "set", "images", "Y-PSNR (dB)", "SSIM", "s / image", "MP/s (output)",
               "time / srdeblur bicubic"]
    body = [[r["method"], f"x{r['scale']}", r["set"], str(r["images"]), f"{r['psnr']:.2f}", f"{r['ssim']:.4f}",
             f"{r['seconds_per_image']:.4f}", f"{r['megapixels_per_second']:.2f}", ratio_text(r["time_ratio"])]
            for r in rows]
    return "## Super-resolution\n\n" + markdown_table(headers, body, left=3)


def deblur_section(rows: list[dict], config: dict) -> str:
    headers = ["method", "images", "Y-PSNR (dB)", "SSIM", "s / image", "time / skimage's same method",
               "Δ Y-PSNR vs skimage (dB)"]
    body = [[r["method"], str(r["images"]), f"{r['psnr']:.2f}", f"{r['ssim']:.4f}",
             "—" if r["method"].startswith("input") else f"{r['seconds_per_image']:.3f}", ratio_text(r["time_ratio"]),
             "—" if r["delta_psnr"] is None else f"{r['delta_psnr']:+.3f}"]
            for r in rows]
    intro = (f"Sun et al. 2013, first {config['images']} photos x kernels {', '.join(config['kernels'])}, "
             f"noise {config['noise_sigma']:g}; Wiener balance {config['wiener_balance']:g}, "
             f"RL {config['rl_iterations']} iterations; scikit-image runs per channel on srdeblur's padded input "
             "(that padding counted in its time, as srdeblur's own is); every output, the input included, scored "
             "at its best shift (at most 5 px, quarter-pixel steps, 15 px shaved), as `srdeblur eval` does.")
    return "## Deblurring\n\n" + intro + "\n\n" + markdown_table(headers, body)


def throughput_section(result: dict) -> str:
    sr, peak, deblur = result["sr_net"], result["peak"], result["deblur_net"]
    return "\n".join([
        "## Network throughput", "",
        f"- SR net: {sr['parameters']:,} parameters; {sr['gflop']:.2f} GFLOP for x4 of a 256x256 input; "
        f"{sr['seconds'] * 1e3:.1f} ms -> **{sr['gflop_per_second']:.1f} GFLOP/s**",
        f"- peak ({peak['layer']}, channels_last): {peak['gflop']:.2f} GFLOP in {peak['seconds'] * 1e3:.1f} ms "
        f"-> **{peak['gflop_per_second']:.1f} GFLOP/s**",
        f"- SR net / peak: **{sr['fraction_of_peak']:.0%}**",
        *([] if result.get("sr_net_bfloat16") is None else [
            f"- SR net as `srdeblur upscale` runs it on this CPU (bfloat16 hidden layers, precision auto): "
            f"{result['sr_net_bfloat16']['seconds'] * 1e3:.1f} ms -> **{result['sr_net_bfloat16']['gflop_per_second']:.1f} "
            f"GFLOP/s** ({result['sr_net_bfloat16']['speedup_vs_float32']:.2f}x float32), against a bfloat16 "
            f"convolution's {result['sr_net_bfloat16']['peak']['gflop_per_second']:.1f} GFLOP/s: "
            f"**{result['sr_net_bfloat16']['fraction_of_peak']:.0%}** of that peak"]),
        f"- deblur net: {deblur['parameters']:,} parameters; {deblur['gflop_per_megapixel']:.1f} GFLOP per megapixel",
        f"- best of {result['repeat']} calls after a warm-up; FLOPs = 2 x MACs of the convolutions only",
    ])


def large_section(rows: list[dict]) -> str:
    headers = ["command", "input", "peak RSS (MiB)", "wall (s)", "user (s)", "system (s)", "status"]
    body = [[f"`{r['short_command']}`", r["input"], f"{r.get('max_rss_mib', math.nan):.0f}",
             f"{r.get('wall_seconds', math.nan):.1f}", f"{r.get('user_seconds', math.nan):.1f}",
             f"{r.get('system_seconds', math.nan):.1f}", r.get("error", "ok")] for r in rows]
    return "## Large image (separate processes, /usr/bin/time -v)\n\n" + markdown_table(headers, body, left=2)


def environment(args: argparse.Namespace) -> dict:
    """What the numbers depend on: versions, threads, CPU, load."""
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "torch": torch.__version__, "opencv": cv2.__version__,
        "opencv_dnn_superres": has_dnn_superres(), "scikit_image": skimage.__version__,
        "threads": args.threads, "cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
        "load_average_start": list(os.getloadavg()),
    }


def render_markdown(report: dict) -> str:
    env = report["environment"]
    parts = [
        "# srdeblur vs peers",
        f"{env['date']}; torch {env['torch']}, OpenCV {env['opencv']} (dnn_superres: {env['opencv_dnn_superres']}), "
        f"scikit-image {env['scikit_image']}; {env['threads']} threads of {env['cpu_count']} CPUs; "
        f"load average {env['load_average_start'][0]:.2f} at start, {env['load_average_end'][0]:.2f} at end.",
    ]
    if "sr" in report:
        parts.append(sr_section(report["sr"]))
    if "deblur" in report:
        parts.append(deblur_section(report["deblur"], report["deblur_config"]))
    if "throughput" in report:
        parts.append(throughput_section(report["throughput"]))
    if "large" in report:
        parts.append(large_section(report["large"]))
    if report["notes"]:
        parts.append("## Notes\n\n" + "\n".join(f"- {note}" for note in report["notes"]))
    return "\n\n".join(parts) + "\n"


def json_safe(value: Any) -> Any:
    """Replace non-finite floats (not valid JSON) by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    return value


# ----------------------------------------------------------------------------------------------- main


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["set5", "set14"], help="SR datasets (default: set5 set14)")
    parser.add_argument("--scales", nargs="+", type=int, default=[2, 4], help="SR scales (default: 2 4)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of each SR set")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch and OpenCV threads")
    parser.add_argument("--deblur-images", type=int, default=5, help="Sun et al. photos for deblurring")
    parser.add_argument("--deblur-kernels", type=int, default=8, help="first K of Levin's 8 kernels")
    parser.add_argument("--parts", nargs="*", choices=PARTS, default=list(PARTS),
                        help="which parts to run (default: all; none: only --large)")
    parser.add_argument("--repeat", type=int, default=3, help="timed calls per throughput measurement")
    parser.add_argument("--large", action="store_true", help="also measure peak memory on a large image (slow)")
    parser.add_argument("--large-size", type=parse_size, default=(4000, 3000), metavar="WxH",
                        help="size of the large image (default 4000x3000)")
    parser.add_argument("--peers-dir", type=Path, default=data_root().parent / "peers" / "opencv-dnn-superres",
                        help="folder of OpenCV's dnn_superres .pb models")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results",
                        help="folder for bench_peers.md and bench_peers.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    notes: list[str] = []
    report: dict[str, Any] = {"environment": environment(args), "arguments": {
        key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}}
    if "sr" in args.parts:
        report["sr"] = benchmark_sr(args, notes)
    if "deblur" in args.parts and args.deblur_images > 0:
        report["deblur"], report["deblur_config"] = benchmark_deblur(args, notes)
    if "throughput" in args.parts:
        report["throughput"] = benchmark_throughput(args, notes)
    if args.large:
        report["large"] = benchmark_large(args, notes)
    report["environment"]["load_average_end"] = list(os.getloadavg())
    report["notes"] = list(dict.fromkeys(notes))  # the same skip is noted once per set and scale
    markdown = render_markdown(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_peers.md").write_text(markdown)
    (args.out / "bench_peers.json").write_text(json.dumps(json_safe(report), indent=2) + "\n")
    print(markdown)
    log(f"wrote {args.out / 'bench_peers.md'} and {args.out / 'bench_peers.json'}")


if __name__ == "__main__":
    main()
