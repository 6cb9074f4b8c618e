"""Choose ``inference.BLUR_GATE_THRESHOLD`` on training images only (never the benchmarks).

Standalone (run by hand, not by CI)::

    python benchmarks/calibrate_blur_gate.py [--data ../shared/data/train] [--draws 40] [--weights weights]

The held-out validation images of training (every 29th of the 291, as ``srdeblur train`` holds them out),
whole, each through ``--draws`` seeded draws of ``training_data.degrade_photo`` (sharp and softened photos;
uniform shakes, defocus and Gaussians; shakes varying across the frame; camera roll; a moving object; all
with noise and some with JPEG). The shipped ``blurgate`` scores each; for each threshold the script reports
the share of each kind the default would deblur. A sharp photo deblurred is the failure that matters most (a
wrong estimate ruins it), so the threshold is the lowest one on a 0.5 grid that leaves at least 99 % of the
sharp photos alone; softened ones (a Gaussian of sigma up to 1 px) are reported beside them.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from srdeblur import inference
from srdeblur.degrade import degradation_generator
from srdeblur.training_data import PHOTO_BLURS, degrade_photo, load_training_images
from srdeblur.weights import load_model

# Seeds apart from training's (which seeds per step) and from validate_blurgate's (image index, draw).
CALIBRATION_SEED = 4242


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/train")
    parser.add_argument("--draws", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--weights", default=None, help="folder with blurgate.json (default: the shipped weights)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    _, images = load_training_images((args.data,), val_fraction=29)
    gate = load_model("blurgate", folder=Path(args.weights)) if args.weights else inference.shipped_model("blurgate")
    logits: dict[str, list[float]] = defaultdict(list)
    with torch.no_grad():
        for index, image in enumerate(images):
            sharp = image[None].float() / 255
            for draw in range(args.draws):
                generator = degradation_generator(CALIBRATION_SEED + index, draw)
                degraded, kind = degrade_photo(sharp, generator=generator)
                logits[kind].append(inference.blur_logit(degraded, gate))
    kinds = [k for k in PHOTO_BLURS if logits[k]]
    print("counts: " + ", ".join(f"{k} {len(logits[k])}" for k in kinds))
    print("threshold | share deblurred: " + " | ".join(kinds))
    for threshold in np.arange(-3.0, 3.01, 0.5):
        shares = [float(np.mean(np.array(logits[k]) > threshold)) for k in kinds]
        print(f"{threshold:+5.1f}     | " + " | ".join(f"{100 * s:5.1f} %" for s in shares))
    sharp = np.array(logits["sharp"])
    chosen = np.ceil(np.quantile(sharp, 0.99) * 2) / 2
    print(f"99th percentile of sharp photos' logits: {np.quantile(sharp, 0.99):+.2f}; threshold {chosen:+.1f}: "
          + ", ".join(f"{k} {100 * np.mean(np.array(logits[k]) > chosen):.1f} % deblurred" for k in kinds))
    sure = inference.BLUR_GATE_SURE
    print(f"unsure band ({inference.BLUR_GATE_THRESHOLD:+.1f}, {sure:+.1f}] (the network, not a deconvolution): "
          + ", ".join(f"{k} {100 * np.mean((np.array(logits[k]) > inference.BLUR_GATE_THRESHOLD) & (np.array(logits[k]) <= sure)):.1f} %"
                      for k in kinds))


if __name__ == "__main__":
    main()
