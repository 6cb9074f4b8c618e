"""What the ``srdeblur`` commands share: option types, enums, and the parsers that exit 2 with one line.

Nothing here imports torch or the library at import time, so ``srdeblur --help`` stays instant.
"""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer


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


def _load_model(name: str, *, int8: bool = False):
    from srdeblur.weights import WeightsError, load_model

    try:
        return load_model(name, int8=int8)
    except WeightsError as error:
        _fail(str(error), code=1)


def _print_error(message: str) -> None:
    from rich.markup import escape

    from srdeblur.report import stderr_console

    stderr_console().print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
