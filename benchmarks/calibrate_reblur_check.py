"""Choose ``inference.REBLUR_LIMIT`` on training images only (never the benchmarks).

Standalone (run by hand, not by CI)::

    python benchmarks/calibrate_reblur_check.py [--data ../shared/data/train] [--draws 12] [--min-side 300]

The held-out validation images of training (every 29th of the 291, as ``srdeblur train`` holds them out; those
of at least ``--min-side`` px, where a PSF can be estimated), each through ``--draws`` seeded draws of
``training_data.degrade_photo`` (uniform shakes, defocus, Gaussians, shakes varying across the frame, camera
roll, a moving object; noise 0-3 %, some JPEG). Only the draws the default would deconvolve count: the blur
gate says blurred (logit above ``BLUR_GATE_SURE``) and the estimate is credible. For each, the script
records :func:`srdeblur.blind.reblur_ratio` of the learned deconvolution with the estimate, and the aligned
Y-PSNR (``srdeblur eval``'s alignment) of the input, of the mix ``auto`` outputs (mean of the learned
deconvolution and 10 Richardson-Lucy iterations) and of the blind network. For every candidate limit it
reports the policy "mix where the ratio is at most the limit, else the network": mean gain, cases below the
input, worst. The limit chosen is the one with the highest mean gain (the largest of equals).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from srdeblur import blind, inference
from srdeblur.degrade import degradation_generator, estimate_noise, quantize_8bit
from srdeblur.evaluation import DeblurSettings
from srdeblur.metrics import align_shift, psnr
from srdeblur.training_data import DEBLURRABLE, degrade_photo, load_training_images

CALIBRATION_SEED = 5151  # apart from training's, validation's and calibrate_blur_gate's
LIMITS = (0.75, 1, 1.25, 1.5, 2, 2.5, 3, 4, 6, 10, float("inf"))


def aligned_psnr(prediction: torch.Tensor, target: torch.Tensor) -> float:
    alignment = DeblurSettings().alignment(*target.shape[-2:])
    aligned, cropped = align_shift(quantize_8bit(prediction.clamp(0, 1)), target, **alignment)
    return float(psnr(aligned, cropped)[0])


def measure(degraded: torch.Tensor, sharp: torch.Tensor) -> dict | None:
    """One draw through auto's deconvolution path; None where auto would not deconvolve it."""
    gate = inference.shipped_model("blurgate")
    logit = inference.blur_logit(degraded, gate)
    if logit <= inference.BLUR_GATE_SURE:
        return None
    estimate = blind.estimate_psf(degraded)[0]
    if not blind.is_credible(degraded, estimate):
        return None
    learned = inference.deblur(degraded, method="net", psf=estimate)
    ratio = blind.reblur_ratio(degraded, estimate, learned.clamp(0, 1), float(estimate_noise(degraded)[0]))
    lucy = inference.deblur(degraded, method="rl", psf=estimate, iterations=inference.MIX_RL_ITERATIONS,
                            tv_weight=0.002)
    mix = 0.5 * (learned.clamp(0, 1) + lucy)
    network = inference.deblur(degraded, method="net")
    return {"ratio": ratio, "input": aligned_psnr(degraded, sharp), "mix": aligned_psnr(mix, sharp),
            "net": aligned_psnr(network, sharp)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/train")
    parser.add_argument("--draws", type=int, default=12)
    parser.add_argument("--min-side", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the per-draw records here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    _, images = load_training_images((args.data,), val_fraction=29)
    records = []
    for index, image in enumerate(images):
        if min(image.shape[-2:]) < args.min_side:
            continue
        sharp = image[None].float() / 255
        for draw in range(args.draws):
            degraded, kind = degrade_photo(sharp, generator=degradation_generator(CALIBRATION_SEED + index, draw))
            record = measure(degraded, sharp)
            if record is not None:
                records.append({"image": index, "draw": draw, "kind": kind, **record})
                print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in records[-1].items()}),
                      flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1))
    ratio = np.array([r["ratio"] for r in records])
    gains = {m: np.array([r[m] - r["input"] for r in records]) for m in ("mix", "net")}
    deblurrable = np.array([r["kind"] in DEBLURRABLE for r in records])
    print(f"{len(records)} draws deconvolved ({int(deblurrable.sum())} uniform/varying shakes, the rest other kinds)")
    print("limit | fallbacks | mean gain | below input | worst")
    best = -float("inf")
    for limit in LIMITS:
        policy = np.where(ratio <= limit, gains["mix"], gains["net"])
        below = float(np.mean(policy < 0))
        print(f"{limit:5g} | {int(np.sum(ratio > limit)):9d} | {policy.mean():+9.2f} | {100 * below:9.1f} % | "
              f"{policy.min():+.2f}")
        if policy.mean() >= best:
            best, chosen = policy.mean(), limit
    print(f"chosen limit (highest mean gain): {chosen}")


if __name__ == "__main__":
    main()
