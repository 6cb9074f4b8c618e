"""Whole-process batch throughput: ``srdeblur upscale`` on a folder vs OpenCV dnn_superres LapSRN looping over it.

Standalone (run by hand, not by CI)::

    python benchmarks/bench_batch_throughput.py [--dataset ../shared/data/bench/BSD68] [--scale 4] [--threads 2]
        [--peer-python /path/to/venv/bin/python] [--repeat 1] [--methods net bicubic] [--json FILE]

1. The HR images of ``--dataset`` are mod-cropped and shrunk with MATLAB-style bicubic (8-bit), exactly as
   ``srdeblur eval`` makes its LR (:func:`srdeblur.evaluation.sr_samples`), into a temporary folder outside the
   repository (removed at the end).
2. Each tool runs as a whole process, start-up included, timed from spawn to exit with ``time.perf_counter``:

   - ``python -m srdeblur upscale LR/ --scale S -o OUT/ --quiet`` for every ``--methods`` entry (``net``: the
     shipped network; ``bicubic``: no network, i.e. start-up + decode + encode + write);
   - OpenCV: a fresh ``--peer-python`` process that loads ``LapSRN_xS.pb`` and loops over the same sorted files
     with ``cv2.imread`` -> ``sr.upsample`` -> ``cv2.imwrite`` (PNG, OpenCV's default compression).

   Both get ``--threads`` threads (``OMP_NUM_THREADS``; OpenCV also ``cv2.setNumThreads``). With ``--repeat N``
   the runs are interleaved (ours, OpenCV, ours, ...) and the best of N is reported beside every run.
3. The outputs are checked: every input has exactly one output of the right size (both tools).

``cv2.dnn_superres`` ships only in ``opencv-contrib-python-headless``, never a project dependency: give a venv
that has it with ``--peer-python`` (default: this interpreter if it has ``cv2.dnn_superres``). For example::

    python3 -m venv /work/peer-venv && /work/peer-venv/bin/pip install opencv-contrib-python-headless numpy
    python benchmarks/bench_batch_throughput.py --peer-python /work/peer-venv/bin/python

The machine's load average is printed before and after: on a shared machine both tools see the same load
within one run (interleaved), so the ratio is fairer than the absolute times.
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

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

# The peer's loop, run with -c in its own interpreter: argv = model, scale, threads, input folder, output folder.
OPENCV_LOOP = r"""
import sys, time
from pathlib import Path
import cv2
model, scale, threads, source, target = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5])
cv2.setNumThreads(threads)
sr = cv2.dnn_superres.DnnSuperResImpl_create()
sr.readModel(model)
sr.setModel("lapsrn", scale)
target.mkdir(parents=True, exist_ok=True)
for path in sorted(source.glob("*.png")):
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if not cv2.imwrite(str(target / path.name), sr.upsample(image)):
        sys.exit(f"cannot write {target / path.name}")
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_lr(dataset: Path, scale: int, folder: Path) -> list[tuple[str, tuple[int, int]]]:
    """Write the LR images of ``dataset`` into ``folder``; their names and the expected output sizes."""
    sys.path.insert(0, str(ROOT))
    from srdeblur.evaluation import sr_samples
    from srdeblur.io import write_image

    folder.mkdir(parents=True)
    expected = []
    for sample in sr_samples(dataset, scale=scale):
        write_image(folder / f"{sample.name}.png", sample.degraded)
        expected.append((f"{sample.name}.png", tuple(sample.ground_truth.shape[-2:])))
    return expected


def timed(command: list[str], threads: int) -> tuple[float, subprocess.CompletedProcess]:
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, env=environment)
    return time.perf_counter() - started, finished


def check_outputs(folder: Path, expected: list[tuple[str, tuple[int, int]]]) -> str:
    """"ok", or what is wrong with the outputs in ``folder``."""
    import cv2

    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    if names != sorted(name for name, _ in expected):
        return f"{len(names)} outputs for {len(expected)} inputs"
    for name, size in expected:
        image = cv2.imread(str(folder / name), cv2.IMREAD_UNCHANGED)
        if image is None or tuple(image.shape[:2]) != size:
            return f"{name}: shape {None if image is None else image.shape[:2]}, expected {size}"
    return "ok"


def has_dnn_superres(python: str) -> bool:
    probe = subprocess.run([python, "-c", "import cv2, sys; sys.exit(0 if hasattr(cv2, 'dnn_superres') else 1)"],
                           capture_output=True)
    return probe.returncode == 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=SHARED / "data" / "bench" / "BSD68")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peer-python", default=sys.executable, help="interpreter with cv2.dnn_superres")
    parser.add_argument("--peers", type=Path, default=SHARED / "peers" / "opencv-dnn-superres")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved runs of each tool (best reported)")
    parser.add_argument("--methods", nargs="+", default=["net", "bicubic"], choices=["net", "bicubic", "lanczos"])
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not has_dnn_superres(args.peer_python):
        sys.exit(f"{args.peer_python} has no cv2.dnn_superres: give --peer-python a venv with "
                 "opencv-contrib-python-headless (see this script's docstring)")
    model = args.peers / f"LapSRN_x{args.scale}.pb"
    runs: dict[str, list[float]] = {f"srdeblur {m}": [] for m in args.methods}
    runs["opencv LapSRN"] = []
    checks: dict[str, str] = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as temporary:
        lr = Path(temporary) / "lr"
        log(f"making LR x{args.scale} of {args.dataset}")
        expected = make_lr(args.dataset, args.scale, lr)
        for attempt in range(args.repeat):
            for name in runs:
                out = Path(temporary) / f"out_{attempt}_{name.replace(' ', '_')}"
                if name.startswith("srdeblur"):
                    method = name.split()[1]
                    command = [sys.executable, "-m", "srdeblur", "upscale", str(lr), "--scale", str(args.scale),
                               "--method", method, "-o", str(out), "--quiet"]
                else:
                    command = [args.peer_python, "-c", OPENCV_LOOP, str(model), str(args.scale), str(args.threads),
                               str(lr), str(out)]
                seconds, finished = timed(command, args.threads)
                if finished.returncode != 0:
                    sys.exit(f"{name} failed ({finished.returncode}): {finished.stderr.strip()[-500:]}")
                runs[name].append(seconds)
                checks[name] = check_outputs(out, expected)
                log(f"{name}: {seconds:.2f} s ({checks[name]})")
    best = {name: min(times) for name, times in runs.items()}
    reference = best["opencv LapSRN"]
    result = {
        "images": len(expected), "scale": args.scale, "threads": args.threads, "dataset": str(args.dataset),
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "runs": runs, "best_seconds": best, "ratio_to_opencv": {n: t / reference for n, t in best.items()},
        "outputs": checks,
    }
    print(f"{len(expected)} images x{args.scale}, {args.threads} threads, load average "
          f"{load_before[0]:.2f} -> {result['load_average_after'][0]:.2f}")
    for name, seconds in best.items():
        print(f"  {name:18s} {seconds:6.2f} s  ({seconds / reference:.2f}x OpenCV)  runs: "
              + ", ".join(f"{t:.2f}" for t in runs[name]) + f"  outputs: {checks[name]}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
