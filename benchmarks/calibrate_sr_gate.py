"""Choose ``inference.GATE_THRESHOLD`` on training images only (never the benchmarks).

Standalone (run by hand, not by CI)::

    python benchmarks/calibrate_sr_gate.py [--data ../shared/data/train] [--threads 1]

The held-out validation images of training (every 29th of the 291, as ``srdeblur train`` holds them out)
give 192-px centre crops; each is made LR at x2 and x4 clean (MATLAB bicubic), by the training mix of
realistic degradations (``train.realistic_lr`` with no clean share, 3 seeded draws) and by the ``mild`` and
``strong`` presets. ``lapsr`` and ``lapsr-real`` restore every LR and the gate scores it; for each
threshold the mean Y-PSNR of the choice is reported for clean and degraded inputs, beside always-clean,
always-real and the oracle (the better of the two per image).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from srdeblur import inference
from srdeblur.degrade import bicubic_downscale, degradation_generator, mod_crop, realistic_downscale
from srdeblur.metrics import psnr
from srdeblur.train import load_training_images, realistic_lr


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/train")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--crop", type=int, default=192)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    _, images = load_training_images((args.data,), val_fraction=29)
    gate, clean_net, real_net = (inference.shipped_model(n) for n in ("srgate", "lapsr", "lapsr-real"))
    rows = []  # (kind, logit, psnr clean net, psnr real net)
    for index, image in enumerate(images):
        top, left = max(0, (image.shape[1] - args.crop) // 2), max(0, (image.shape[2] - args.crop) // 2)
        hr = image[None, :, top : top + args.crop, left : left + args.crop].float() / 255
        for scale in (2, 4):
            cut = mod_crop(hr, scale)
            inputs = [("clean", bicubic_downscale(cut, scale))]
            inputs += [("mix", realistic_lr(cut, scale, 0.0, generator=degradation_generator(99, 10 * index + d)))
                       for d in range(3)]
            inputs += [(kind, realistic_downscale(cut, scale, kind, generator=degradation_generator(98, index)))
                       for kind in ("mild", "strong")]
            for kind, lr in inputs:
                logit = float(inference.degradation_logit(lr, gate)[0])
                scores = [float(psnr(inference.upscale(lr, scale=scale, model=net), cut, shave=scale)[0])
                          for net in (clean_net, real_net)]
                rows.append((kind, logit, *scores))
    kinds = np.array([r[0] for r in rows])
    logits, clean_scores, real_scores = (np.array([r[i] for r in rows]) for i in (1, 2, 3))
    clean = kinds == "clean"
    print(f"{len(rows)} LR crops ({clean.sum()} clean)")
    print("threshold | clean inputs | degraded inputs | share of degraded sent to lapsr-real | clean sent to real")
    for label, choice in [("always lapsr", np.zeros_like(logits, bool)), ("always lapsr-real", np.ones_like(logits, bool)),
                          ("oracle", real_scores > clean_scores)] + [
                          (f"{t:+.1f}", logits > t) for t in np.arange(-3, 3.01, 0.5)]:
        chosen = np.where(choice, real_scores, clean_scores)
        print(f"{label:>17} | {chosen[clean].mean():.3f} | {chosen[~clean].mean():.3f} | "
              f"{choice[~clean].mean():.2f} | {choice[clean].mean():.2f}")


if __name__ == "__main__":
    main()
