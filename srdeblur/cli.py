"""The ``srdeblur`` command: parse, call the library, render. Heavy modules are imported inside commands so
``srdeblur --help`` is instant.

Exit codes: 0 all done, 1 some inputs failed, 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
from dataclasses import dataclass
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
    auto = "auto"
    blind = "blind"
    net = "net"
    wiener = "wiener"
    rl = "rl"


class Task(str, Enum):
    sr = "sr"
    deblur = "deblur"


class TrainTask(str, Enum):
    sr = "sr"
    deblur = "deblur"
    nonblind = "nonblind"
    srgate = "srgate"
    blurgate = "blurgate"


class TrainDegradation(str, Enum):
    bicubic = "bicubic"
    realistic = "realistic"


class OutputFormat(str, Enum):
    png = "png"
    jpg = "jpg"
    tif = "tif"
    webp = "webp"
    bmp = "bmp"


# Same value as srdeblur.io.DEFAULT_MAX_PIXELS (a test checks it): importing io here would slow down --help.
DEFAULT_MAX_PIXELS = 300_000_000
# Richardson-Lucy's TV weight after a blind PSF estimate (auto, blind): evaluation.DeblurSettings.rl_tv_weight (a test checks it).
BLIND_TV_WEIGHT = 0.002


def _fail(message: str, code: int = 2) -> None:
    _print_error(message)
    raise typer.Exit(code)


Inputs = Annotated[list[Path], typer.Argument(help="Image files and/or folders.", show_default=False)]
Output = Annotated[
    Optional[Path],
    typer.Option("-o", "--output", help="Output file (single input) or folder (several inputs or a folder)."),
]
Recursive = Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders; the tree is kept.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs (never an input).")]
SkipExisting = Annotated[bool, typer.Option("--skip-existing", help="Leave existing outputs alone (resume a batch).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output (errors are still shown).")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")]
Format = Annotated[
    Optional[OutputFormat],
    typer.Option("--format", help="Output format (changes the extension); default: the input's own.",
                 show_default=False),
]
Quality = Annotated[
    Optional[int],
    typer.Option("--quality", min=1, max=100, help="JPEG/WebP quality (default 95; WebP 100 is lossless).",
                 show_default=False),
]
MaxPixels = Annotated[
    int,
    typer.Option("--max-pixels", min=1, help="Refuse larger inputs (width x height) before decoding them."),
]
Tile = Annotated[str, typer.Option("--tile", help="Tile side in input pixels; 0: whole image; auto: from free memory.")]
TileOverlap = Annotated[int, typer.Option("--tile-overlap", min=0, help="Context pixels around each tile.")]


class Precision(str, Enum):
    auto = "auto"
    bfloat16 = "bfloat16"
    float32 = "float32"


NetPrecision = Annotated[
    Precision,
    typer.Option(help="Network arithmetic: auto (the SR network's feature path in int8 on x86 CPUs, 1.4x faster, "
                      "Set5 within 0.07 dB; other networks and the rest as bfloat16), bfloat16 (hidden layers in "
                      "bfloat16 on CPUs with native bfloat16, same PSNR, ~1.7x faster than float32) or float32."),
]
Ensemble = Annotated[
    int,
    typer.Option(help="Self-ensemble: average the network over 1, 2, 4 or 8 flips/rotations (that many times the "
                      "time; measured gains in the README)."),
]


def _check_ensemble(count: int) -> None:
    if count not in (1, 2, 4, 8):  # inference.ENSEMBLES (not imported: --help stays instant)
        _fail(f"--ensemble must be 1, 2, 4 or 8, got {count}")


DeviceOption = Annotated[
    str,
    typer.Option("--device", help="Where to compute: auto (CUDA if available, else the CPU), cpu, cuda, cuda:N or "
                                  "mps. Under torchrun, auto/cuda take the GPU of the local rank."),
]
ShardOption = Annotated[
    Optional[str],
    typer.Option("--shard", help="Process only shard K of N (K = 1..N) of the sorted inputs, e.g. for a Slurm "
                                 "array: --shard $SLURM_ARRAY_TASK_ID/N. Under torchrun each rank also takes "
                                 "every WORLD_SIZE-th job.", show_default=False),
]


def _parse_device(spec: str):
    """``--device`` -> a ``torch.device``; exit 2 with one line if unknown or not present.

    Every command that computes starts here, so this is also where the host allocator is told to keep the
    large blocks it frees (:func:`srdeblur.devices.keep_freed_memory`: a fifth of a small-image batch's time).
    """
    from srdeblur.devices import DeviceError, keep_freed_memory, parse_device

    try:
        device = parse_device(spec)
    except DeviceError as error:
        _fail(str(error))
    keep_freed_memory()
    return device


def _parse_shard(spec: Optional[str]) -> tuple[int, int, str]:
    """``--shard`` and torchrun's RANK / WORLD_SIZE combined -> (index, count, label); exit 2 if malformed."""
    from srdeblur.devices import ShardError, distributed_shard, parse_shard

    try:
        index, count = parse_shard(spec) if spec is not None else (0, 1)
        rank, world = distributed_shard()
    except ShardError as error:
        _fail(str(error))
    labels = ([f"shard {index + 1}/{count}"] if count > 1 else []) + ([f"rank {rank}/{world}"] if world > 1 else [])
    # Shard `index` of `count`, then the rank's share of it: job i of the plan goes to the unique process
    # with i % count == index and (i // count) % world == rank, i.e. index + count * rank modulo count * world.
    return index + count * rank, count * world, ", ".join(labels)


@dataclass(frozen=True)
class BatchOptions:
    """The file-handling options shared by ``upscale`` and ``deblur``."""

    output: Optional[Path]
    recursive: bool
    overwrite: bool
    skip_existing: bool
    quiet: bool
    as_json: bool
    output_format: Optional[OutputFormat]
    quality: Optional[int]
    max_pixels: int
    shard: tuple[int, int, str] = (0, 1, "")  # (index, count, label) from _parse_shard


# Outputs above this many pixels are assembled band by band as 8/16-bit samples instead of float32
# (4 bytes per sample): a x4 of a 12-megapixel photo then needs 0.6 GB instead of 2.3 GB.
LARGE_OUTPUT_PIXELS = 32_000_000


def _large_output_canvas(pixels, scale: int, bit_depth: int):
    """A :class:`srdeblur.io.Canvas` for an output too large for float32, else None."""
    from srdeblur.io import Canvas

    _, channels, height, width = pixels.shape
    if height * width * scale * scale <= LARGE_OUTPUT_PIXELS:
        return None
    return Canvas(channels, height * scale, width * scale, bit_depth=bit_depth)


def _parse_tile(text: str) -> Optional[int]:
    """``--tile``: "auto" -> None (chosen from free memory), else an integer >= 0 (0: whole image)."""
    if text.strip().lower() == "auto":
        return None
    try:
        tile = int(text)
    except ValueError:
        tile = -1
    if tile < 0:
        _fail(f"--tile must be 'auto' or an integer >= 0, got {text!r}")
    return tile


class _BatchView:
    """What the user sees of a batch on stderr: a rich progress bar (overall, with ETA, and per tile for large
    images), one line per file, notes on ignored files and a summary table. ``--quiet`` keeps only errors."""

    def __init__(self, console, *, quiet: bool, total: int) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.console = console
        self.quiet = quiet
        self.results: list = []
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=True,
            disable=quiet or not console.is_terminal,  # a bar is only useful on a terminal; logs keep the lines
        )
        self.overall = self.progress.add_task("images", total=total)
        self.tiles = None

    def __enter__(self) -> "_BatchView":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def start(self, job) -> None:
        self.progress.update(self.overall, description=f"{job.source.name}")
        if self.tiles is not None:
            self.progress.remove_task(self.tiles)
            self.tiles = None

    def tile(self, done: int, total: int) -> None:
        """Per-tile progress of the current image (the ``on_tile`` callback of the inference functions)."""
        if total <= 1:
            return
        if self.tiles is None:
            self.tiles = self.progress.add_task("  tiles", total=total)
        self.progress.update(self.tiles, completed=done, total=total)

    def finish(self, result) -> None:
        self.results.append(result)
        self.progress.advance(self.overall)
        self._print(_result_line(result), error=result.status == "failed")

    def _print(self, line: str, *, error: bool = False) -> None:
        if error and self.quiet:
            from srdeblur.report import stderr_console

            stderr_console().print(line, highlight=False, soft_wrap=True)
        elif not self.quiet:
            self.progress.console.print(line, highlight=False, soft_wrap=True)


def _reason(source: Path, message: str) -> str:
    """A message without its leading ``<source>: `` (the line names the file already)."""
    prefix = f"{source}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _result_line(result) -> str:
    from rich.markup import escape

    source, target = escape(str(result.job.source)), escape(str(result.job.target))
    if result.status == "failed":
        return f"[red]error:[/red] {source}: {escape(_reason(result.job.source, result.message))}"
    if result.status == "skipped":
        return f"[yellow]skipped[/yellow] {source}: {escape(result.message)}"
    notes = "".join(f"; [yellow]note:[/yellow] {escape(n)}" for n in result.notes)
    done = _decision_text(result.info.get("deblur"))
    return f"[green]done[/green] {source} -> {target} ({result.seconds:.2f}s{escape(done)}){notes}"


def _decision_text(decision) -> str:
    """``, blind`` / ``, net: spread 212 px > 180`` / ``, none: looks sharp ...``: the deblurring path of a file, for its line ("" if none)."""
    if not decision:
        return ""
    reasons = "; ".join(decision.get("reasons") or ())
    if not reasons:
        return f", {decision['path']}"
    if decision["path"] in ("net", "none"):
        return f", {decision['path']}: {reasons}"  # auto fell back to the network, or left the photo alone
    return f", {decision['path']} despite {reasons}"  # blind deconvolves whatever the gate says


_MAX_NOTES_SHOWN = 20


def _show_ignored(console, ignored: list, *, quiet: bool) -> None:
    from rich.markup import escape

    if quiet:
        return
    for entry in ignored[:_MAX_NOTES_SHOWN]:
        console.print(f"[yellow]note:[/yellow] skipped {escape(str(entry.path))}: {escape(entry.reason)}", highlight=False,
                      soft_wrap=True)
    if len(ignored) > _MAX_NOTES_SHOWN:
        console.print(f"[yellow]note:[/yellow] … and {len(ignored) - _MAX_NOTES_SHOWN} more entries skipped "
                      "(--json lists them all)", highlight=False, soft_wrap=True)


def _summary(results: list, ignored: list, *, interrupted: bool, total: int) -> dict:
    counts = {status: sum(r.status == status for r in results) for status in ("done", "skipped", "failed")}
    counts.update(ignored=len(ignored), not_started=total - len(results))
    return {
        "results": [
            {"input": str(r.job.source), "output": str(r.job.target), "status": r.status, "message": r.message,
             "seconds": r.seconds, "notes": list(r.notes), **r.info} for r in results
        ],
        "ignored": [{"path": str(entry.path), "reason": entry.reason} for entry in ignored],
        "counts": counts,
        "interrupted": interrupted,
    }


def _run_batch(inputs: list[Path], options: BatchOptions, suffix: str, make_restore) -> None:
    """Plan, check, run and report a batch. ``make_restore(on_tile)`` returns the per-image restoration."""
    from srdeblur.batch import UsageError, check_writable, plan_jobs, run_jobs
    from srdeblur.report import batch_table, print_json, stderr_console

    console = stderr_console(quiet=options.quiet)
    ignored: list = []
    output_suffix = f".{options.output_format.value}" if options.output_format else None
    try:
        jobs = plan_jobs(inputs, output=options.output, suffix=suffix, recursive=options.recursive,
                         output_suffix=output_suffix, on_ignored=ignored.append)
        check_writable(jobs)
    except UsageError as error:
        _fail(str(error))
    _show_ignored(console, ignored, quiet=options.quiet)
    if not jobs:
        hint = any("without --recursive" in entry.reason for entry in ignored)
        _fail(f"no images found in {', '.join(str(p) for p in inputs)}"
              + (" (use --recursive to search sub-folders)" if hint else ""))
    shard_index, shard_count, shard_label = options.shard
    if shard_count > 1:
        from srdeblur.devices import shard_of

        planned = len(jobs)
        jobs = shard_of(jobs, shard_index, shard_count)  # the whole plan was checked above, in every shard
        if not options.quiet:
            console.print(f"{shard_label}: {len(jobs)} of {planned} images", highlight=False, soft_wrap=True)

    interrupted = False
    with _BatchView(console, quiet=options.quiet, total=len(jobs)) as view:
        try:
            run_jobs(jobs, make_restore(view.tile), overwrite=options.overwrite, skip_existing=options.skip_existing,
                     max_pixels=options.max_pixels, quality=options.quality or 95, on_start=view.start,
                     on_result=view.finish)
        except KeyboardInterrupt:
            interrupted = True
    results = view.results
    failed = sum(r.status == "failed" for r in results)
    if len(jobs) > 1 or interrupted:
        table = batch_table(results)
        extra = [f"{len(ignored)} ignored"] if ignored else []
        if interrupted:
            extra.append(f"{len(jobs) - len(results)} not started")
        table.caption = ", ".join([table.caption, *extra]) if table.caption else ", ".join(extra)
        console.print(table)
    if options.as_json:
        print_json(_summary(results, ignored, interrupted=interrupted, total=len(jobs)))
    if interrupted:
        stderr_console().print("[red]interrupted[/red]: finished outputs are complete, no partial file was left; "
                               "run again with --skip-existing to resume", highlight=False, soft_wrap=True)
        raise typer.Exit(130)
    if failed:
        raise typer.Exit(1)


def _check_psf_fits(psf, pixels) -> None:
    kh, kw = psf.shape
    height, width = pixels.shape[-2:]
    if kh > height or kw > width:
        raise ValueError(f"the {kh}x{kw} PSF is larger than the {height}x{width} image")


@app.command()
def upscale(
    inputs: Inputs,
    scale: Annotated[int, typer.Option("--scale", "-s", help="Upscaling factor: 2, 3, 4 or 8.")] = 4,
    method: Annotated[UpscaleMethod, typer.Option(help="net (learned), bicubic (MATLAB) or lanczos.")] = UpscaleMethod.net,
    model_name: Annotated[Optional[str], typer.Option("--model", help="Shipped SR weights for --method net (see `srdeblur models`): lapsr (clean inputs), lapsr-real (noisy, JPEG, soft photos). Default: chosen per image by the srgate classifier.", show_default=False)] = None,
    output: Output = None,
    recursive: Recursive = False,
    overwrite: Overwrite = False,
    skip_existing: SkipExisting = False,
    output_format: Format = None,
    quality: Quality = None,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    tile: Tile = "auto",
    tile_overlap: TileOverlap = 32,
    precision: NetPrecision = Precision.auto,
    ensemble: Ensemble = 1,
    device: DeviceOption = "auto",
    shard: ShardOption = None,
    quiet: Quiet = False,
    as_json: JsonOut = False,
) -> None:
    """Upscale images (learned super-resolution by default).

    Alpha is resized separately; the colour under transparent pixels is filled from visible ones first (no fringes).
    """
    if scale not in (2, 3, 4, 8):
        _fail(f"--scale must be 2, 3, 4 or 8, got {scale}")
    _check_ensemble(ensemble)
    tile_size = _parse_tile(tile)
    options = BatchOptions(output, recursive, overwrite, skip_existing, quiet, as_json, output_format, quality,
                           max_pixels, _parse_shard(shard))
    target_device = _parse_device(device)
    from srdeblur.batch import process_image
    from srdeblur.inference import upscale as upscale_pixels

    # No --model: the library picks lapsr or lapsr-real per image (inference.default_sr_weights); the weights it
    # may pick are loaded here, so missing or damaged ones stop the command before any file is read.
    from srdeblur.inference import int8_applies

    int8 = int8_applies(precision.value, target_device)
    model = _load_sr_model(model_name, int8=int8) if method == UpscaleMethod.net and model_name else None
    if method == UpscaleMethod.net and not model_name:
        _preload_default_sr_weights(int8=int8)

    def make_restore(on_tile):
        def restore(image):
            def colour(pixels):
                return upscale_pixels(pixels, scale=scale, method=method.value, model=model, tile=tile_size,
                                      tile_overlap=tile_overlap, on_tile=on_tile, precision=precision.value,
                                      ensemble=ensemble, device=target_device,
                                      into=_large_output_canvas(pixels, scale, image.meta.bit_depth))

            return process_image(image, colour)

        return restore

    _run_batch(inputs, options, f"_x{scale}", make_restore)


@app.command()
def deblur(
    inputs: Inputs,
    method: Annotated[Optional[DeblurMethod], typer.Option(help="auto (photos the blur gate finds sharp are left as they are; the others: blind, or the network where the estimate is not credible), blind (always the estimated PSF), net (the network alone), wiener or rl (need --psf). Default: wiener with --psf, else auto.", show_default=False)] = None,
    psf: Annotated[Optional[str], typer.Option(help="gaussian:SIGMA, motion:LENGTH,ANGLE, disk:RADIUS or a PNG/NPY kernel.")] = None,
    psf_size: Annotated[int, typer.Option(min=5, help="auto/blind: side of the estimated PSF in pixels (odd); the blur must fit in it.")] = 25,  # blind.DEFAULT_PSF_SIZE
    save_psf: Annotated[bool, typer.Option("--save-psf", help="auto/blind: write the estimated PSF beside each output as <output stem>_psf.png (16-bit, peak 65535), also where auto ran the network (not where it left the photo alone: no PSF is estimated there).")] = False,
    iterations: Annotated[int, typer.Option(min=1, help="Richardson-Lucy iterations (rl, auto, blind).")] = 30,
    balance: Annotated[float, typer.Option(min=0.0, help="Wiener regularisation weight.")] = 0.005,
    tv: Annotated[Optional[float], typer.Option(min=0.0, help="Total-variation weight for Richardson-Lucy (0: plain RL). Default: 0.002 with auto/blind, 0 with rl.", show_default=False)] = None,
    noise: Annotated[str, typer.Option(help="--psf with --method net: the noise sigma on the 0..1 scale (0.01 = 2.55/255; '1%' works too), or auto: estimated from each image.")] = "auto",
    output: Output = None,
    recursive: Recursive = False,
    overwrite: Overwrite = False,
    skip_existing: SkipExisting = False,
    output_format: Format = None,
    quality: Quality = None,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    tile: Tile = "auto",
    tile_overlap: TileOverlap = 96,  # inference.DEBLUR_TILE_OVERLAP (not imported: --help stays instant)
    precision: NetPrecision = Precision.auto,
    ensemble: Ensemble = 1,
    device: DeviceOption = "auto",
    shard: ShardOption = None,
    quiet: Quiet = False,
    as_json: JsonOut = False,
) -> None:
    """Deblur images: blind (estimated PSF or the network), or with a known PSF (the learned net, Wiener, Richardson-Lucy)."""
    _check_ensemble(ensemble)
    tile_size = _parse_tile(tile)
    options = BatchOptions(output, recursive, overwrite, skip_existing, quiet, as_json, output_format, quality,
                           max_pixels, _parse_shard(shard))
    target_device = _parse_device(device)
    from srdeblur.batch import Restored, process_image
    from srdeblur.inference import deblur as deblur_pixels
    from srdeblur.kernels import PSFError, parse_psf

    if method is None:
        method = DeblurMethod.wiener if psf is not None else DeblurMethod.auto
    if psf_size % 2 == 0:
        _fail(f"--psf-size must be odd, got {psf_size}")
    if psf is not None and method not in (DeblurMethod.wiener, DeblurMethod.rl, DeblurMethod.net):
        _fail(f"--method {method.value} is blind: drop --psf, or use --method net, rl or wiener with it")
    if save_psf and (psf is not None or method not in (DeblurMethod.auto, DeblurMethod.blind)):
        _fail("--save-psf writes the PSF that --method auto or blind estimates; "
              + ("--psf gives a known one" if psf is not None else f"--method {method.value} estimates none"))
    sigma = _parse_noise(noise)
    if psf is not None and method == DeblurMethod.net and ensemble > 1:
        _fail("--ensemble applies to the blind network only, not to --psf with --method net")
    if tv is None:
        tv = BLIND_TV_WEIGHT if method in (DeblurMethod.auto, DeblurMethod.blind) else 0.0
    kernel = None
    if method in (DeblurMethod.wiener, DeblurMethod.rl) or psf is not None:
        if psf is None:
            _fail(f"--method {method.value} needs --psf (e.g. --psf gaussian:1.5 or --psf kernel.png)")
        try:
            kernel = parse_psf(psf)
        except PSFError as error:
            _fail(f"--psf: {error}")
    if kernel is not None and method == DeblurMethod.net:
        from srdeblur.inference import known_psf_network
        from srdeblur.weights import WeightsError

        try:  # loaded before any file is read, as the library runs it
            model = known_psf_network()
        except WeightsError as error:
            _fail(str(error), code=1)
        # a PSF beyond the training range is logged by the library (a warning, not an error)
    else:
        model = _load_model("srndeblur") if method in (DeblurMethod.net, DeblurMethod.auto) else None

    def make_restore(on_tile):
        def restore(image):
            decisions: list = []  # what the library did to this image (one dict), for --json and the file's line
            estimates: list = []  # --save-psf: the estimated PSF

            def colour(pixels):
                if kernel is not None:
                    _check_psf_fits(kernel, pixels)
                canvas = _large_output_canvas(pixels, 1, image.meta.bit_depth) if method == DeblurMethod.net else None
                return deblur_pixels(pixels, method=method.value, psf=kernel, psf_size=psf_size, iterations=iterations,
                                     balance=balance, tv_weight=tv, model=model, tile=tile_size,
                                     tile_overlap=tile_overlap, on_tile=on_tile, into=canvas,
                                     precision=precision.value, ensemble=ensemble, device=target_device, noise=sigma,
                                     on_psf=estimates.append if save_psf else None, on_decision=decisions.append)

            restored = process_image(image, colour)
            return Restored(restored, {"deblur": decisions[0]} if decisions else {},
                            tuple(_psf_side_image(estimate) for estimate in estimates[:1]))

        return restore

    _run_batch(inputs, options, "_deblurred", make_restore)


def _psf_side_image(estimate):
    """``--save-psf``: the estimate as a 16-bit gray side image ``<output stem>_psf.png``, its peak at 65535
    (:func:`srdeblur.kernels.load_psf` reads it back, normalised)."""
    from srdeblur.batch import SideImage

    return SideImage("_psf.png", (estimate / estimate.max()).float()[None, None], bit_depth=16)


def _parse_noise(text: str) -> Optional[float]:
    """``--noise``: None for auto, else a sigma in [0, 0.5] (a trailing % divides by 100)."""
    if text.strip().lower() == "auto":
        return None
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 0.5:  # also rejects NaN
        _fail(f"--noise must be auto or a sigma in [0, 0.5] (0.01 = 1 %), got {text!r}")
    return value


def _load_sr_model(name: str, *, int8: bool = False):
    """``--model NAME`` for upscale: unknown names exit 2 with the valid ones; another task's weights exit 1.
    ``int8``: the int8 network where its manifest has the ranges (:func:`srdeblur.inference.int8_applies`)."""
    from srdeblur.weights import WeightsError, list_models

    shipped = {entry["name"]: entry for entry in list_models()}
    sr_names = sorted(n for n, entry in shipped.items() if entry.get("task") == "sr")
    if name not in shipped:
        _fail(f"--model: no shipped weights named {name!r}; SR weights: {', '.join(sr_names)}")
    if shipped[name].get("task") != "sr":
        _fail(f"--model {name}: these are {shipped[name].get('task')} weights, not super-resolution "
              f"(SR weights: {', '.join(sr_names)})", code=1)
    try:
        return _load_model(name, int8=int8)
    except WeightsError as error:
        _fail(str(error), code=1)


def _preload_default_sr_weights(*, int8: bool = False) -> None:
    from srdeblur.inference import default_sr_names, shipped_model
    from srdeblur.weights import WeightsError

    try:
        for name in default_sr_names():
            shipped_model(name, int8=int8 and name != "srgate")
    except WeightsError as error:
        _fail(str(error), code=1)


def _load_model(name: str, *, int8: bool = False):
    from srdeblur.weights import WeightsError, load_model

    try:
        return load_model(name, int8=int8)
    except WeightsError as error:
        _fail(str(error), code=1)


@app.command("models")
def models_command(as_json: JsonOut = False) -> None:
    """List the shipped weights: name, task, parameters, what each is for."""
    from srdeblur.report import print_json, stderr_console
    from srdeblur.weights import list_models

    entries = list_models()
    console = stderr_console(quiet=False)
    for entry in entries:
        console.print(f"{entry['name']:<12} {entry.get('task', '?'):<9} {entry.get('params', 0):>9,} params  "
                      f"{entry.get('description', '')}", highlight=False, soft_wrap=True)
    if as_json:
        print_json({"models": [{k: e.get(k) for k in ("name", "task", "architecture", "params", "description")}
                               for e in entries]})


@app.command("eval")
def evaluate_command(
    dataset: Annotated[str, typer.Option(help="samples, set5, set14, bsd68, levin, sun2013, or a folder of ground-truth images.")] = "samples",
    task: Annotated[Optional[Task], typer.Option(help="sr or deblur (default: the dataset's own).")] = None,
    scale: Annotated[int, typer.Option(help="SR factor (2, 3, 4, 8); also the border shaved.")] = 4,
    method: Annotated[Optional[str], typer.Option(help="Comma-separated methods, sr: bicubic, lanczos, net (the default weights, chosen per image), lapsr, lapsr-real; deblur: input, wiener, rl, net-psf (true PSF), blind, blind-net (estimated PSF), auto, net (e.g. input,auto,net).")] = None,
    degradation: Annotated[str, typer.Option(help="sr: bicubic (the papers' clean LR), realistic-mild or realistic-strong (blur, resize, noise, JPEG; seeded per image).")] = "bicubic",
    noise: Annotated[float, typer.Option(min=0.0, max=0.5, help="sun2013 and folders with --task deblur: sigma of the noise added after the blur (0.01: Sun et al.'s 1 %; 0.03 their 3 %).")] = 0.01,
    blur: Annotated[str, typer.Option(help="sun2013 and folders with --task deblur: levin (Levin's 8 kernels), varying (2-4 shakes blended across the frame, seeded) or none (sharp photos scored against themselves).")] = "levin",
    data_root: Annotated[Optional[Path], typer.Option(envvar="SRDEBLUR_DATA", help="Folder holding the named datasets.")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Only the first N images.")] = None,
    per_image: Annotated[bool, typer.Option("--per-image/--summary-only", help="One table row per image.")] = True,
    report: Annotated[Optional[Path], typer.Option(help="Also write an HTML report to this folder: index.html (comparison strips embedded, charts), strips/ and full-size outputs in full/.")] = None,
    crop: Annotated[Optional[str], typer.Option(help="Crop shown in the report's strips: x,y,w,h in ground-truth pixels (default: where the methods differ most).")] = None,
    run: Annotated[Optional[Path], typer.Option(help="A training run folder (its last.json): plot its validation PSNR against CPU-hours in the report.")] = None,
    ensemble: Ensemble = 1,
    device: DeviceOption = "auto",
    as_json: JsonOut = False,
    quiet: Quiet = False,
) -> None:
    """PSNR/SSIM of methods side by side, with the SR papers' conventions; --report DIR to see them."""
    if scale not in (2, 3, 4, 8):
        _fail(f"--scale must be 2, 3, 4 or 8, got {scale}")
    if (crop or run) and report is None:
        _fail("--crop and --run go with --report DIR")
    _check_ensemble(ensemble)
    target_device = _parse_device(device)
    from srdeblur.devices import using_device
    from srdeblur.evaluation import DeblurSettings, evaluate
    from srdeblur.io import ImageError
    from srdeblur.report import evaluation_table, group_table, print_json, stderr_console
    from srdeblur.weights import WeightsError

    box = _parse_crop(crop)
    console = stderr_console(quiet=quiet)
    methods = tuple(m.strip() for m in method.split(",") if m.strip()) if method else None
    try:
        with console.status("evaluating…") as status, using_device(target_device):
            options = dict(
                task=task.value if task else None, scale=scale, methods=methods, root=data_root, limit=limit,
                ensemble=ensemble, degradation=degradation, settings=DeblurSettings(noise_sigma=noise), blur_kind=blur,
                on_row=lambda row: status.update(f"{row['image']} {row['method']}: {row['psnr']:.2f} dB"),
            )
            if report is None:
                evaluation = evaluate(dataset, **options)
            else:
                from srdeblur.visual import evaluation_report

                evaluation = evaluation_report(dataset, report, run=run, box=box, **options)
    except (FileNotFoundError, ValueError) as error:
        _fail(str(error))
    except (WeightsError, ImageError, OSError) as error:
        _fail(str(error), code=1)
    result = evaluation.to_dict()
    console.print(evaluation_table(result, per_image=per_image))
    if evaluation.task == "deblur" and any(r["group"] for r in evaluation.rows):
        groups = evaluation.summary("group")
        console.print(group_table(result, groups))
        result["summary_by_group"] = groups
    if report is not None:
        console.print(f"report: {report / 'index.html'}", highlight=False, soft_wrap=True)
        result["report"] = str(report / "index.html")
    if as_json:
        print_json(result)


def _parse_crop(text: Optional[str]):
    """``--crop x,y,w,h`` -> a box, or None."""
    if text is None:
        return None
    from srdeblur.visual import parse_box

    try:
        return parse_box(text)
    except ValueError as error:
        _fail(f"--crop: {error}")


@app.command()
def compare(
    images: Annotated[Optional[list[Path]], typer.Argument(help="Images to compare: the size of --truth, or smaller by an integer factor (shown enlarged).", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="The strip to write (.png, .jpg...). Required.", show_default=False)] = None,
    truth: Annotated[Optional[Path], typer.Option(help="Ground truth: shown last, and every image's PSNR/SSIM (Y channel) against it.")] = None,
    method: Annotated[Optional[str], typer.Option(help="Instead of IMAGES: shrink --truth by --scale as eval does and compare these methods, e.g. bicubic,lanczos,net.")] = None,
    scale: Annotated[int, typer.Option(help="SR factor for --method (2, 3, 4, 8).")] = 4,
    labels: Annotated[Optional[str], typer.Option(help="Comma-separated labels for IMAGES (default: their file names).")] = None,
    crop: Annotated[Optional[str], typer.Option(help="x,y,w,h in ground-truth pixels (default: where the images differ most).")] = None,
    crop_size: Annotated[Optional[int], typer.Option(min=1, help="Side of the automatic crop in pixels (default: a quarter of the shorter side, 16..96).")] = None,
    overwrite: Overwrite = False,
    device: DeviceOption = "auto",
    as_json: JsonOut = False,
    quiet: Quiet = False,
) -> None:
    """A labelled side-by-side strip of the same zoomed crop of several images (with PSNR/SSIM vs --truth)."""
    if output is None:
        _fail("-o/--output is required (the strip to write, e.g. -o strip.png)")
    if method is None and not images:
        _fail("give IMAGES to compare, or --truth with --method")
    if method is not None and (images or truth is None):
        _fail("--method compares methods on --truth alone: give --truth and no IMAGES")
    if scale not in (2, 3, 4, 8):
        _fail(f"--scale must be 2, 3, 4 or 8, got {scale}")
    sources = [*(images or []), *([truth] if truth else [])]
    missing = [str(source) for source in sources if not source.is_file()]
    if missing:
        _fail(f"no such image file: {', '.join(missing)}")
    if any(output.resolve() == source.resolve() for source in sources):
        _fail(f"{output} is one of the inputs; choose another -o")
    if output.exists() and not overwrite:
        _fail(f"{output} exists (use --overwrite to replace it)")
    names = [name.strip() for name in labels.split(",")] if labels else [p.stem for p in images or []]
    if images and len(names) != len(images):
        _fail(f"--labels gives {len(names)} labels for {len(images)} images")
    box = _parse_crop(crop)
    target_device = _parse_device(device)
    from srdeblur.devices import using_device
    from srdeblur.io import ImageError, read_image, write_image
    from srdeblur.report import print_json, stderr_console
    from srdeblur.visual import compare as compare_images, method_comparison
    from srdeblur.weights import WeightsError

    console = stderr_console(quiet=quiet)
    try:
        if method is not None:
            methods = tuple(m.strip() for m in method.split(",") if m.strip())
            with using_device(target_device):
                comparison = method_comparison(truth, scale=scale, methods=methods, box=box, crop_size=crop_size)
        else:
            pixels = [read_image(path).pixels for path in images]
            reference = read_image(truth).pixels if truth else None
            comparison = compare_images(pixels, labels=names, truth=reference, box=box, crop_size=crop_size)
        output.parent.mkdir(parents=True, exist_ok=True)
        write_image(output, comparison.strip)
    except (FileNotFoundError, ValueError) as error:
        _fail(str(error))
    except (ImageError, WeightsError, OSError) as error:
        _fail(str(error), code=1)
    for label, (psnr_db, ssim_value) in comparison.scores.items():
        console.print(f"{label}: {psnr_db:.2f} dB / {ssim_value:.4f}", highlight=False, soft_wrap=True)
    x, y, w, h = comparison.box
    height, width = comparison.strip.shape[-2:]
    console.print(f"wrote {output} ({width}x{height}), crop {x},{y},{w},{h}", highlight=False, soft_wrap=True)
    if as_json:
        print_json({"output": str(output), "box": list(comparison.box), "width": width, "height": height,
                    "scores": {label: {"psnr": p, "ssim": s} for label, (p, s) in comparison.scores.items()}})


@app.command()
def train(
    task: Annotated[TrainTask, typer.Option(help="sr, deblur (blind), nonblind (known-PSF deconvolution) srgate (the clean-or-degraded input classifier that picks upscale's weights) or blurgate (the classifier that tells deblur's default which photos to leave alone).")] = TrainTask.sr,
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
    init: Annotated[Optional[Path], typer.Option(help="Start from these weights (e.g. weights/lapsr.safetensors): fine-tune with a new optimizer and schedule.")] = None,
    export: Annotated[Optional[str], typer.Option(help="Instead of training: write OUT's best checkpoint as shipped weights NAME (weights/NAME.safetensors + manifest).")] = None,
    threads: Annotated[int, typer.Option(help="Torch threads (0: one per core). 1 is best when sharing the CPU.")] = 0,
    scale_mix: Annotated[str, typer.Option(help="sr: how often x2,x4,x8 are drawn per step (e.g. 0.6,0.3,0.1).")] = "0.4,0.4,0.2",
    warmup: Annotated[int, typer.Option(help="Steps of linear learning-rate warm-up.")] = 300,
    curriculum: Annotated[Optional[float], typer.Option(help="deblur: fraction of --steps over which the largest blur grows from 7 px to 31 px (default 0.3; 0 with --init: the weights already know large blurs).")] = None,
    blocks: Annotated[Optional[int], typer.Option(help="Residual blocks per level of the network (default: the network's own, 4 for sr, 1 for deblur). With --init, extra blocks start as the identity.")] = None,
    iterations: Annotated[Optional[int], typer.Option(help="nonblind: unrolled HQS iterations of the known-PSF network (default 5). With --init, the learned data weights are resampled to the new count.")] = None,
    spectral: Annotated[bool, typer.Option(help="deblur: give the bottom level's residual blocks an image-wide Fourier branch (with --init, it starts at zero).")] = False,
    gated: Annotated[bool, typer.Option(help="deblur: give every residual block a gate driven by image-wide channel means (with --init, it starts as the identity).")] = False,
    frequency_loss: Annotated[float, typer.Option(help="Weight of an L1 loss on Fourier coefficients beside the pixel loss (0: off).")] = 0.0,
    degradation: Annotated[TrainDegradation, typer.Option(help="sr: bicubic (clean MATLAB-bicubic LR, the papers') or realistic (blur, resize, noise and JPEG in two rounds, with --clean-fraction clean inputs).")] = TrainDegradation.bicubic,
    clean_fraction: Annotated[float, typer.Option(min=0.0, max=1.0, help="sr --degradation realistic: share of patches left clean (bicubic).")] = 0.15,
    noisy_fraction: Annotated[float, typer.Option(min=0.0, max=1.0, help="sr --degradation realistic: share of the degraded patches that are bicubic plus white noise alone (a noisy PNG).")] = 0.0,
    description: Annotated[Optional[str], typer.Option(help="With --export: the one-line description `srdeblur models` shows (default: the existing manifest's).")] = None,
    precision: NetPrecision = Precision.auto,
    device: DeviceOption = "auto",
    quiet: Quiet = False,
) -> None:
    """Train or fine-tune on your own images, on the CPU or a GPU; time-boxed (--minutes) and resumable (--resume)."""
    from srdeblur.devices import DeviceError, ShardError, keep_freed_memory
    from srdeblur.report import stderr_console
    from srdeblur.train import TrainConfig, train as run_training, training_device

    console = stderr_console(quiet=quiet)
    if export:
        from srdeblur.train import export_weights

        manifest = export_weights(out, export, description=description)
        console.print(f"wrote {manifest['file']} ({manifest['params']} parameters, step {manifest['training']['checkpoint_step']})")
        return
    if not data:
        _fail("--data is required (one or more folders of training images)")
    mix = _scale_mix(scale_mix)
    if frequency_loss < 0:
        _fail(f"--frequency-loss must be non-negative, got {frequency_loss}")
    try:  # before anything is written: a missing GPU, or one GPU for two torchrun processes, exits 2
        target_device = training_device(device)
    except (DeviceError, ShardError) as error:
        _fail(str(error))
    keep_freed_memory()  # faster steps on the CPU (30 sr steps with 1 GiB kept: 22.7 s -> 20.2 s)
    config = TrainConfig(task=task.value, data=tuple(str(d) for d in data), out=str(out), seed=seed, batch=batch,
                         patch=patch or (96 if task == TrainTask.sr else 128), learning_rate=learning_rate,
                         total_steps=steps, val_every=val_every, threads=threads, scale_probabilities=mix,
                         warmup_steps=warmup, precision=precision.value, val_crop=192 if task == TrainTask.sr else 256,
                         max_kernel=75 if task == TrainTask.nonblind else TrainConfig.max_kernel,
                         max_noise=0.05 if task == TrainTask.nonblind else TrainConfig.max_noise,
                         curriculum=_curriculum(curriculum, fine_tune=init is not None, default=TrainConfig.curriculum),
                         frequency_loss=frequency_loss, degradation=degradation.value, clean_fraction=clean_fraction,
                         noisy_fraction=noisy_fraction,
                         **_architecture(task, blocks=blocks, iterations=iterations, spectral=spectral, gated=gated))
    try:
        info = run_training(
            config, minutes=minutes, resume=resume, max_steps=max_steps, init=init, device=target_device,
            on_progress=lambda e: console.print(
                f"step {e['step']}: loss {e['loss']:.4f}, val " + _validation_text(e) + f", {e['cpu_hours']:.2f} CPU-h"
                + (f", {e['device_hours']:.2f} GPU-h" if target_device.type != "cpu" else ""),
                highlight=False),
        )
    except (ValueError, FileNotFoundError) as error:
        _fail(str(error))
    console.print(f"stopped at step {info['step']}; checkpoints in {out}")


def _curriculum(fraction: Optional[float], *, fine_tune: bool, default: float) -> float:
    """``--curriculum``: a fraction in [0, 1]; by default ``default``, or 0 for a fine-tune (``--init``)."""
    if fraction is None:
        return 0.0 if fine_tune else default
    if not 0 <= fraction <= 1:
        _fail(f"--curriculum must be a fraction in [0, 1], got {fraction}")
    return fraction


def _architecture(task: TrainTask, *, blocks: Optional[int], iterations: Optional[int] = None, spectral: bool,
                  gated: bool) -> dict:
    """TrainConfig fields for ``--blocks`` / ``--iterations`` / ``--spectral`` / ``--gated`` (empty when the
    defaults are kept)."""
    from srdeblur.nets import DeblurConfig, DeconvConfig, SRConfig

    if blocks is not None and blocks < 1:
        _fail(f"--blocks must be at least 1, got {blocks}")
    if iterations is not None and (task != TrainTask.nonblind or iterations < 1):
        _fail(f"--iterations applies to --task nonblind and must be at least 1, got {iterations}")
    for flag, given in (("--spectral", spectral), ("--gated", gated)):
        if given and task != TrainTask.deblur:
            _fail(f"{flag} applies to --task deblur only")
    if task == TrainTask.sr:
        return {} if blocks is None else {"sr": SRConfig(blocks=blocks)}
    if task == TrainTask.nonblind:
        if blocks is None and iterations is None:
            return {}
        return {"nonblind": DeconvConfig(blocks=blocks or DeconvConfig.blocks,
                                         iterations=iterations or DeconvConfig.iterations)}
    return {"deblur": DeblurConfig(blocks=blocks or DeblurConfig.blocks, spectral=spectral, gated=gated)}


def _validation_text(entry: dict) -> str:
    """A validation entry's scores for the progress line: PSNRs in dB, the classifiers' shares in %."""
    decibels = [f"{k} {v:.2f} dB" for k, v in entry.items() if k.startswith(("x", "strong_")) or k in ("psnr", "gain")]
    shares = [f"{k} {100 * v:.1f} %" for k, v in entry.items()
              if k in ("accuracy", "clean", "mild", "strong", "deblurrable", "other")]
    return ", ".join(decibels + shares)


def _scale_mix(text: str) -> tuple[float, float, float]:
    """Parse ``--scale-mix`` ("0.6,0.3,0.1"): three non-negative weights for x2, x4, x8, not all zero."""
    try:
        weights = tuple(float(part) for part in text.split(","))
    except ValueError:
        weights = ()
    if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
        _fail(f"--scale-mix must be three non-negative weights for x2,x4,x8 such as 0.4,0.4,0.2, got {text!r}")
    return weights  # type: ignore[return-value]


def _given_value(argv: list[str], options: list[str]) -> Optional[str]:
    """The value given on the command line to one of ``options`` (``--scale 5`` or ``--scale=5``), if any."""
    for index, token in enumerate(argv):
        name, equals, value = token.partition("=")
        if name in options:
            if equals:
                return value
            if index + 1 < len(argv):
                return argv[index + 1]
    return None


def _one_line_usage_error(error: typer.TyperException, argv: list[str]) -> int:
    """Print a command-line parsing error (bad option value, unknown option...) as one ``error:`` line."""
    message = error.format_message()
    given = _given_value(argv, list(getattr(getattr(error, "param", None), "opts", None) or []))
    if given is not None and repr(given) not in message:
        message = f"{message.rstrip('.')} (got {given!r})"
    if not message.strip():  # the help was shown already (a command given no arguments)
        pass
    elif "\n" in message.strip():  # e.g. the help shown for a command given no arguments
        sys.stderr.write(message.rstrip() + "\n")
    else:
        command = getattr(getattr(error, "ctx", None), "command_path", "srdeblur")
        _print_error(f"{message} (see: {command} --help)")
    return getattr(error, "exit_code", 2)


def _print_error(message: str) -> None:
    from rich.markup import escape

    from srdeblur.report import stderr_console

    stderr_console().print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM ends a batch like Ctrl-C: the file being written is removed, exit 130


def main(argv: Optional[list[str]] = None) -> None:
    """Console-script entry point: run the command line, exit with its code (0, 1, 2 or 130).

    Command-line errors are printed as one line; an unexpected exception is printed as one line too (its
    traceback with ``SRDEBLUR_DEBUG=1``).
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread: leave SIGTERM alone
        previous = None
    try:
        code = app(args=argv, prog_name="srdeblur", standalone_mode=False)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        code = 130
    except typer.TyperException as error:
        code = _one_line_usage_error(error, sys.argv[1:] if argv is None else list(argv))
    except Exception as error:  # noqa: BLE001 - a user gets one line, a developer asks for the traceback
        if os.environ.get("SRDEBLUR_DEBUG"):
            raise
        _print_error(f"unexpected {type(error).__name__}: {' '.join(str(error).split())} "
                     "(run with SRDEBLUR_DEBUG=1 for the traceback)")
        code = 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    sys.exit(code if isinstance(code, int) else 0)
