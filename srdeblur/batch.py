"""Files in, files out: map inputs to outputs safely and run a restoration over them, one file at a time.

Rules (the CLI contract): a file input with ``output`` = a file path, or by default a sibling named
``<stem><suffix><ext>``; a folder input (or several inputs) with ``output`` = a folder where every result
keeps its input's relative path and name (``recursive`` keeps the whole tree). ``output_suffix`` (``--format``)
changes the extension of every output. An input is never overwritten, whatever the flags: a plan where an output
would land on any input, or where two inputs would land on one output, is refused before anything runs. An
existing output is an error for that file unless ``overwrite`` or ``skip_existing``; one bad file never stops
the batch. Hidden entries, non-image files and folders that are not searched are reported as
:class:`Ignored`, never silently dropped.

Alpha: the colour under fully transparent pixels is invisible but not inert: any filter with a support wider
than one pixel (bicubic or network upscaling, Wiener or Richardson-Lucy deconvolution) mixes it into the visible
pixels next to it, typically as a dark or coloured fringe along the edge of the shape. :func:`process_image`
therefore fills the colour under ``alpha == 0`` from the nearby visible pixels first (:func:`fill_transparent`),
runs the restoration on colour only, and resizes the straight alpha separately.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from torch.nn import functional as F

from srdeblur.io import IMAGE_SUFFIXES, Image, ImageError, deferred_folder_sync, list_images, read_image, write_image
from srdeblur.resize import imresize

log = logging.getLogger(__name__)

__all__ = [
    "Ignored",
    "Job",
    "JobResult",
    "Restored",
    "SideImage",
    "UsageError",
    "check_writable",
    "fill_transparent",
    "plan_jobs",
    "process_image",
    "run_jobs",
    "side_path",
]

# Suffixes that name the same file format; ``--format jpg`` accepts ``-o photo.jpeg``.
_CANONICAL_SUFFIX = {".jpeg": ".jpg", ".tiff": ".tif"}
# What each output format cannot store (reported as notes on the job, so that a conversion never loses
# something silently).
_NO_ALPHA = frozenset({".jpg", ".bmp"})
_EIGHT_BIT_ONLY = frozenset({".jpg", ".bmp", ".webp"})
_NO_GRAY = frozenset({".webp"})
_NO_METADATA = frozenset({".bmp"})


class UsageError(ValueError):
    """The command line cannot be carried out as given (exit code 2)."""


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path


@dataclass(frozen=True)
class JobResult:
    """The outcome of one job.

    Attributes
    ----------
    job : Job
    status : "done", "skipped" or "failed".
    message : one line: why it failed or was skipped ("" when done).
    seconds : wall time spent on the job.
    notes : what the output format could not keep (e.g. "alpha dropped: .jpg cannot store it"), and side
        images that could not be written.
    info : what the restoration said about the job (:attr:`Restored.info`; empty if it said nothing or never
        ran), e.g. ``{"deblur": {"path": "blind", ...}}``.
    """

    job: Job
    status: str  # "done", "skipped" or "failed"
    message: str = ""
    seconds: float = 0.0
    notes: tuple[str, ...] = ()
    info: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class SideImage:
    """An extra file written beside a job's output: ``<output stem><suffix>``, e.g. ``photo_deblurred_psf.png``.

    ``pixels`` is ``(1, C, h, w)`` float in [0, 1], written with ``bit_depth`` (8 or 16) by
    :func:`srdeblur.io.write_image` (atomically) after the output itself, and only if the output was written.
    It replaces a file of that name, but never an input or an output of the batch; one that cannot be written is
    a note on the job, not a failure (the output is fine).
    """

    suffix: str
    pixels: torch.Tensor
    bit_depth: int = 8


@dataclass(frozen=True)
class Restored:
    """What a restoration may return instead of a bare :class:`~srdeblur.io.Image`: the image, ``info``
    (JSON-able, carried to :attr:`JobResult.info`) and side images to write beside the output."""

    image: Image
    info: Mapping[str, Any] = field(default_factory=dict)
    side_images: tuple[SideImage, ...] = ()


def side_path(target: Path, suffix: str) -> Path:
    """Where a :class:`SideImage` with ``suffix`` of the output ``target`` is written."""
    return target.with_name(f"{target.stem}{suffix}")


@dataclass(frozen=True)
class Ignored:
    """An entry of an input folder that is not processed, and why (one line)."""

    path: Path
    reason: str


# ------------------------------------------------------------------------------------------------ planning


def _canonical(suffix: str) -> str:
    lower = suffix.lower()
    return _CANONICAL_SUFFIX.get(lower, lower)


def _named_folder(path: Path) -> Path:
    """``path`` spelled with a real last component ("." and ".." have none to derive a sibling name from)."""
    if path.name in ("", ".", ".."):
        path = path.resolve()
    if not path.name:
        raise UsageError(f"{path}: cannot name a default output folder for the file system root; use -o")
    return path


def _default_file_target(source: Path, suffix: str, output_suffix: str | None) -> Path:
    """``<stem><suffix><ext>`` beside the source; a non-image extension becomes .png (it could not be written)."""
    extension = output_suffix or (source.suffix if source.suffix.lower() in IMAGE_SUFFIXES else ".png")
    return source.with_name(f"{source.stem}{suffix}{extension}")


def _with_suffix(target: Path, output_suffix: str | None) -> Path:
    return target.with_suffix(output_suffix) if output_suffix else target


def _single_file_target(source: Path, output: Path, output_suffix: str | None) -> Path:
    """The target of a single file input given ``-o``: a file name, or a folder that already exists."""
    if output.is_dir():
        return _with_suffix(output / source.name, output_suffix)
    if output.suffix.lower() not in IMAGE_SUFFIXES:
        supported = ", ".join(sorted(IMAGE_SUFFIXES))
        raise UsageError(f"-o {output}: not an image file name (use one of {supported}, or an existing folder)")
    if output_suffix and _canonical(output.suffix) != _canonical(output_suffix):
        raise UsageError(f"-o {output} does not match --format {output_suffix.lstrip('.')}")
    return output


def _scan_folder(
    folder: Path, *, recursive: bool, exclude: Path | None
) -> tuple[list[Path], list[Ignored]]:
    """The images :func:`~srdeblur.io.list_images` finds in ``folder``, and every other entry with a reason.

    ``exclude`` (the output folder, if it lies inside ``folder``) is neither listed nor reported as an input.
    """
    images = [p for p in list_images(folder, recursive=recursive) if not _inside(p, exclude)]
    listed = set(images)
    ignored: list[Ignored] = []
    for current, dirnames, filenames in os.walk(folder):
        here = Path(current)
        searched = []
        for name in sorted(dirnames):
            path = here / name
            if exclude is not None and path.resolve() == exclude:
                ignored.append(Ignored(path, "the output folder, not searched"))
            elif name.startswith("."):
                ignored.append(Ignored(path, "hidden folder, not searched"))
            elif path.is_symlink():
                ignored.append(Ignored(path, "symbolic link to a folder, not followed"))
            elif not recursive:
                ignored.append(Ignored(path, "a folder, not searched without --recursive"))
            else:
                searched.append(name)
        dirnames[:] = searched
        for name in sorted(filenames):
            path = here / name
            if path in listed or (exclude is not None and _inside(path, exclude)):
                continue
            ignored.append(Ignored(path, _why_not_listed(path)))
    return images, ignored


def _why_not_listed(path: Path) -> str:
    if path.name.startswith("."):
        return "hidden file"
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        detail = f"{path.suffix} is not an image extension" if path.suffix else "no extension"
        return f"not an image file name ({detail})"
    return "not a regular file"


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        return path.resolve().is_relative_to(folder)
    except OSError:
        return False


def plan_jobs(
    inputs: Iterable[Path],
    *,
    output: Path | None,
    suffix: str,
    recursive: bool = False,
    output_suffix: str | None = None,
    on_ignored: Callable[[Ignored], None] | None = None,
) -> list[Job]:
    """Pair every input image with its output path.

    Parameters
    ----------
    inputs : files and/or folders.
    output : a file (only with a single file input) or a folder; ``None`` picks the defaults above (for a
        folder ``F``: a sibling folder ``F<suffix>``).
    suffix : added to default names, e.g. ``"_x4"`` or ``"_deblurred"``.
    recursive : descend into sub-folders (the tree is kept under the output folder).
    output_suffix : the extension of every output, e.g. ``".jpg"`` (``--format``); default: the input's own.
    on_ignored : called with every folder entry that is not processed (hidden, not an image file name, a
        sub-folder not searched, a link not followed), in order.

    Raises
    ------
    UsageError
        A missing input or one that is neither a regular file nor a folder, several inputs with a file output,
        an output name that is not an image name or contradicts ``output_suffix``, two inputs that map to one
        output, or an output that would land on any input.
    """
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise UsageError("no input given")
    if output_suffix is not None and output_suffix.lower() not in IMAGE_SUFFIXES:
        raise UsageError(f"cannot write {output_suffix!r} files (use one of {', '.join(sorted(IMAGE_SUFFIXES))})")
    for path in inputs:
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder")
        if not (path.is_file() or path.is_dir()):
            raise UsageError(f"{path}: not a regular file or folder")
    output = Path(output) if output is not None else None
    if len(inputs) == 1 and inputs[0].is_file():
        source = inputs[0]
        if output is None:
            target = _default_file_target(source, suffix, output_suffix)
        else:
            target = _single_file_target(source, output, output_suffix)
        jobs = [Job(source, target)]
    else:
        jobs = _plan_many(inputs, output, suffix, recursive, output_suffix, on_ignored)
    _check_plan(jobs)
    return jobs


def _plan_many(
    inputs: list[Path],
    output: Path | None,
    suffix: str,
    recursive: bool,
    output_suffix: str | None,
    on_ignored: Callable[[Ignored], None] | None,
) -> list[Job]:
    if output is not None and output.exists() and not output.is_dir():
        raise UsageError(f"{output}: with several inputs or a folder, -o must be a folder")
    jobs: list[Job] = []
    for path in inputs:
        if path.is_file():
            if output is None:
                target = _default_file_target(path, suffix, output_suffix)
            else:
                target = _with_suffix(output / path.name, output_suffix)
            jobs.append(Job(path, target))
            continue
        folder = output or _named_folder(path).with_name(f"{_named_folder(path).name}{suffix}")
        # An output folder inside the input folder is not an input (a second run must not re-process outputs).
        inner = folder.resolve() != path.resolve() and folder.resolve().is_relative_to(path.resolve())
        exclude = folder.resolve() if inner else None
        images, ignored = _scan_folder(path, recursive=recursive, exclude=exclude)
        for entry in ignored:
            if on_ignored is not None:
                on_ignored(entry)
        jobs.extend(Job(source, _with_suffix(folder / source.relative_to(path), output_suffix)) for source in images)
    return jobs


def _check_plan(jobs: list[Job]) -> None:
    """Refuse a plan where two jobs share a target or a target is any job's source (never write on an input)."""
    sources = {_key(job.source): job.source for job in jobs}
    seen: dict[str, Path] = {}
    for job in jobs:
        key = _key(job.target)
        if key in seen:
            raise UsageError(
                f"{seen[key]} and {job.source} would both be written to {job.target} (rename one, or use -o)"
            )
        if key in sources:
            if sources[key] == job.source:
                raise UsageError(f"{job.source}: the output would overwrite the input")
            raise UsageError(f"{job.source}: the output {job.target} would overwrite the input {sources[key]}")
        seen[key] = job.source


def _key(path: Path) -> str:
    """A comparable spelling of a path (symbolic links resolved; case folded where the OS ignores case)."""
    return os.path.normcase(str(path.resolve()))


def check_writable(jobs: Iterable[Job]) -> None:
    """Fail early if an output folder cannot be created or written, before any work is done.

    For every target folder, its nearest existing ancestor must be a folder that the user may write to.

    Raises
    ------
    UsageError
        Naming the folder and what is wrong with it.
    """
    checked: set[Path] = set()
    for job in jobs:
        folder = job.target.parent
        if folder in checked:
            continue
        checked.add(folder)
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise UsageError(f"{folder}: cannot create the output folder ({existing} is a file)")
        # effective_ids: the permissions the process will actually write with (set-uid, sudo -u ...).
        if not os.access(existing, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
            raise UsageError(f"{existing}: output folder is not writable")


# ------------------------------------------------------------------------------------------------ pixels


def fill_transparent(pixels: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Replace the colour under fully transparent pixels by the colour of the nearest visible pixels.

    Pull-push normalised convolution: the alpha-weighted colour and the alpha are averaged over 2x2 blocks,
    level after level, until every block holds some visible pixel; then, from the coarsest level back to the
    finest, every pixel without visible content takes the bilinear upsampling of the level above. A hole thus
    gets the alpha-weighted mean colour of the closest visible pixels, and the filled values are convex
    combinations of visible colours (no new colour appears). Pixels with ``alpha > 0`` are returned unchanged.

    Parameters
    ----------
    pixels : torch.Tensor
        (B, C, H, W) float in [0, 1].
    alpha : torch.Tensor
        (B, 1, H, W) straight alpha in [0, 1].

    Returns
    -------
    torch.Tensor
        (B, C, H, W), same dtype; a copy of ``pixels`` where ``alpha == 0`` has been filled. An image with no
        visible pixel (or no transparent one) is returned as is.

    Raises
    ------
    ValueError
        If the shapes do not match as above.
    """
    if pixels.ndim != 4 or alpha.ndim != 4 or alpha.shape[1] != 1:
        raise ValueError(
            f"expected pixels (B, C, H, W) and alpha (B, 1, H, W), got {tuple(pixels.shape)} and {tuple(alpha.shape)}"
        )
    if alpha.shape[0] != pixels.shape[0] or alpha.shape[-2:] != pixels.shape[-2:]:
        raise ValueError(f"alpha {tuple(alpha.shape)} does not match pixels {tuple(pixels.shape)}")
    weight = alpha.to(pixels.dtype).clamp(0, 1)
    hole = weight <= 0
    visible_per_image = (~hole).flatten(1).any(dim=1)
    if not hole.any() or not visible_per_image.any():
        return pixels
    filled = _pull_push(pixels * weight, weight)
    # An image of the batch with no visible pixel at all keeps its colour.
    fillable = hole & visible_per_image[:, None, None, None]
    return torch.where(fillable, filled, pixels)


def _pull_push(weighted: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Colour ``weighted / weight`` where ``weight > 0``, holes filled from coarser levels (see above)."""
    levels = [(weighted, weight)]
    while (weight <= 0).any() and max(weight.shape[-2:]) > 1:
        # Sums over 2x2 blocks (the partial blocks of odd sizes included); the ratio is what matters.
        weighted = F.avg_pool2d(weighted, 2, ceil_mode=True)
        weight = F.avg_pool2d(weight, 2, ceil_mode=True)
        levels.append((weighted, weight))
    colour = None
    for weighted, weight in reversed(levels):
        own = weighted / weight.clamp_min(torch.finfo(weight.dtype).tiny)
        if colour is None:
            colour = own
            continue
        coarse = F.interpolate(colour, size=own.shape[-2:], mode="bilinear", align_corners=False)
        colour = torch.where(weight > 0, own, coarse)
    return colour


def process_image(image: Image, process: Callable[[torch.Tensor], torch.Tensor]) -> Image:
    """Run a colour restoration on an image and carry its alpha and metadata.

    With alpha, the colour under ``alpha == 0`` is first filled by :func:`fill_transparent` (so it cannot bleed
    into visible edges), and the alpha is resized on its own (MATLAB bicubic, clamped to [0, 1]) to the size
    of the restored colour.

    Parameters
    ----------
    image : Image
        Pixels (1, C, H, W) float32 in [0, 1], optional straight alpha (1, 1, H, W), metadata.
    process : callable
        (1, C, H, W) -> (1, C, H', W'), e.g. an upscaler or a deblurrer.

    Returns
    -------
    Image
        The restored pixels, the (resized) alpha and the same metadata.

    Raises
    ------
    ValueError
        If ``process`` changed the batch or channel count.
    """
    colour = image.pixels if image.alpha is None else fill_transparent(image.pixels, image.alpha)
    restored = process(colour)
    if restored.ndim != 4 or restored.shape[:2] != image.pixels.shape[:2]:
        raise ValueError(f"the restoration returned shape {tuple(restored.shape)} for {tuple(image.pixels.shape)}")
    alpha = image.alpha
    if alpha is not None and alpha.shape[-2:] != restored.shape[-2:]:
        alpha = imresize(alpha, size=tuple(restored.shape[-2:])).clamp(0, 1)
    return Image(restored, alpha, image.meta)


# ------------------------------------------------------------------------------------------------ running


def _losses(image: Image, target: Path) -> tuple[str, ...]:
    """What the target's format cannot keep of ``image`` (one short note each)."""
    extension = _canonical(target.suffix)
    notes = []
    if image.alpha is not None and extension in _NO_ALPHA:
        notes.append(f"alpha dropped: {extension} cannot store it")
    if image.meta.bit_depth == 16 and extension in _EIGHT_BIT_ONLY:
        notes.append(f"16-bit reduced to 8-bit: {extension} cannot store more")
    if image.pixels.shape[1] == 1 and extension in _NO_GRAY:
        notes.append(f"written as RGB: {extension} has no gray mode")
    if (image.meta.icc_profile or image.meta.exif) and extension in _NO_METADATA:
        notes.append(f"ICC profile/EXIF dropped: {extension} cannot store them")
    return tuple(notes)


def _make_folder(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the ones created, deepest first."""
    missing = []
    current = folder
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        _remove_empty(missing)
        raise ImageError(f"cannot create the output folder {folder} ({error.strerror or error})") from error
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break  # not empty (or gone): its parents are not empty either


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _check_target(job: Job, *, overwrite: bool, skip_existing: bool) -> JobResult | None:
    """The result of a job whose target rules it out (a folder, or an existing file), else None."""
    target = job.target
    if target.is_dir():
        return JobResult(job, "failed", f"{target} is a folder; the output cannot replace it")
    if os.path.lexists(target) and not overwrite:
        if skip_existing:
            return JobResult(job, "skipped", f"{target} exists")
        return JobResult(job, "failed", f"{target} exists (use --overwrite or --skip-existing)")
    return None


def _failure(job: Job, error: Exception, seconds: float = 0.0) -> JobResult:
    if not isinstance(error, (ImageError, ValueError, OSError)):
        log.debug("job %s failed", job.source, exc_info=True)
    return JobResult(job, "failed", _one_line(error), seconds)


@dataclass(frozen=True)
class _Read:
    """A job whose input is decoded and ready for the restoration."""

    image: Image
    seconds: float


def _read_stage(job: Job, *, overwrite: bool, skip_existing: bool, max_pixels: int | None) -> _Read | JobResult:
    """Check the target and decode the input (the reader's share of a job)."""
    ruled_out = _check_target(job, overwrite=overwrite, skip_existing=skip_existing)
    if ruled_out is not None:
        return ruled_out
    started = time.perf_counter()
    try:
        image = read_image(job.source) if max_pixels is None else read_image(job.source, max_pixels=max_pixels)
    except Exception as error:  # noqa: BLE001 - one bad file must never stop the batch; the reason is reported
        return _failure(job, error, time.perf_counter() - started)
    return _Read(image, time.perf_counter() - started)


def _write_stage(job: Job, restored: Restored, *, quality: int, seconds: float,
                 protected: frozenset[str] = frozenset()) -> JobResult:
    """Encode and write the output atomically, then its side images (the writer's share of a job); ``seconds``
    spent before it. ``protected``: :func:`_key` of the batch's inputs and outputs, which no side image replaces."""
    started = time.perf_counter()
    created: list[Path] = []
    image = restored.image
    try:
        created = _make_folder(job.target.parent)
        write_image(job.target, image.pixels, alpha=image.alpha, meta=image.meta, quality=quality)
    except Exception as error:  # noqa: BLE001 - as above
        _remove_empty(created)
        return replace(_failure(job, error, seconds + time.perf_counter() - started), info=restored.info)
    notes = _losses(image, job.target)
    for side in restored.side_images:
        notes += _write_side(side_path(job.target, side.suffix), side, protected)
    return JobResult(job, "done", seconds=seconds + time.perf_counter() - started, notes=notes, info=restored.info)


def _write_side(path: Path, side: SideImage, protected: frozenset[str]) -> tuple[str, ...]:
    """Write one side image; a note if it was not written, else nothing."""
    try:
        if _key(path) in protected:
            return (f"{path.name} not written: it would replace an input or output of this batch",)
        if path.is_dir():
            return (f"{path.name} not written: a folder has that name",)
        write_image(path, side.pixels, bit_depth=side.bit_depth)
    except Exception as error:  # noqa: BLE001 - the output is written; the side file only earns a note
        return (f"{path.name} not written: {_one_line(error)}",)
    return ()


# An output above this many pixels is written before the next restoration starts (no second one in memory).
_PIPELINE_LARGE_OUTPUT_PIXELS = 32_000_000


def run_jobs(
    jobs: list[Job],
    restore: Callable[[Image], Image | Restored],
    *,
    overwrite: bool = False,
    skip_existing: bool = False,
    max_pixels: int | None = None,
    quality: int = 95,
    on_start: Callable[[Job], None] | None = None,
    on_result: Callable[[JobResult], None] | None = None,
    pipeline: bool = True,
) -> list[JobResult]:
    """Read, restore and write every job; failures are recorded, never raised (except KeyboardInterrupt).

    With ``pipeline`` (the default) a reader thread decodes the next input and a writer thread encodes and
    writes the previous output while ``restore`` runs on the calling thread: the batch goes at the pace of
    the restoration, not of the file I/O. At most one input is read ahead and two outputs wait to be
    written (none behind an output of more than 32 megapixels), so memory stays bounded. Results and callbacks keep the order of ``jobs``. Output folders are
    synced once at the end (:func:`srdeblur.io.deferred_folder_sync`): every file is still fsynced before
    its atomic rename, and every rename is durable when this function returns or raises.

    Parameters
    ----------
    jobs : from :func:`plan_jobs`.
    restore : maps an :class:`~srdeblur.io.Image` to the restored one (pixels, alpha and metadata), e.g.
        ``lambda image: process_image(image, upscaler)``; or to a :class:`Restored`, which adds info for the
        job's result and side images written beside the output (e.g. an estimated PSF; never counted as jobs).
        Always called on the calling thread, one job at a time.
    overwrite : replace existing outputs (atomically: the old file stays intact until the new one is complete).
    skip_existing : leave existing outputs alone (status "skipped"): resumes an interrupted batch.
    max_pixels : refuse inputs whose header claims more pixels (before decoding); default that of
        :func:`~srdeblur.io.read_image`.
    quality : JPEG / WebP quality, 1..100.
    on_start, on_result : called on the calling thread before a job's restoration and, in job order, once
        its output is written (progress display).
    pipeline : False: read, restore and write one job after the other on the calling thread.

    Returns
    -------
    list of JobResult
        One per job, in order; ``seconds`` is the job's own reading, restoring and writing time. A failed job
        leaves no output and no new empty folder behind. On KeyboardInterrupt the outputs being written are
        finished (or removed) before it propagates; the jobs reported so far are complete on disk.
    """
    results: list[JobResult] = []

    def report(result: JobResult) -> None:
        results.append(result)
        if on_result:
            on_result(result)

    read = functools.partial(_read_stage, overwrite=overwrite, skip_existing=skip_existing, max_pixels=max_pixels)
    protected = frozenset(_key(path) for job in jobs for path in (job.source, job.target))  # from side images
    write = functools.partial(_write_stage, quality=quality, protected=protected)

    def compute(job: Job, prepared: _Read | JobResult) -> tuple[Restored, float] | JobResult:
        if isinstance(prepared, JobResult):
            return prepared
        if on_start:
            on_start(job)
        started = time.perf_counter()
        try:
            restored = restore(prepared.image)
            restored = restored if isinstance(restored, Restored) else Restored(restored)
            return restored, prepared.seconds + time.perf_counter() - started
        except Exception as error:  # noqa: BLE001 - as above
            return _failure(job, error, prepared.seconds + time.perf_counter() - started)

    with deferred_folder_sync():
        if not pipeline:
            for job in jobs:
                outcome = compute(job, read(job))
                report(outcome if isinstance(outcome, JobResult) else write(job, outcome[0], seconds=outcome[1]))
            return results
        with ThreadPoolExecutor(1, thread_name_prefix="srdeblur-read") as reader, \
                ThreadPoolExecutor(1, thread_name_prefix="srdeblur-write") as writer:
            pending: deque[Future | JobResult] = deque()  # written (or failed) in job order
            try:
                upcoming = reader.submit(read, jobs[0]) if jobs else None
                for index, job in enumerate(jobs):
                    prepared = upcoming.result()
                    upcoming = reader.submit(read, jobs[index + 1]) if index + 1 < len(jobs) else None
                    outcome = compute(job, prepared)
                    large = False
                    if isinstance(outcome, JobResult):
                        pending.append(outcome)
                    else:
                        height, width = outcome[0].image.pixels.shape[-2:]
                        large = height * width > _PIPELINE_LARGE_OUTPUT_PIXELS
                        pending.append(writer.submit(write, job, outcome[0], seconds=outcome[1]))
                    # Report what is finished; wait while more than two outputs are queued, or for a large one
                    # before the next restoration starts (memory stays bounded, as without the pipeline).
                    while pending and (not isinstance(pending[0], Future) or pending[0].done() or len(pending) > 2
                                       or large):
                        head = pending.popleft()
                        report(head.result() if isinstance(head, Future) else head)
                while pending:
                    head = pending.popleft()
                    report(head.result() if isinstance(head, Future) else head)
            except BaseException:
                # Interrupted (or a callback failed): no new read or write starts; the write under way finishes
                # or removes its temporary file; what was written is reported, then the error propagates.
                if upcoming is not None:
                    upcoming.cancel()
                for item in pending:
                    if isinstance(item, Future):
                        item.cancel()
                writer.shutdown(wait=True)
                for item in pending:
                    if isinstance(item, Future) and not item.cancelled() and item.exception() is None:
                        report(item.result())
                    elif not isinstance(item, Future):
                        report(item)
                    else:
                        break
                raise
    return results
