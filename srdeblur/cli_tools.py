"""The ``srdeblur`` commands around the restoration ones: ``models``, ``eval``, ``compare`` and ``train``.

Plain functions; :mod:`srdeblur.cli` registers them on its typer app after ``upscale`` and ``deblur``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from srdeblur.cli_options import (DeviceOption, Ensemble, JsonOut, NetPrecision, Overwrite, Precision, Quiet, Task,
                                  TrainDegradation, TrainTask, _check_ensemble, _fail, _parse_device)


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
