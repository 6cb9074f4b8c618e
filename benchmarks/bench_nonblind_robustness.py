"""The known-PSF network given a slightly wrong PSF, against Wiener and Richardson-Lucy given the same one.

Standalone (run by hand, not by CI)::

    python benchmarks/bench_nonblind_robustness.py [--photos 4] [--noise 0.01] [--threads 1]

The first ``--photos`` SunHays80 photos are blurred by each of Levin's 8 kernels with noise (exactly as
``srdeblur eval --dataset sun2013`` does). Every method then gets, instead of the true kernel: the true one
(``true``), the true one scaled by 1.1 (``scaled``), rotated by 10 degrees (``rotated``), and ``blind``'s
estimate from the blurred image (``estimated``). Scores: Y-PSNR at the best shift (Levin's protocol, as eval).
Results in ``OUT/bench_nonblind_robustness.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from srdeblur import blind, inference
from srdeblur.degrade import quantize_8bit
from srdeblur.evaluation import DeblurSettings, data_root, levin_kernels, resolve_dataset, synthetic_blur_samples
from srdeblur.kernels import normalize_psf
from srdeblur.metrics import align_shift, psnr


def warp(psf: torch.Tensor, *, scale: float = 1.0, angle: float = 0.0) -> torch.Tensor:
    """``psf`` scaled and rotated (degrees) about its centre on a canvas 1.2x larger, renormalised."""
    side = int(round(psf.shape[0] * max(1.0, scale) * 1.2)) // 2 * 2 + 1
    canvas = np.zeros((side, side))
    offset = (side - psf.shape[0]) // 2
    canvas[offset : offset + psf.shape[0], offset : offset + psf.shape[1]] = psf.double().numpy()
    matrix = cv2.getRotationMatrix2D(((side - 1) / 2, (side - 1) / 2), angle, scale)
    return normalize_psf(torch.from_numpy(cv2.warpAffine(canvas, matrix, (side, side), flags=cv2.INTER_LINEAR)).clamp_min(0))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=4)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = DeblurSettings(noise_sigma=args.noise)
    _, folder = resolve_dataset("sun2013")
    kernels = levin_kernels(data_root() / "deblur/levin")
    samples = synthetic_blur_samples(folder, kernels, noise_sigma=args.noise, limit=args.photos)
    methods = {
        "wiener": lambda image, psf: inference.deblur(image, method="wiener", psf=psf, balance=settings.wiener_balance),
        "rl": lambda image, psf: inference.deblur(image, method="rl", psf=psf, iterations=settings.rl_iterations,
                                                  tv_weight=settings.rl_tv_weight),
        "net": lambda image, psf: inference.deblur(image, method="net", psf=psf),
    }
    scores: dict[str, dict[str, list[float]]] = {}
    for sample in samples:
        psfs = {"true": sample.psf, "scaled": warp(sample.psf, scale=1.1), "rotated": warp(sample.psf, angle=10.0),
                "estimated": blind.estimate_psf(sample.degraded)[0]}
        for variant, psf in psfs.items():
            for method, run in methods.items():
                output = quantize_8bit(run(sample.degraded, psf))
                prediction, target = align_shift(output, sample.ground_truth,
                                                 **settings.alignment(*sample.ground_truth.shape[-2:]))
                scores.setdefault(variant, {}).setdefault(method, []).append(float(psnr(prediction, target)[0]))
        print(sample.name, {v: {m: round(s[-1], 2) for m, s in d.items()} for v, d in scores.items()}, flush=True)
    summary = {v: {m: float(np.mean(s)) for m, s in d.items()} for v, d in scores.items()}
    lines = ["| PSF given | Wiener | Richardson-Lucy | net | net - best classical |", "|---|---|---|---|---|"]
    for variant, row in summary.items():
        best = max(row["wiener"], row["rl"])
        lines.append(f"| {variant} | {row['wiener']:.2f} | {row['rl']:.2f} | {row['net']:.2f} | {row['net'] - best:+.2f} |")
    table = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_nonblind_robustness.json").write_text(json.dumps({"args": vars(args) | {"out": str(args.out)},
                                                                         "summary": summary, "scores": scores}, indent=1))
    (args.out / "bench_nonblind_robustness.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
