"""Does the deblurring network's gain depend on the kind of blur kernel? Levin's measured shakes vs our own.

    python benchmarks/probe_deblur_kernels.py [--photos 3] [--crop 256] [--seed 5]

Same photos (the first ``--photos`` SunHays80 images, centre crops), same noise (sigma 1%, 8-bit), three kernel
sets: Levin et al.'s 8, our random camera shakes (``srdeblur.kernels.random_motion_psf``) at the same sizes,
and the training run's 6 validation kernels. For each set: the mean Y-PSNR gain of the shipped ``srndeblur``
over the blurred input (both scored at their best shift, as ``srdeblur eval`` does), and two kernel
statistics: the support (pixels above 5% of the peak) and the share of the energy in the 10 brightest pixels.
A gain much lower on Levin's kernels than on ours means the training kernels do not look like real shakes.
"""

from __future__ import annotations

import argparse

import torch

from srdeblur.classical import blur
from srdeblur.degrade import add_gaussian_noise, quantize_8bit
from srdeblur.evaluation import DeblurSettings, levin_kernels, resolve_dataset
from srdeblur.inference import deblur
from srdeblur.io import list_images, read_image
from srdeblur.kernels import random_motion_psf
from srdeblur.metrics import align_shift, psnr
from srdeblur.train import validation_kernels
from srdeblur.weights import load_model


def kernel_statistics(psf: torch.Tensor) -> tuple[int, float]:
    """(pixels above 5% of the peak, share of the energy in the 10 brightest pixels) of a PSF."""
    psf = psf / psf.sum()
    return int((psf > 0.05 * psf.max()).sum()), float(psf.flatten().sort(descending=True).values[:10].sum())


def mean_gain(photos: list[torch.Tensor], kernels: list[torch.Tensor], model) -> float:
    """Mean aligned Y-PSNR of the network's output minus that of the blurred input, in dB."""
    gains = []
    for sharp in photos:
        for index, psf in enumerate(kernels):
            noise = torch.Generator().manual_seed(index)
            blurred = quantize_8bit(add_gaussian_noise(blur(sharp, psf), 0.01, generator=noise))
            restored = quantize_8bit(deblur(blurred, model=model, tile=0))
            alignment = DeblurSettings().alignment(*sharp.shape[-2:])
            before = psnr(*align_shift(blurred, sharp, **alignment))[0]
            after = psnr(*align_shift(restored, sharp, **alignment))[0]
            gains.append(float(after - before))
    return sum(gains) / len(gains)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=3)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--seed", type=int, default=5, help="seed of our random shakes")
    args = parser.parse_args()

    _, sun = resolve_dataset("sun2013")
    _, levin_folder = resolve_dataset("levin")
    photos = []
    for path in list_images(sun)[: args.photos]:
        image = read_image(path).pixels.expand(-1, 3, -1, -1)
        top, left = (image.shape[-2] - args.crop) // 2, (image.shape[-1] - args.crop) // 2
        photos.append(image[..., top : top + args.crop, left : left + args.crop])
    levin = [psf for _, psf in levin_kernels(levin_folder)]
    generator = torch.Generator().manual_seed(args.seed)
    ours = [random_motion_psf(psf.shape[0] | 1, generator=generator) for psf in levin]
    model = load_model("srndeblur")
    print("| kernels | gain over the input (dB) | support (px > 5% of peak) | energy in the 10 brightest px |")
    print("|---|---:|---|---|")
    for name, kernels in (("Levin et al. (8)", levin), ("ours, same sizes (8)", ours),
                          ("validation (6)", validation_kernels())):
        stats = [kernel_statistics(psf) for psf in kernels]
        print(f"| {name} | {mean_gain(photos, kernels, model):.2f} | {', '.join(str(s) for s, _ in stats)} "
              f"| {', '.join(f'{e:.2f}' for _, e in stats)} |")


if __name__ == "__main__":
    main()
