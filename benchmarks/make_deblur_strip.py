"""The README's deblurring picture: a sample photo under a real camera shake, restored blind by each method.

    python benchmarks/make_deblur_strip.py [-o docs/compare_coffee_deblur.png] [--photo samples/coffee.png]

Blurs the photo by Levin et al.'s kernel 7 (from ``../shared/data/deblur/levin``; a measured camera shake)
plus 1 % Gaussian noise, 8-bit, as ``srdeblur eval --dataset sun2013`` does, then restores it with
``--method net`` and ``--method auto`` (the default), and writes the labelled strip (blurred, net, auto,
sharp). Prints each method's Y-PSNR / SSIM at its best shift, as the eval tables score it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from srdeblur.classical import blur
from srdeblur.degrade import add_gaussian_noise, quantize_8bit
from srdeblur.evaluation import DeblurSettings, data_root, levin_kernels
from srdeblur.inference import deblur
from srdeblur.io import read_image, write_image
from srdeblur.metrics import align_shift, psnr, ssim
from srdeblur.visual import compare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/compare_coffee_deblur.png"))
    parser.add_argument("--photo", type=Path, default=Path("samples/coffee.png"))
    args = parser.parse_args()
    sharp = read_image(args.photo).pixels
    kernel = dict(levin_kernels(data_root() / "deblur" / "levin"))["kernel7"]
    noise = torch.Generator().manual_seed(0)
    blurred = quantize_8bit(add_gaussian_noise(blur(sharp, kernel), 0.01, generator=noise))
    settings = DeblurSettings()
    outputs = {
        "blurred": blurred,
        "net": deblur(blurred, method="net"),
        "auto": deblur(blurred, method="auto", iterations=settings.rl_iterations, tv_weight=settings.rl_tv_weight),
    }
    for label, output in outputs.items():
        aligned, target = align_shift(quantize_8bit(output), sharp, **settings.alignment(*sharp.shape[-2:]))
        print(f"{label}: {float(psnr(aligned, target)[0]):.2f} dB / {float(ssim(aligned, target)[0]):.4f}")
    strip = compare([*outputs.values(), sharp], labels=[*outputs, "sharp"]).strip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_image(args.output, strip)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
