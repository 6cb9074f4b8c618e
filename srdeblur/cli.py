"""The ``srdeblur`` command: parse, call the library, render. Heavy modules are imported inside commands so
``srdeblur --help`` is instant.

Exit codes: 0 all done, 1 some inputs failed, 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import logging
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    help="Make images sharper and larger: learned super-resolution and blind deblurring, classical "
    "deconvolution baselines, and paper-exact PSNR/SSIM evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class UpscaleMethod(str, Enum):
    net = "net"
    bicubic = "bicubic"
    lanczos = "lanczos"


class DeblurMethod(str, Enum):
    net = "net"
    wiener = "wiener"
    rl = "rl"


class Task(str, Enum):
    sr = "sr"
    deblur = "deblur"


def _fail(message: str, code: int = 2) -> None:
    from srdeblur.report import stderr_console

    stderr_console().print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


Inputs = Annotated[list[Path], typer.Argument(help="Image files and/or folders.", show_default=False)]
Output = Annotated[
    Optional[Path],
    typer.Option("-o", "--output", help="Output file (single input) or folder (several inputs or a folder)."),
]
Recursive = Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders; the tree is kept.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs (never an input).")]
SkipExisting = Annotated[bool, typer.Option("--skip-existing", help="Leave existing outputs alone (resume a batch).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")]


def _run_batch(inputs, output, suffix, recursive, overwrite, skip_existing, quiet, as_json, restore) -> None:
    from srdeblur.batch import UsageError, plan_jobs, run_jobs
    from srdeblur.report import batch_table, print_json, stderr_console

    console = stderr_console(quiet=quiet)
    try:
        jobs = plan_jobs(inputs, output=output, suffix=suffix, recursive=recursive)
    except UsageError as error:
        _fail(str(error))
    if not jobs:
        _fail("no images found in the given input(s)")

    def show(result) -> None:
        colour = {"done": "green", "skipped": "yellow", "failed": "red"}[result.status]
        detail = f" ({result.message})" if result.message else f" {result.seconds:.2f}s"
        console.print(f"[{colour}]{result.status}[/{colour}] {result.job.source} -> {result.job.target}{detail}",
                      highlight=False, soft_wrap=True)

    try:
        results = run_jobs(jobs, restore, overwrite=overwrite, skip_existing=skip_existing, on_result=show)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]")
        raise typer.Exit(130)
    failed = sum(r.status == "failed" for r in results)
    if len(results) > 1 or failed:
        console.print(batch_table(results))
    if as_json:
        print_json({"results": [
            {"input": str(r.job.source), "output": str(r.job.target), "status": r.status,
             "message": r.message, "seconds": r.seconds} for r in results]})
    if failed:
        raise typer.Exit(1)


@app.command()
def upscale(
    inputs: Inputs,
    scale: Annotated[int, typer.Option("--scale", "-s", help="Upscaling factor: 2, 3, 4 or 8.")] = 4,
    method: Annotated[UpscaleMethod, typer.Option(help="net (learned), bicubic (MATLAB) or lanczos.")] = UpscaleMethod.net,
    output: Output = None,
    recursive: Recursive = False,
    overwrite: Overwrite = False,
    skip_existing: SkipExisting = False,
    quiet: Quiet = False,
    as_json: JsonOut = False,
) -> None:
    """Upscale images (learned super-resolution by default)."""
    if scale not in (2, 3, 4, 8):
        _fail(f"--scale must be 2, 3, 4 or 8, got {scale}")
    from srdeblur.io import Image
    from srdeblur.inference import upscale as upscale_pixels
    from srdeblur.resize import imresize

    model = _load_model("lapsr") if method == UpscaleMethod.net else None

    def restore(image: Image) -> Image:
        pixels = upscale_pixels(image.pixels, scale=scale, method=method.value, model=model)
        alpha = None if image.alpha is None else imresize(image.alpha, scale=scale).clamp(0, 1)
        return Image(pixels, alpha, image.meta)

    _run_batch(inputs, output, f"_x{scale}", recursive, overwrite, skip_existing, quiet, as_json, restore)


@app.command()
def deblur(
    inputs: Inputs,
    method: Annotated[DeblurMethod, typer.Option(help="net (blind, learned), wiener or rl (need --psf).")] = DeblurMethod.wiener,
    psf: Annotated[Optional[str], typer.Option(help="gaussian:SIGMA, motion:LENGTH,ANGLE, disk:RADIUS or a PNG/NPY kernel.")] = None,
    iterations: Annotated[int, typer.Option(min=1, help="Richardson-Lucy iterations.")] = 30,
    balance: Annotated[float, typer.Option(min=0.0, help="Wiener regularisation weight.")] = 0.005,
    tv: Annotated[float, typer.Option(min=0.0, help="Total-variation weight for Richardson-Lucy (0: plain RL).")] = 0.0,
    output: Output = None,
    recursive: Recursive = False,
    overwrite: Overwrite = False,
    skip_existing: SkipExisting = False,
    quiet: Quiet = False,
    as_json: JsonOut = False,
) -> None:
    """Deblur images: blind with the network, or with a known PSF (Wiener, Richardson-Lucy)."""
    from srdeblur.io import Image
    from srdeblur.inference import deblur as deblur_pixels
    from srdeblur.kernels import PSFError, parse_psf

    kernel = None
    if method in (DeblurMethod.wiener, DeblurMethod.rl):
        if psf is None:
            _fail(f"--method {method.value} needs --psf (e.g. --psf gaussian:1.5 or --psf kernel.png)")
        try:
            kernel = parse_psf(psf)
        except PSFError as error:
            _fail(f"--psf: {error}")
    model = _load_model("srndeblur") if method == DeblurMethod.net else None

    def restore(image: Image) -> Image:
        pixels = deblur_pixels(image.pixels, method=method.value, psf=kernel, iterations=iterations,
                               balance=balance, tv_weight=tv, model=model)
        return Image(pixels, image.alpha, image.meta)

    _run_batch(inputs, output, "_deblurred", recursive, overwrite, skip_existing, quiet, as_json, restore)


def _load_model(name: str):
    from srdeblur.weights import WeightsError, load_model

    try:
        return load_model(name)
    except WeightsError as error:
        _fail(str(error), code=1)


@app.command("eval")
def evaluate_command(
    dataset: Annotated[str, typer.Option(help="samples, set5, set14, bsd68, levin, sun2013, or a folder of ground-truth images.")] = "samples",
    task: Annotated[Optional[Task], typer.Option(help="sr or deblur (default: the dataset's own).")] = None,
    scale: Annotated[int, typer.Option(help="SR factor (2, 3, 4, 8); also the border shaved.")] = 4,
    method: Annotated[Optional[str], typer.Option(help="Comma-separated methods, e.g. bicubic,net or input,wiener,rl.")] = None,
    data_root: Annotated[Optional[Path], typer.Option(envvar="SRDEBLUR_DATA", help="Folder holding the named datasets.")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Only the first N images.")] = None,
    per_image: Annotated[bool, typer.Option("--per-image/--summary-only", help="One table row per image.")] = True,
    as_json: JsonOut = False,
    quiet: Quiet = False,
) -> None:
    """PSNR/SSIM of methods side by side, with the SR papers' conventions."""
    if scale not in (2, 3, 4, 8):
        _fail(f"--scale must be 2, 3, 4 or 8, got {scale}")
    from srdeblur.evaluate import evaluate
    from srdeblur.report import evaluation_table, group_table, print_json, stderr_console
    from srdeblur.weights import WeightsError

    console = stderr_console(quiet=quiet)
    methods = tuple(m.strip() for m in method.split(",") if m.strip()) if method else None
    try:
        with console.status("evaluating…") as status:
            evaluation = evaluate(
                dataset, task=task.value if task else None, scale=scale, methods=methods, root=data_root,
                limit=limit,
                on_row=lambda row: status.update(f"{row['image']} {row['method']}: {row['psnr']:.2f} dB"),
            )
    except (FileNotFoundError, ValueError) as error:
        _fail(str(error))
    except WeightsError as error:
        _fail(str(error), code=1)
    result = evaluation.to_dict()
    console.print(evaluation_table(result, per_image=per_image))
    if evaluation.task == "deblur" and any(r["group"] for r in evaluation.rows):
        groups = evaluation.summary("group")
        console.print(group_table(result, groups))
        result["summary_by_group"] = groups
    if as_json:
        print_json(result)


@app.command()
def train(
    task: Annotated[Task, typer.Option(help="sr or deblur.")] = Task.sr,
    data: Annotated[Optional[list[Path]], typer.Option(help="Folder(s) of training images (repeatable).")] = None,
    out: Annotated[Path, typer.Option(help="Run folder for checkpoints.")] = Path("runs/sr"),
    minutes: Annotated[Optional[float], typer.Option(help="Stop cleanly (and save) after this much wall time.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/last.safetensors (optimizer and schedule too).")] = False,
    steps: Annotated[int, typer.Option(help="Length of the cosine learning-rate schedule.")] = 60_000,
    batch: Annotated[int, typer.Option(help="Patches per step (per process).")] = 16,
    patch: Annotated[Optional[int], typer.Option(help="Patch size in pixels (HR side for sr; default 96 for sr, 128 for deblur).")] = None,
    learning_rate: Annotated[float, typer.Option(help="Peak Adam learning rate.")] = 5e-4,
    val_every: Annotated[int, typer.Option(help="Steps between validations on held-out images.")] = 500,
    seed: Annotated[int, typer.Option(help="Seed of the initial weights and of every batch.")] = 0,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop after this many steps in this call.")] = None,
    export: Annotated[Optional[str], typer.Option(help="Instead of training: write OUT's best checkpoint as shipped weights NAME (weights/NAME.safetensors + manifest).")] = None,
    threads: Annotated[int, typer.Option(help="Torch threads (0: one per core). 1 is best when sharing the CPU.")] = 0,
    quiet: Quiet = False,
) -> None:
    """Train or fine-tune on your own images, on a CPU; time-boxed (--minutes) and resumable (--resume)."""
    from srdeblur.report import stderr_console
    from srdeblur.train import TrainConfig, train as run_training

    console = stderr_console(quiet=quiet)
    if export:
        from srdeblur.train import export_weights

        manifest = export_weights(out, export)
        console.print(f"wrote {manifest['file']} ({manifest['params']} parameters, step {manifest['training']['checkpoint_step']})")
        return
    if not data:
        _fail("--data is required (one or more folders of training images)")
    config = TrainConfig(task=task.value, data=tuple(str(d) for d in data), out=str(out), seed=seed, batch=batch,
                         patch=patch or (96 if task == Task.sr else 128), learning_rate=learning_rate,
                         total_steps=steps, val_every=val_every, threads=threads,
                         val_crop=192 if task == Task.sr else 256)
    try:
        info = run_training(
            config, minutes=minutes, resume=resume, max_steps=max_steps,
            on_progress=lambda e: console.print(
                f"step {e['step']}: loss {e['loss']:.4f}, val " + ", ".join(
                    f"{k} {v:.2f} dB" for k, v in e.items() if k.startswith("x") or k in ("psnr", "gain")) + f", {e['cpu_hours']:.2f} CPU-h",
                highlight=False),
        )
    except (ValueError, FileNotFoundError) as error:
        _fail(str(error))
    console.print(f"stopped at step {info['step']}; checkpoints in {out}")


def main() -> None:
    """Console-script entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
