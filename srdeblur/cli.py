"""The ``srdeblur`` command: parse, call the library, render. Heavy modules are imported inside commands so
``srdeblur --help`` is instant.

This module holds ``upscale`` and ``deblur`` (the batch commands) and the entry point; ``models``, ``eval``,
``compare`` and ``train`` are in :mod:`srdeblur.cli_tools`, the option types and parsers both share in
:mod:`srdeblur.cli_options`.

Exit codes: 0 all done, 1 some inputs failed, 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from srdeblur import cli_tools
from srdeblur.cli_options import (BLIND_TV_WEIGHT, DEFAULT_MAX_PIXELS, DeblurMethod, DeviceOption, Ensemble,  # noqa: F401
                                  Format, Inputs, JsonOut, MaxPixels, NetPrecision, Output, OutputFormat, Overwrite,
                                  Precision, Quality, Quiet, Recursive, ShardOption, SkipExisting, Tile, TileOverlap,
                                  UpscaleMethod, _check_ensemble, _fail, _load_model, _parse_device, _parse_noise,
                                  _print_error)

app = typer.Typer(
    help="Make images sharper and larger: learned super-resolution and blind deblurring, classical "
    "deconvolution baselines, and paper-exact PSNR/SSIM evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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


# After upscale and deblur, so `srdeblur --help` lists them first.
app.command("models")(cli_tools.models_command)
app.command("eval")(cli_tools.evaluate_command)
app.command()(cli_tools.compare)
app.command()(cli_tools.train)


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
