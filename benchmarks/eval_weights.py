"""Measure shipped weights with ``srdeblur eval`` and record the numbers in their manifest.

    python benchmarks/eval_weights.py lapsr            # Set5 x2/x3/x4/x8, Set14 x4, BSD68 x4 (+ x2/x8)
    python benchmarks/eval_weights.py srndeblur        # sun2013 (subset with --limit) and levin

For each evaluation this runs exactly what ``srdeblur eval --dataset D --scale S --method ... --json`` runs
(``srdeblur.evaluation.evaluate``), prints the summary, and stores it under ``metrics`` in
``weights/<name>.json`` together with the command that reproduces it. The weights file is not touched, so
its sha256 stays valid.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from srdeblur.evaluation import evaluate
from srdeblur.weights import load_model, read_manifest, weights_dir

SR_RUNS = [("set5", 2), ("set5", 3), ("set5", 4), ("set5", 8), ("set14", 2), ("set14", 4), ("bsd68", 2), ("bsd68", 4), ("bsd68", 8)]


def _record(name: str, key: str, evaluation, command: str) -> dict:
    summary = evaluation.summary()
    entry = {
        "command": command,
        "conventions": evaluation.conventions,
        "images": summary[next(iter(summary))]["count"],
        "summary": {m: {k: round(v, 4) for k, v in s.items() if k != "count"} for m, s in summary.items()},
    }
    if evaluation.task == "deblur":
        groups = evaluation.summary("group")
        entry["by_kernel"] = {label: {k: round(v, 4) for k, v in s.items() if k in ("psnr", "ssim")}
                              for label, s in groups.items()}
    print(key, json.dumps(entry["summary"]), flush=True)
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=["lapsr", "srndeblur"])
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of sun2013")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--methods", default="input,wiener,rl,net",
                        help="srndeblur: methods beside each other (input,net skips the slow classical ones)")
    parser.add_argument("--ensemble", type=int, default=1, help="the network's self-ensemble: 1, 2, 4 or 8 transforms")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.name)
    manifest_path = weights_dir() / f"{args.name}.json"
    manifest = read_manifest(args.name)
    metrics = {}
    ensemble = f" --ensemble {args.ensemble}" if args.ensemble > 1 else ""
    key = "metrics" if args.ensemble == 1 else f"metrics_ensemble{args.ensemble}"
    started = time.time()
    if args.name == "lapsr":
        for dataset, scale in SR_RUNS:
            evaluation = evaluate(dataset, scale=scale, methods=("bicubic", "net"), models={"sr": model},
                                  ensemble=args.ensemble)
            command = f"srdeblur eval --dataset {dataset} --scale {scale} --method bicubic,net{ensemble}"
            metrics[f"{dataset}_x{scale}"] = _record(args.name, f"{dataset} x{scale}", evaluation, command)
    else:
        limit = f" --limit {args.limit}" if args.limit else ""
        net_options = {"models": {"deblur": model}, "ensemble": args.ensemble}
        methods = tuple(args.methods.split(","))
        evaluation = evaluate("sun2013", task="deblur", methods=methods, limit=args.limit, **net_options)
        metrics["sun2013"] = _record(args.name, "sun2013", evaluation,
                                     f"srdeblur eval --dataset sun2013 --method {args.methods}{limit}{ensemble}")
        evaluation = evaluate("levin", task="deblur", methods=methods, **net_options)
        metrics["levin"] = _record(args.name, "levin", evaluation,
                                   f"srdeblur eval --dataset levin --method {args.methods}{ensemble}")
    manifest[key] = metrics
    manifest[f"{key}_measured"] = {"date": time.strftime("%Y-%m-%d"), "seconds": round(time.time() - started)}
    temporary = manifest_path.with_name(f".{manifest_path.name}.tmp")
    temporary.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(temporary, manifest_path)


if __name__ == "__main__":
    main()
