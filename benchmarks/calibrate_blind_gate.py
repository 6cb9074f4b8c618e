"""Choose ``srdeblur.blind.CREDIBLE_SPREAD`` on training images (never on the benchmarks).

    python benchmarks/calibrate_blind_gate.py --data ../shared/data/train --every 5 --threads 1 [--psf-size 35]
    python benchmarks/calibrate_blind_gate.py --threads 1 --deconvolution    # the non-blind step instead

Every ``--every``-th training image (sorted paths) large enough for a centred 320 x 320 crop is blurred by a
seeded random blur — 60 % camera shakes up to 31 px (``kernels.random_motion_psf``), 15 % defocus discs of
radius 2-6 px, 15 % Gaussians of sigma 1-3 px, 10 % none — plus 1 % Gaussian noise, 8-bit. Each is restored by
Richardson-Lucy with the blind estimate (``blind``) and by the shipped network (``net``), scored like
``srdeblur eval --task deblur`` (Y-PSNR at the best quarter-pixel shift), and the estimate's spread
(``blind.psf_spread``) and edge-slope ratio (``blind.edge_slope_ratio``) are recorded. The table then gives
the mean PSNR of ``auto`` (``blind`` where the spread is at most T and the slope ratio at most
``blind.CREDIBLE_SLOPE_RATIO``, else ``net``) for a range of thresholds T, over the blurred crops; the
unblurred crops are reported apart (PSNR of each output against the crop itself: how much it harms a sharp
photo). The network was trained on these images, so its numbers here are a little optimistic, which makes
the gate lean towards it.

``--deconvolution`` instead scores the step after the estimate on the blurred crops: Richardson-Lucy with
10-50 iterations and TV weights 0-0.01, and Wiener with balances 0.002-0.05.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from srdeblur import blind, classical, inference, kernels
from srdeblur.degrade import add_gaussian_noise, quantize_8bit
from srdeblur.evaluation import DeblurSettings
from srdeblur.io import read_image
from srdeblur.metrics import align_shift, psnr
from srdeblur.weights import load_model

CROP = 320
THRESHOLDS = (100, 130, 165, 180, 200, 220, 270, 330, 400, 1e9)


def score(restored: torch.Tensor, sharp: torch.Tensor) -> float:
    aligned, target = align_shift(quantize_8bit(restored), sharp, **DeblurSettings().alignment(*sharp.shape[-2:]))
    return float(psnr(aligned, target)[0])


def random_blur(generator: torch.Generator) -> tuple[str, torch.Tensor | None]:
    draw = float(torch.rand(1, generator=generator))
    if draw < 0.6:
        return "shake", kernels.random_motion_psf(31, generator=generator)
    if draw < 0.75:
        return "disc", kernels.disk_psf(2 + 4 * float(torch.rand(1, generator=generator)))
    if draw < 0.9:
        return "gaussian", kernels.gaussian_psf(1 + 2 * float(torch.rand(1, generator=generator)))
    return "none", None


def score_deconvolution(estimated: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
    """Mean PSNR of each non-blind step on ``(sharp, blurred, estimated PSF)`` triples."""
    def mean(restore) -> float:
        return sum(score(restore(blurred, psf), sharp) for sharp, blurred, psf in estimated) / len(estimated)

    print(f"{len(estimated)} blurred crops: input {mean(lambda blurred, psf: blurred):.2f} dB")
    for iterations in (10, 20, 30, 50):
        for tv_weight in (0.0, 0.002, 0.005, 0.01):
            value = mean(lambda b, p: classical.richardson_lucy(b, p, iterations=iterations, tv_weight=tv_weight))
            print(f"richardson-lucy {iterations} iterations, tv {tv_weight:g}: {value:.2f} dB", flush=True)
    for balance in (0.002, 0.005, 0.01, 0.02, 0.05):
        print(f"wiener balance {balance:g}: {mean(lambda b, p: classical.wiener(b, p, balance=balance)):.2f} dB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/train"))
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--psf-size", type=int, default=blind.DEFAULT_PSF_SIZE)
    parser.add_argument("--deconvolution", action="store_true", help="score the non-blind step instead of the gate")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model("srndeblur")
    generator = torch.Generator().manual_seed(args.seed)
    paths = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".bmp"))[:: args.every]
    rows, estimated = [], []
    for path in paths:
        sharp = read_image(path).pixels
        height, width = sharp.shape[-2:]
        if min(height, width) < CROP:
            continue
        top, left = (height - CROP) // 2, (width - CROP) // 2
        sharp = sharp[..., top : top + CROP, left : left + CROP]
        kind, psf = random_blur(generator)
        blurred = sharp if psf is None else quantize_8bit(add_gaussian_noise(classical.blur(sharp, psf), 0.01, generator=generator))
        estimate = blind.estimate_psf(blurred, size=args.psf_size)[0]
        if args.deconvolution:
            if psf is not None:
                estimated.append((sharp, blurred, estimate))
            continue
        row = {
            "image": f"{path.stem}/{kind}",
            "input": score(blurred, sharp),
            "blind": score(classical.richardson_lucy(blurred, estimate, iterations=30, tv_weight=0.002), sharp),
            "net": score(inference.deblur(blurred, method="net", model=model), sharp),
            "spread": blind.psf_spread(estimate),
            "slope": blind.edge_slope_ratio(blurred, estimate),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.deconvolution:
        score_deconvolution(estimated)
        return
    sharp_rows = [r for r in rows if r["image"].endswith("/none")]
    rows = [r for r in rows if not r["image"].endswith("/none")]
    means = {key: sum(r[key] for r in rows) / len(rows) for key in ("input", "blind", "net")}
    print(f"{len(rows)} blurred crops: input {means['input']:.2f}, blind {means['blind']:.2f}, net {means['net']:.2f} dB")
    print("threshold (px) | auto (dB) | auto below input by > 0.5 dB | unblurred crops: auto (dB, each)")
    for threshold in THRESHOLDS:
        def auto(row: dict) -> float:
            credible = row["spread"] <= threshold and row["slope"] <= blind.CREDIBLE_SLOPE_RATIO
            return row["blind"] if credible else row["net"]

        scores = [auto(r) for r in rows]
        worse = sum(a < r["input"] - 0.5 for a, r in zip(scores, rows))
        label = "inf" if threshold >= 1e9 else f"{threshold:g} (log {math.log(threshold):.2f})"
        print(f"{label} | {sum(scores) / len(scores):.2f} | {worse} | {', '.join(f'{auto(r):.1f}' for r in sharp_rows)}")


if __name__ == "__main__":
    main()
