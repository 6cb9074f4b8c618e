"""CUDA against the CPU in one run: upscale, deblur and one training step; GPU outputs within one 8-bit level.

Standalone, needs a CUDA GPU (run by hand, not by CI)::

    python benchmarks/bench_cuda.py [--device cuda:0] [--images samples/astronaut.png ...] [--repeat 3]
        [--train-batch 16] [--json FILE]

For each image (default: the photos in ``samples/``) and each of

- ``upscale --method net`` x4 (the shipped ``lapsr``), ``deblur --method net`` (``srndeblur``) and
  ``deblur --method wiener`` (a Gaussian PSF; FFTs on the device),

the library call (:func:`srdeblur.inference.upscale` / :func:`~srdeblur.inference.deblur`) runs with
``device=--device`` at the default precision (fp16/bf16 hidden layers on CUDA) and with ``device="cpu"`` in
``precision="float32"``: best-of-``--repeat`` wall seconds of each (after one warm-up call; CUDA
synchronised before the clock stops), the speed-up, and the largest difference of the 8-bit outputs
(``round(255 x)``) with the share of samples that differ. The check passes when no sample differs by more
than one 8-bit level; the script exits 1 otherwise.

Training: one optimiser step (Adam, L1 loss, x4, ``--train-batch`` patches of 96 px HR cut from the images) of
the shipped SR network, timed on each device (CUDA with bf16/fp16 autocast, as inference). This is a
stand-in for ``srdeblur train`` on CUDA, which is not wired yet (see the README).

Without a CUDA device the script says so and exits 2 (``--device cpu`` runs the same code CPU against CPU,
to check the script itself).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from srdeblur import inference  # noqa: E402
from srdeblur.devices import DeviceError, network_autocast, parse_device  # noqa: E402
from srdeblur.io import read_image  # noqa: E402
from srdeblur.kernels import parse_psf  # noqa: E402
from srdeblur.nets import LapSR  # noqa: E402
from srdeblur.resize import imresize  # noqa: E402
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


def training_step_seconds(device: torch.device, patches: torch.Tensor, repeat: int) -> float:
    """Best wall time of one Adam step of the shipped SR network on ``device`` (x4, L1)."""
    model = load_model("lapsr").to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    hr = patches.to(device)
    lr = imresize(hr, scale=0.25).clamp(0, 1)
    levels = LapSR.levels_for_scale(4)

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with network_autocast(device, "auto", cpu_bfloat16=inference.uses_bfloat16("auto")):
            output = model(lr, levels)[-1]
        loss = (output.float() - hr).abs().mean()
        loss.backward()
        optimizer.step()
        return loss

    seconds, _ = best_seconds(step, device, repeat)
    return seconds


def random_patches(images: list[torch.Tensor], count: int, size: int = 96, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    patches = []
    for index in range(count):
        image = images[index % len(images)]
        image = image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image
        top = int(torch.randint(0, image.shape[-2] - size + 1, (1,), generator=generator))
        left = int(torch.randint(0, image.shape[-1] - size + 1, (1,), generator=generator))
        patches.append(image[..., top : top + size, left : left + size])
    return torch.cat(patches)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--images", nargs="+", type=Path,
                        default=[ROOT / "samples" / f"{n}.png" for n in ("astronaut", "chelsea", "coffee")])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--json", type=Path)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        device = parse_device(args.device)
    except DeviceError as error:
        sys.exit(f"bench_cuda: {error}. This script compares a GPU with the CPU; it needs a machine with CUDA.")
    if device.type == "cpu" and args.device != "cpu":
        sys.exit("bench_cuda: no CUDA device here; this script needs a GPU (or --device cpu to check the script)")
    lapsr, srndeblur = load_model("lapsr"), load_model("srndeblur")
    psf = parse_psf("gaussian:1.5")
    tasks = {
        "upscale net x4": lambda x, **kw: inference.upscale(x, scale=4, model=lapsr, **kw),
        "deblur net": lambda x, **kw: inference.deblur(x, method="net", model=srndeblur, **kw),
        "deblur wiener": lambda x, **kw: inference.deblur(x, method="wiener", psf=psf,
                                                          **{k: v for k, v in kw.items() if k != "precision"}),
    }
    images = {path.stem: read_image(path).pixels for path in args.images}
    rows = []
    for name, image in images.items():
        for task, function in tasks.items():
            row = compare_call(task, name, function, image, device, args.repeat)
            rows.append(row)
            print(f"{task:15s} {name:10s} {row['megapixels']:.2f} MP: {device} {row['device_seconds']:.3f} s, "
                  f"cpu {row['cpu_seconds']:.3f} s ({row['speedup']:.1f}x); 8-bit difference max "
                  f"{row['max_8bit_difference']}, {100 * row['share_differing']:.2f}% of samples "
                  f"{'ok' if row['ok'] else 'FAIL'}", flush=True)
    patches = random_patches(list(images.values()), args.train_batch)
    training = {"device": training_step_seconds(device, patches, args.repeat),
                "cpu": training_step_seconds(torch.device("cpu"), patches, args.repeat)}
    print(f"train step (batch {args.train_batch}, 96 px, x4): {device} {training['device']:.3f} s, "
          f"cpu {training['cpu']:.3f} s ({training['cpu'] / training['device']:.1f}x)")
    result = {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "torch": torch.__version__, "rows": rows, "train_step_seconds": training}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if not all(row["ok"] for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
