"""Files in, files out: map inputs to outputs safely and run a restoration over them, one file at a time.

Rules (the CLI contract): a file input with ``output`` = a file path, or by default a sibling named
``<stem><suffix><ext>``; a folder input (or several inputs) with ``output`` = a folder where every result
keeps its input's relative path and name. An input is never overwritten; an existing output is an error for
that file unless ``overwrite`` or ``skip_existing``; one bad file never stops the batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from srdeblur.io import IMAGE_SUFFIXES, Image, ImageError, list_images, read_image, write_image

log = logging.getLogger(__name__)

__all__ = ["Job", "JobResult", "UsageError", "plan_jobs", "run_jobs"]


class UsageError(ValueError):
    """The command line cannot be carried out as given (exit code 2)."""


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path


@dataclass(frozen=True)
class JobResult:
    job: Job
    status: str  # "done", "skipped" or "failed"
    message: str = ""
    seconds: float = 0.0


def _is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def plan_jobs(
    inputs: Iterable[Path],
    *,
    output: Path | None,
    suffix: str,
    recursive: bool = False,
) -> list[Job]:
    """Pair every input image with its output path.

    Parameters
    ----------
    inputs : files and/or folders.
    output : a file (only with a single file input) or a folder; ``None`` picks the defaults above (for a
        folder ``F``: a sibling folder ``F<suffix>``).
    suffix : added to default names, e.g. ``"_x4"`` or ``"_deblurred"``.
    recursive : descend into sub-folders (the tree is kept under the output folder).

    Raises
    ------
    UsageError
        A missing input, several inputs with a file output, or two inputs that map to one output.
    """
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise UsageError("no input given")
    for path in inputs:
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder")
    single_file = len(inputs) == 1 and inputs[0].is_file()
    jobs: list[Job] = []
    if single_file:
        source = inputs[0]
        if output is not None and output.is_dir():
            target = output / source.name
        else:
            target = output or source.with_name(f"{source.stem}{suffix}{source.suffix}")
        jobs.append(Job(source, target))
    else:
        if output is not None and output.exists() and not output.is_dir():
            raise UsageError(f"{output}: with several inputs or a folder, -o must be a folder")
        for path in inputs:
            if path.is_file():
                target = output / path.name if output else path.with_name(f"{path.stem}{suffix}{path.suffix}")
                jobs.append(Job(path, target))
                continue
            folder = output or path.with_name(f"{path.resolve().name}{suffix}")
            for source in list_images(path, recursive=recursive):
                jobs.append(Job(source, folder / source.relative_to(path)))
    seen: dict[Path, Path] = {}
    for job in jobs:
        key = job.target.resolve()
        if key in seen:
            raise UsageError(f"{seen[key]} and {job.source} would both be written to {job.target}")
        if key == job.source.resolve():
            raise UsageError(f"{job.source}: the output would overwrite the input")
        seen[key] = job.source
    return jobs


def run_jobs(
    jobs: list[Job],
    restore: Callable[[Image], Image],
    *,
    overwrite: bool = False,
    skip_existing: bool = False,
    max_pixels: int | None = None,
    on_result: Callable[[JobResult], None] | None = None,
) -> list[JobResult]:
    """Read, restore and write every job; failures are recorded, never raised (except KeyboardInterrupt).

    ``restore`` maps an :class:`~srdeblur.io.Image` to the restored one (pixels, alpha and metadata).
    """
    import time

    results = []
    for job in jobs:
        started = time.perf_counter()
        if job.target.exists() and not overwrite:
            if skip_existing:
                result = JobResult(job, "skipped", "output exists")
            else:
                result = JobResult(job, "failed", f"{job.target} exists (use --overwrite or --skip-existing)")
        else:
            try:
                image = read_image(job.source) if max_pixels is None else read_image(job.source, max_pixels=max_pixels)
                restored = restore(image)
                job.target.parent.mkdir(parents=True, exist_ok=True)
                write_image(job.target, restored.pixels, alpha=restored.alpha, meta=restored.meta)
                result = JobResult(job, "done", seconds=time.perf_counter() - started)
            except (ImageError, ValueError, OSError, RuntimeError) as error:
                message = str(error).splitlines()[0] if str(error) else type(error).__name__
                result = JobResult(job, "failed", message)
        results.append(result)
        if on_result:
            on_result(result)
    return results
