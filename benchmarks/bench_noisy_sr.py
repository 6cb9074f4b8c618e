"""SR of noisy PNGs: bicubic LR plus white Gaussian noise and nothing else (no JPEG, no blur).

Standalone (run by hand, not by CI)::

    python benchmarks/bench_noisy_sr.py [--sets bsd68 set14] [--scales 4 2] [--sigmas 5 10] [WEIGHTS_FOLDER ...]

The realistic presets rarely leave noise without JPEG after it, so this is the case they measure least. Each
HR image (paper conventions: mod-crop, MATLAB bicubic, 8-bit LR) gets noise of sigma ``--sigmas`` (on 0..255,
seeded per image) and is upscaled by bicubic, the default (``upscale``'s choice by ``srgate`` among the weights
folder's, ``SRDEBLUR_WEIGHTS``), the shipped ``lapsr`` and every ``lapsr-real`` of the given weights folders
(default: the shipped one). Y-PSNR with ``scale`` pixels shaved, mean per set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from srdeblur import inference
from srdeblur.degrade import add_gaussian_noise, bicubic_downscale, degradation_generator, mod_crop, quantize_8bit
from srdeblur.evaluation import resolve_dataset
from srdeblur.io import list_images, read_image
from srdeblur.metrics import psnr
from srdeblur.weights import load_model

NOISE_SEED = 2028


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="*", type=Path)
    parser.add_argument("--sets", nargs="+", default=["bsd68", "set14"])
    parser.add_argument("--scales", nargs="+", type=int, default=[4, 2])
    parser.add_argument("--sigmas", nargs="+", type=float, default=[5.0, 10.0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = {"lapsr": inference.shipped_model("lapsr")}
    for folder in args.folders or [None]:
        methods[f"lapsr-real ({folder or 'shipped'})"] = load_model("lapsr-real", folder=folder)
    for name in args.sets:
        _, folder = resolve_dataset(name)
        paths = sorted(list_images(folder))
        for scale in args.scales:
            for sigma in args.sigmas:
                scores: dict[str, list[float]] = {"bicubic": [], "default": [], **{m: [] for m in methods}}
                for index, path in enumerate(paths):
                    hr = mod_crop(read_image(path).pixels, scale)
                    clean = bicubic_downscale(hr, scale, quantize=False)
                    generator = degradation_generator(NOISE_SEED, index)
                    lr = quantize_8bit(add_gaussian_noise(clean, sigma / 255, generator=generator))
                    outputs = {"bicubic": inference.upscale(lr, scale=scale, method="bicubic"),
                               "default": inference.upscale(lr, scale=scale, method="net")}
                    for method, model in methods.items():
                        outputs[method] = inference.upscale(lr, scale=scale, method="net", model=model)
                    for method, output in outputs.items():
                        scores[method].append(float(psnr(output, hr, shave=scale)))
                line = ", ".join(f"{m} {sum(v) / len(v):.2f}" for m, v in scores.items())
                print(f"{name} x{scale} sigma {sigma:g}: {line}", flush=True)


if __name__ == "__main__":
    main()
