"""CUDA against the CPU in one run: upscale, deblur and one training step; GPU outputs within one 8-bit level.

Standalone, needs a CUDA GPU (run by hand, not by CI)::

    python benchmarks/bench_cuda.py [--device cuda:0] [--images samples/astronaut.png ...] [--repeat 3]
        [--train-tasks sr deblur] [--train-batch 16] [--train-steps 5] [--only-train] [--json FILE]

For each image (default: the photos in ``samples/``) and each of

- ``upscale --method net`` x4 (the shipped ``lapsr``), ``deblur --method net`` (``srndeblur``) and
  ``deblur --method wiener`` (a Gaussian PSF; FFTs on the device),

the library call (:func:`srdeblur.inference.upscale` / :func:`~srdeblur.inference.deblur`) runs with
``device=--device`` at the default precision (fp16/bf16 hidden layers on CUDA) and with ``device="cpu"`` in
``precision="float32"``: best-of-``--repeat`` wall seconds of each (after one warm-up call; CUDA
synchronised before the clock stops), the speed-up, and the largest difference of the 8-bit outputs
(``round(255 x)``) with the share of samples that differ. The check passes when no sample differs by more
than one 8-bit level; the script exits 1 otherwise.

Training: the wall time of one step of :func:`srdeblur.train.train` itself (what ``srdeblur train --device``
runs) for each of ``--train-tasks``, with the task's default network and patch (sr: LapSR, 96 px HR, the
x2/x4/x8 mix; deblur: SRNDeblur, 128 px, full-size blurs) and ``--train-batch`` patches cut from the
images, at the default precision on both devices (CUDA: bf16, or fp16 with a GradScaler; the CPU: bf16
where native, else float32), validation off. On each device, after one discarded warm-up run, fresh runs
in a temporary folder of 1 and of 1 + ``--train-steps`` steps (best of ``--repeat`` each): their
difference over ``--train-steps`` leaves out the start-up (reading the images, cuDNN's first-call
autotuning) and the checkpoint writes, which end each run with a copy to the CPU, so queued GPU work is
inside the clock. The run record's ``device`` and ``device_hours`` are reported too. ``--only-train``
skips the upscale / deblur comparisons.

Without a CUDA device the script says so and exits 2 before any work (``--device cpu`` runs the same code
CPU against CPU, to check the script itself).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from srdeblur import inference  # noqa: E402
from srdeblur.devices import DeviceError, parse_device  # noqa: E402
from srdeblur.io import read_image  # noqa: E402
from srdeblur.kernels import parse_psf  # noqa: E402
from srdeblur.train import TrainConfig, train  # noqa: E402
from srdeblur.weights import load_model  # noqa: E402


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(call: Callable[[], torch.Tensor], device: torch.device, repeat: int) -> tuple[float, torch.Tensor]:
    output = call()  # warm-up (cuDNN autotuning, allocator)
    synchronize(device)
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        output = call()
        synchronize(device)
        best = min(best, time.perf_counter() - started)
    return best, output


def eight_bit_difference(a: torch.Tensor, b: torch.Tensor) -> tuple[int, float]:
    """Largest |difference| of the 8-bit samples and the share of samples that differ."""
    difference = ((a.clamp(0, 1) * 255).round() - (b.clamp(0, 1) * 255).round()).abs()
    return int(difference.max()), float((difference > 0).float().mean())


def compare_call(name: str, image_name: str, function: Callable[..., torch.Tensor], image: torch.Tensor,
                 device: torch.device, repeat: int) -> dict:
    gpu_seconds, gpu = best_seconds(lambda: function(image, device=device), device, repeat)
    cpu_seconds, cpu = best_seconds(lambda: function(image, device="cpu", precision="float32"),
                                    torch.device("cpu"), repeat)
    largest, share = eight_bit_difference(gpu, cpu)
    return {"task": name, "image": image_name, "megapixels": image.shape[-2] * image.shape[-1] / 1e6,
            "device_seconds": gpu_seconds, "cpu_seconds": cpu_seconds, "speedup": cpu_seconds / gpu_seconds,
            "max_8bit_difference": largest, "share_differing": share, "ok": largest <= 1}


def run_seconds(config: TrainConfig, device: torch.device, steps: int) -> tuple[float, dict]:
    """Wall seconds of a fresh :func:`srdeblur.train.train` run of ``steps`` steps on ``device`` (in a new
    folder under ``config.out``), and its record (``last.json``)."""
    out = Path(config.out) / f"{device.type}_{steps}"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    train(replace(config, out=str(out)), max_steps=steps, device=device)
    synchronize(device)
    seconds = time.perf_counter() - started
    return seconds, json.loads((out / "last.json").read_text())


def training_step(task: str, images: list[Path], device: torch.device, *, batch: int, steps: int,
                  repeat: int) -> dict:
    """Seconds per training step of ``task`` on ``device`` and on the CPU (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="bench_cuda_") as folder:
        data = Path(folder) / "images"
        data.mkdir()
        for path in images:
            shutil.copy(path, data / path.name)
        # Validation off: the schedule never ends and no step is a multiple of val_every; no image held out.
        # Full-size blurs from the first step (no curriculum): what most steps of a run cost. The largest blur
        # and the patch are the CLI's defaults.
        config = TrainConfig(task=task, data=(str(data),), out=str(Path(folder) / "runs"), batch=batch,
                             patch=96 if task == "sr" else 128, total_steps=10**9, val_every=10**9,
                             val_fraction=10**9, curriculum=0.0,
                             max_kernel=75 if task == "nonblind" else TrainConfig.max_kernel)
        row = {"task": task, "batch": batch, "patch": config.patch}
        for label, where in (("device", device), ("cpu", torch.device("cpu"))):
            run_seconds(config, where, 1)  # warm-up: the process's first run on a device pays one-time costs
            short = min(run_seconds(config, where, 1)[0] for _ in range(repeat))
            runs = [run_seconds(config, where, 1 + steps) for _ in range(repeat)]
            long, record = min(seconds for seconds, _ in runs), runs[-1][1]
            row[f"{label}_seconds_per_step"] = (long - short) / steps
            row[f"{label}_record"] = {"device": record["device"], "device_hours": record["device_seconds"] / 3600,
                                      "cpu_hours": record["cpu_seconds"] / 3600}
    row["speedup"] = row["cpu_seconds_per_step"] / row["device_seconds_per_step"]
    return row


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--images", nargs="+", type=Path,
                        default=[ROOT / "samples" / f"{n}.png" for n in ("astronaut", "chelsea", "coffee")])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--train-tasks", nargs="+", choices=("sr", "deblur", "nonblind", "srgate"),
                        default=["sr", "deblur"])
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--train-steps", type=int, default=5, help="timed steps per run (after one warm-up step)")
    parser.add_argument("--only-train", action="store_true", help="skip the upscale / deblur comparisons")
    parser.add_argument("--json", type=Path)
    return parser.parse_args(argv)


def inference_rows(paths: list[Path], device: torch.device, repeat: int) -> list[dict]:
    """The upscale / deblur comparisons of every image (printed as they finish)."""
    lapsr, srndeblur = load_model("lapsr"), load_model("srndeblur")
    psf = parse_psf("gaussian:1.5")
    tasks = {
        "upscale net x4": lambda x, **kw: inference.upscale(x, scale=4, model=lapsr, **kw),
        "deblur net": lambda x, **kw: inference.deblur(x, method="net", model=srndeblur, **kw),
        "deblur wiener": lambda x, **kw: inference.deblur(x, method="wiener", psf=psf,
                                                          **{k: v for k, v in kw.items() if k != "precision"}),
    }
    rows = []
    for path in paths:
        image = read_image(path).pixels
        for task, function in tasks.items():
            row = compare_call(task, path.stem, function, image, device, repeat)
            rows.append(row)
            print(f"{task:15s} {path.stem:10s} {row['megapixels']:.2f} MP: {device} {row['device_seconds']:.3f} s, "
                  f"cpu {row['cpu_seconds']:.3f} s ({row['speedup']:.1f}x); 8-bit difference max "
                  f"{row['max_8bit_difference']}, {100 * row['share_differing']:.2f}% of samples "
                  f"{'ok' if row['ok'] else 'FAIL'}", flush=True)
    return rows


def skip(reason: str) -> None:
    """Stop before any work: one line on stderr, exit 2 (nothing was measured)."""
    print(f"bench_cuda: skipped: {reason}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        device = parse_device(args.device)
    except DeviceError as error:
        skip(f"{error}. This script compares a GPU with the CPU; it needs a machine with CUDA")
    if device.type == "cpu" and args.device != "cpu":
        skip("no CUDA device here; this script needs a GPU (or --device cpu to check the script)")
    rows = [] if args.only_train else inference_rows(args.images, device, args.repeat)
    training = []
    for task in args.train_tasks:
        row = training_step(task, args.images, device, batch=args.train_batch, steps=args.train_steps,
                            repeat=args.repeat)
        training.append(row)
        print(f"train step {task:8s} (batch {row['batch']}, {row['patch']} px): {device} "
              f"{row['device_seconds_per_step']:.3f} s, cpu {row['cpu_seconds_per_step']:.3f} s "
              f"({row['speedup']:.1f}x); record on {device}: device {row['device_record']['device']!r}, "
              f"{row['device_record']['device_hours'] * 3600:.1f} device-s", flush=True)
    result = {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "torch": torch.__version__, "rows": rows, "training": training}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if not all(row["ok"] for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
