"""Benchmark srdeblur's FFT deconvolution against scikit-image's on a ~4-megapixel RGB image.

Standalone (not run by CI)::

    python benchmarks/bench_classical.py [--size 2048] [--psf motion:21,30] [--iterations 30] [--json out.json]

The sharp image (scikit-image's ``astronaut``, CC0, upscaled to ``size x size``, or ``--image PATH``) is blurred
with the PSF, given Gaussian noise (``--noise``, default 1 %) and clipped to [0, 1]. Both libraries deconvolve
the same array: srdeblur pads and edge-tapers it itself (that time is counted), and scikit-image gets exactly
that padded array (:func:`srdeblur.classical.pad_for_deconvolution`, not timed for it), channel by channel
since its functions take 2-D images with a 2-D PSF, with the same iteration count / balance. Outputs are
cropped back and clipped to [0, 1] before PSNR (data range 1, all pixels and channels). The PSNR difference
is also given on the interior (``--margin`` pixels from each border left out): scikit-image convolves with
zero padding inside its loop, so its borders degrade differently from srdeblur's periodic (tapered) ones.

The last rows give the FFT floor: the time of the FFTs alone that any FFT deconvolution on the same padded
grid must do (one ``rfft2``/``irfft2`` pair measured on one plane, element-wise work counted as free, threads
as perfectly parallel), and so the largest speed-up over scikit-image that FFT deconvolution can reach here.

scikit-image has no threading option (its FFTs run on one core); srdeblur runs with ``--threads`` torch threads
(default 2) and once more with a single thread for a per-core comparison; a last row per method times
srdeblur's deconvolution alone on scikit-image's padded input (``pad=0``: no padding or taper of its own).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from skimage import data, restoration, transform

from srdeblur.classical import blur, pad_for_deconvolution, richardson_lucy, wiener
from srdeblur.kernels import parse_psf


def psnr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB of arrays in [0, 1]."""
    mse = float(np.mean((estimate.astype(np.float64) - reference.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def timed(function: Callable[[], np.ndarray], repeat: int = 1) -> tuple[np.ndarray, float, float]:
    """Result, and best wall-clock and CPU seconds (all threads of the process) over ``repeat`` calls.

    CPU time is the steadier measure on a machine shared with other jobs: it does not count waiting for a
    core.
    """
    best_wall = best_cpu = math.inf
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return result, best_wall, best_cpu


def load_ground_truth(path: str | None, size: int) -> np.ndarray:
    """(3, size, size) float32 in [0, 1]."""
    if path is None:
        rgb = data.astronaut()
    else:
        from PIL import Image

        rgb = np.asarray(Image.open(path).convert("RGB"))
    resized = transform.resize(rgb, (size, size), order=3, anti_aliasing=True)
    return np.clip(resized, 0, 1).astype(np.float32).transpose(2, 0, 1)


def skimage_per_channel(
    padded: np.ndarray, crop: tuple[slice, slice], deconvolve: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Run a 2-D scikit-image deconvolution on each channel of a (C, M, N) array, crop, clip to [0, 1]."""
    return np.stack([np.clip(deconvolve(channel)[crop], 0, 1) for channel in padded])


def fft_pair_seconds(shape: tuple[int, int], *, repeat: int = 5) -> float:
    """Best single-thread time of one ``rfft2`` plus one ``irfft2`` of a float32 plane of ``shape`` (torch/MKL)."""
    torch.set_num_threads(1)
    plane = torch.rand(shape)
    spectrum = torch.fft.rfft2(plane)
    best = math.inf
    for _ in range(repeat + 1):  # the first call plans the transform
        started = time.perf_counter()
        torch.fft.rfft2(plane)
        torch.fft.irfft2(spectrum, s=shape)
        best = min(best, time.perf_counter() - started)
    return best


def fft_floor(shape: tuple[int, int], *, planes: int, iterations: int, threads: int) -> dict[str, float]:
    """Lower bound on the time of any FFT deconvolution of ``planes`` planes padded to ``shape``.

    Richardson-Lucy needs, per plane, a forward and an inverse FFT for the re-blur and again for the
    correlation of the ratio: 2 pairs per iteration (srdeblur saves one pair on the first iteration);
    Wiener needs one pair per plane. Element-wise work and the padding are counted as free, and the threads
    as perfectly parallel, so no implementation on this grid can beat these times.
    """
    pair = fft_pair_seconds(shape)
    return {
        "fft_pair_seconds": pair,
        "Richardson-Lucy": pair * planes * (2 * iterations - 1) / threads,
        "Wiener": pair * planes / threads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="side of the square test image (default 2048: 4.2 MP)")
    parser.add_argument("--image", default=None, help="sharp image to use instead of skimage's astronaut")
    parser.add_argument("--psf", default="motion:21,30", help="PSF spec (srdeblur.kernels.parse_psf)")
    parser.add_argument("--noise", type=float, default=0.01, help="Gaussian noise sigma on [0, 1] data")
    parser.add_argument("--iterations", type=int, default=30, help="Richardson-Lucy iterations")
    parser.add_argument("--balance", type=float, default=0.01, help="Wiener regularisation weight")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for srdeblur")
    parser.add_argument("--repeat", type=int, default=1, help="time each method this many times, keep the best")
    parser.add_argument("--margin", type=int, default=64, help="border left out of the interior PSNR")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    psf = parse_psf(args.psf)
    psf_np = psf.numpy()
    truth = load_ground_truth(args.image, args.size)
    sharp = torch.from_numpy(truth)[None]
    generator = torch.Generator().manual_seed(args.seed)
    noisy = (blur(sharp, psf) + args.noise * torch.randn(sharp.shape, generator=generator)).clamp_(0, 1)

    padded_t, (top, left) = pad_for_deconvolution(noisy, psf)
    padded = padded_t[0].numpy()
    # What scikit-image computes in for an 8-bit photo (img_as_float / astype(float)): float64.
    padded64 = padded.astype(np.float64)
    crop = (slice(top, top + args.size), slice(left, left + args.size))

    interior = (slice(None), slice(args.margin, args.size - args.margin), slice(args.margin, args.size - args.margin))
    methods: dict[str, Callable[[], np.ndarray]] = {
        "Richardson-Lucy": (
            lambda: richardson_lucy(noisy, psf, iterations=args.iterations)[0].numpy(),
            lambda: skimage_per_channel(
                padded, crop, lambda c: restoration.richardson_lucy(c, psf_np, num_iter=args.iterations, clip=False)
            ),
            lambda: skimage_per_channel(
                padded64, crop, lambda c: restoration.richardson_lucy(c, psf_np, num_iter=args.iterations, clip=False)
            ),
        ),
        "Wiener": (
            lambda: wiener(noisy, psf, balance=args.balance)[0].numpy(),
            lambda: skimage_per_channel(
                padded, crop, lambda c: restoration.wiener(c, psf_np, args.balance, clip=False)
            ),
            lambda: skimage_per_channel(
                padded64, crop, lambda c: restoration.wiener(c, psf_np, args.balance, clip=False)
            ),
        ),
    }
    # The deconvolution alone, on the very array scikit-image gets (no padding or taper of ours counted).
    cores: dict[str, Callable[[], torch.Tensor]] = {
        "Richardson-Lucy": lambda: richardson_lucy(padded_t, psf, iterations=args.iterations, pad=0),
        "Wiener": lambda: wiener(padded_t, psf, balance=args.balance, pad=0),
    }
    # Warm-up on a small array: scikit-image imports scipy.signal lazily on first use.
    restoration.richardson_lucy(padded[0, :64, :64], psf_np, num_iter=1)
    restoration.wiener(padded[0, :64, :64], psf_np, args.balance)
    rows = []
    for name, (ours, theirs, theirs64) in methods.items():
        reference64, seconds64, cpu64 = timed(theirs64, args.repeat)
        rows.append(dict(method=f"skimage {name} (float64: its precision for 8-bit photos)", threads=1,
                         seconds=seconds64, speedup=math.nan, cpu_seconds=cpu64, cpu_speedup=math.nan,
                         psnr=psnr(reference64, truth), delta_psnr=math.nan, delta_psnr_interior=math.nan,
                         psnr_vs_skimage=math.nan))
        reference, reference_seconds, reference_cpu = timed(theirs, args.repeat)
        reference_psnr = psnr(reference, truth)
        reference_interior = psnr(reference[interior], truth[interior])
        rows.append(dict(method=f"skimage {name}", threads=1, seconds=reference_seconds, speedup=1.0,
                         cpu_seconds=reference_cpu, cpu_speedup=1.0,
                         psnr=reference_psnr, delta_psnr=0.0, delta_psnr_interior=0.0, psnr_vs_skimage=math.inf))
        for threads in sorted({args.threads, 1}, reverse=True):
            torch.set_num_threads(threads)
            ours()  # warm-up: first FFT plans and allocations
            result, seconds, cpu = timed(ours, args.repeat)
            rows.append(dict(method=f"srdeblur {name}", threads=threads, seconds=seconds,
                             speedup=reference_seconds / seconds, speedup_vs_float64=seconds64 / seconds, cpu_seconds=cpu, cpu_speedup=reference_cpu / cpu,
                             psnr=psnr(result, truth),
                             delta_psnr=psnr(result, truth) - reference_psnr,
                             delta_psnr_interior=psnr(result[interior], truth[interior]) - reference_interior,
                             psnr_vs_skimage=psnr(result, reference)))
        torch.set_num_threads(1)
        cores[name]()  # warm-up
        result, seconds, cpu = timed(lambda: cores[name]()[0].numpy()[(slice(None), *crop)], args.repeat)
        rows.append(dict(method=f"srdeblur {name}, skimage's padded input (pad=0)", threads=1, seconds=seconds,
                         speedup=reference_seconds / seconds, cpu_seconds=cpu, cpu_speedup=reference_cpu / cpu,
                         psnr=psnr(result, truth),
                         delta_psnr=psnr(result, truth) - reference_psnr,
                         delta_psnr_interior=psnr(result[interior], truth[interior]) - reference_interior,
                         psnr_vs_skimage=psnr(result, reference)))
        torch.set_num_threads(args.threads)

    height, width = padded.shape[-2:]
    floor = fft_floor((height, width), planes=padded.shape[0], iterations=args.iterations, threads=args.threads)
    torch.set_num_threads(args.threads)
    for name in ("Richardson-Lucy", "Wiener"):
        reference = next(r for r in rows if r["method"] == f"skimage {name}")
        reference64 = next(r for r in rows if r["method"].startswith(f"skimage {name} (float64"))
        rows.append(dict(method=f"FFT floor of {name} (FFTs only, {args.threads} ideal threads)",
                         threads=args.threads, seconds=floor[name], speedup=reference["seconds"] / floor[name],
                         speedup_vs_float64=reference64["seconds"] / floor[name], cpu_seconds=floor[name] * args.threads,
                         cpu_speedup=reference["cpu_seconds"] / (floor[name] * args.threads), psnr=math.nan,
                         delta_psnr=math.nan, delta_psnr_interior=math.nan, psnr_vs_skimage=math.nan))
    print(f"image {args.size}x{args.size} RGB ({args.size * args.size / 1e6:.1f} MP), PSF {args.psf} "
          f"{tuple(psf.shape)}, noise {args.noise}, padded to {height}x{width}, RL iterations {args.iterations}, "
          f"Wiener balance {args.balance}; blurred input PSNR {psnr(noisy[0].numpy(), truth):.2f} dB\n")
    print("| method | threads | seconds | speed-up vs skimage (float32) | speed-up vs skimage (float64) | CPU seconds | CPU speed-up | PSNR vs truth (dB) "
          f"| ΔPSNR vs skimage (dB) | ΔPSNR interior (dB, margin {args.margin}) | PSNR(ours, skimage) (dB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        vs64 = f"{row['speedup_vs_float64']:.1f}x" if "speedup_vs_float64" in row else ""
        print(f"| {row['method']} | {row['threads']} | {row['seconds']:.2f} | {row['speedup']:.1f}x | {vs64} "
              f"| {row['cpu_seconds']:.2f} | {row['cpu_speedup']:.1f}x | {row['psnr']:.2f} | {row['delta_psnr']:+.3f} "
              f"| {row['delta_psnr_interior']:+.3f} | {row['psnr_vs_skimage']:.1f} |")
    if args.json is not None:
        config = {key: value for key, value in vars(args).items() if key != "json"}
        config.update(padded_shape=[height, width], psf_shape=list(psf.shape), fft_pair_seconds=floor["fft_pair_seconds"],
                      blurred_psnr=psnr(noisy[0].numpy(), truth), torch_version=torch.__version__)
        finite_rows = [
            {key: (None if isinstance(value, float) and not math.isfinite(value) else value) for key, value in row.items()}
            for row in rows
        ]
        args.json.write_text(json.dumps({"config": config, "results": finite_rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
