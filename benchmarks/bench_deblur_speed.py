"""Seconds per megapixel of blind deblurring (networks, PSF estimation) beside Wiener's, measured in one process.

    python benchmarks/bench_deblur_speed.py [--photos 2] [--repeats 2] [WEIGHTS_FOLDER ...]

Each ``WEIGHTS_FOLDER`` holds an ``srndeblur`` (e.g. ``weights`` and ``weights/candidates``; default: the shipped
weights). Times ``srdeblur.inference.deblur`` on the first ``--photos`` SunHays80 photos, whole image (no tiles),
after one warm-up call per method; Wiener gets a 5x5 Gaussian PSF (its cost does not depend on the kernel).
``blind`` is the PSF estimate (on the centred 640 x 640 crop, so its cost hardly grows with the photo) plus 30
Richardson-Lucy iterations on the whole photo; ``auto`` (the default) is timed on the sharp photos (the blur
gate alone) and on the same photos shaken by Levin's kernel 1 with 1 % noise, as is the known-PSF network
(``--psf K --method net``) given that kernel.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from srdeblur.classical import blur
from srdeblur.degrade import add_gaussian_noise, quantize_8bit
from srdeblur.devices import keep_freed_memory
from srdeblur.evaluation import data_root, levin_kernels, resolve_dataset
from srdeblur.inference import deblur
from srdeblur.io import list_images, read_image
from srdeblur.kernels import gaussian_psf
from srdeblur.weights import load_model


def seconds_per_megapixel(run, photos: list[torch.Tensor], repeats: int) -> tuple[float, float]:
    """Mean and minimum over ``repeats`` x ``photos`` of the time of ``run(photo)`` per megapixel."""
    run(photos[0])
    times = []
    for _ in range(repeats):
        for photo in photos:
            started = time.perf_counter()
            run(photo)
            times.append((time.perf_counter() - started) / (photo.shape[-2] * photo.shape[-1] / 1e6))
    return sum(times) / len(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", type=Path, help="folders holding an srndeblur (default: the shipped one)")
    parser.add_argument("--photos", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    keep_freed_memory()  # as the commands do (srdeblur deblur / eval)
    _, folder = resolve_dataset("sun2013")
    photos = [read_image(path).pixels for path in sorted(list_images(folder))[: args.photos]]
    shake = levin_kernels(data_root() / "deblur" / "levin")[0][1]
    shaken = [quantize_8bit(add_gaussian_noise(blur(p, shake), 0.01, generator=torch.Generator().manual_seed(0)))
              for p in photos]
    runs = {}
    for weights in args.folders or [None]:
        model = load_model("srndeblur", folder=weights)
        runs[f"net ({weights or 'shipped'})"] = (lambda x, model=model: deblur(x, model=model, tile=0), photos)
    runs["blind"] = (lambda x: deblur(x, method="blind", iterations=30, tv_weight=0.002), photos)
    # The default: the blur gate, then (on a shaken photo) the estimate and Richardson-Lucy.
    runs["auto, the sharp photos"] = (lambda x: deblur(x, method="auto", iterations=30, tv_weight=0.002), photos)
    runs["auto, shaken (Levin kernel 1, 1 %)"] = (lambda x: deblur(x, method="auto", iterations=30, tv_weight=0.002),
                                                  shaken)
    psf = gaussian_psf(1.0, size=5)
    runs["wiener"] = (lambda x: deblur(x, method="wiener", psf=psf), photos)
    # The learned known-PSF network (deblur --psf K --method net) with the true shake, noise estimated.
    runs["net with a known PSF (usrdeconv)"] = (lambda x: deblur(x, method="net", psf=shake), shaken)
    megapixels = sum(p.shape[-2] * p.shape[-1] for p in photos) / len(photos) / 1e6
    print(f"{len(photos)} photos of {megapixels:.2f} MP on average, {torch.get_num_threads()} threads")
    for name, (run, inputs) in runs.items():
        mean, best = seconds_per_megapixel(run, inputs, args.repeats)
        print(f"{name}: {mean:.3f} s/MP (fastest {best:.3f})", flush=True)


if __name__ == "__main__":
    main()
