"""int8 against bfloat16 for the shipped SR networks: the same evaluation, side by side, in one process.

    python benchmarks/bench_int8.py [--sets set5 set14] [--scales 4 2] [--degradation bicubic] [--threads 1]

Runs :func:`srdeblur.evaluation.evaluate` with the default ``net`` method (``lapsr`` / ``lapsr-real`` chosen per
image by the gate) twice: with the int8 feature path (``precision="auto"``, :mod:`srdeblur.int8`) and with
bfloat16 hidden layers (``precision="bfloat16"``), and prints Y-PSNR / SSIM and seconds per image for both.
"""

from __future__ import annotations

import argparse

import torch

from srdeblur import evaluation, inference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=["set5", "set14"])
    parser.add_argument("--scales", nargs="+", type=int, default=[4, 2])
    parser.add_argument("--degradation", default="bicubic")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    applies = inference.int8_applies
    print(f"int8 available: {applies('auto')}")
    for name in args.sets:
        for scale in args.scales:
            scores = {}
            for label, int8 in (("int8", True), ("bfloat16", False)):
                inference.int8_applies = lambda precision, device=None, int8=int8: int8 and applies(precision, device)
                try:
                    result = evaluation.evaluate(name, scale=scale, methods=("net",), degradation=args.degradation)
                finally:
                    inference.int8_applies = applies
                scores[label] = result.summary()["net"]
            cells = "  ".join(f"{label} {s['psnr']:.3f} / {s['ssim']:.4f} ({s['seconds']:.3f} s)"
                              for label, s in scores.items())
            delta = scores["int8"]["psnr"] - scores["bfloat16"]["psnr"]
            print(f"{name} x{scale} {args.degradation}: {cells}  int8 - bfloat16 {delta:+.3f} dB", flush=True)


if __name__ == "__main__":
    main()
