"""Where the pixels are computed (``--device``), and which share of a batch this process takes (``--shard``,
``torchrun``).

Devices: ``auto`` (the default of the commands) is CUDA when torch sees a GPU, else the CPU; ``cpu``, ``cuda``,
``cuda:N`` and ``mps`` name one explicitly. Under ``torchrun`` (``LOCAL_RANK`` in the environment) ``auto`` and a
bare ``cuda`` mean ``cuda:LOCAL_RANK``: one GPU per process of a machine. A device that is not there is refused
by :func:`parse_device` before any work (the commands exit 2).

Shards: a batch's sorted plan is split by position, job ``i`` going to shard ``i mod N``: every job lands in
exactly one shard, shards differ in size by at most one, and each shard's jobs stay in the plan's order.
``--shard K/N`` (K = 1..N, for job-array schedulers whose task ids are given on the command line) and
``torchrun``'s ``RANK`` / ``WORLD_SIZE`` compose: under both, a process takes its rank's share of shard K.

Host memory: :func:`keep_freed_memory` makes glibc's malloc keep the large blocks that every image's feature
maps need, instead of returning them to the kernel and faulting them in again for the next image.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
from typing import Iterator, Mapping, Sequence, TypeVar

import torch

__all__ = [
    "DEVICE_CHOICES",
    "DeviceError",
    "ShardError",
    "default_device",
    "distributed_shard",
    "keep_freed_memory",
    "network_autocast",
    "parse_device",
    "parse_shard",
    "shard_of",
    "using_device",
]

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")
_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
T = TypeVar("T")


class DeviceError(ValueError):
    """A device spec that is malformed or names a device this machine does not have (one line)."""


class ShardError(ValueError):
    """A ``--shard`` spec that is malformed or out of range, or a malformed RANK / WORLD_SIZE (one line)."""


def parse_device(spec: str | torch.device | None, *, environ: Mapping[str, str] | None = None) -> torch.device:
    """The ``torch.device`` for ``spec``: "auto", "cpu", "cuda", "cuda:N" or "mps" (case-insensitive).

    Parameters
    ----------
    spec : the spec; ``None`` means "auto". A ``torch.device`` is checked the same way.
    environ : where to read ``LOCAL_RANK`` (default ``os.environ``): under ``torchrun``, "auto" and "cuda"
        pick ``cuda:LOCAL_RANK`` (modulo the GPU count, so several processes may share a GPU).

    Returns
    -------
    torch.device
        ``cpu``, ``cuda:N`` (always with its index) or ``mps``.

    Raises
    ------
    DeviceError
        A spec that is none of the above, ``cuda`` / ``mps`` where torch cannot use one, or a CUDA ordinal
        beyond the GPUs present; the message is one line naming what is available.
    """
    environ = os.environ if environ is None else environ
    text = "auto" if spec is None else str(spec).strip().lower()
    match = _DEVICE.match(text)
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise DeviceError(f"unknown device {str(spec)!r} (use one of {', '.join(DEVICE_CHOICES)})")
    kind, ordinal = match.group(1), match.group(2)
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        if not _mps_available():
            raise DeviceError("--device mps: this torch build or machine has no Apple MPS device")
        return torch.device("mps")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if kind == "auto" and count == 0:
        return torch.device("cpu")
    if count == 0:
        raise DeviceError(f"--device {text}: CUDA is not available here (torch {torch.__version__}, "
                          f"CUDA build: {torch.version.cuda or 'no'}); use --device cpu or auto")
    if ordinal is None:
        local_rank = _int_env(environ, "LOCAL_RANK", default=0)
        return torch.device("cuda", local_rank % count)
    if int(ordinal) >= count:
        raise DeviceError(f"--device {text}: no such GPU (this machine has {count}: cuda:0..cuda:{count - 1})")
    return torch.device("cuda", int(ordinal))


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _int_env(environ: Mapping[str, str], name: str, *, default: int) -> int:
    value = environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit():
        raise ShardError(f"{name}={value!r} in the environment is not a non-negative integer")
    return int(value)


# glibc mallopt() parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_KEEP_BELOW_BYTES = 64 << 20


def keep_freed_memory(*, below_bytes: int = _KEEP_BELOW_BYTES) -> bool:
    """Serve allocations under ``below_bytes`` from glibc's heap and keep what is freed there for reuse.

    By default glibc maps every block above its mmap threshold (at most 32 MiB, adjusted as it goes) afresh and
    unmaps it when it is freed, so each image's feature maps are page-faulted in again. Measured in-process on
    BSD68 x4 (68 images of 80 x 120, 2 threads): 3.4-3.8 s with glibc's default, 2.8-3.0 s after this call with
    the default 64 MiB, 2.7-2.8 s with 1 GiB. Larger blocks (a big photo's output, its tiles' features) are
    still returned at once, so the peak stays bounded: a 1500 x 2000 photo at x4 (one thread) peaked at
    1406 MB resident without this call, 1443 MB with 64 MiB, 1634 MB with 1 GiB.

    Returns True where it took effect (glibc), False elsewhere (macOS, musl, Windows), which changes nothing.
    Process-wide; the commands call it once before any work.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, below_bytes)) and bool(mallopt(_M_TRIM_THRESHOLD, 2 * below_bytes))


# The device used by srdeblur.inference when its functions are given ``device=None``.
_default_device: list[torch.device] = [torch.device("cpu")]


def default_device() -> torch.device:
    """The device :mod:`srdeblur.inference` computes on when given ``device=None`` (the CPU unless inside
    :func:`using_device`)."""
    return _default_device[-1]


@contextlib.contextmanager
def using_device(device: str | torch.device | None) -> Iterator[torch.device]:
    """Make ``device`` (parsed by :func:`parse_device`) the default of :mod:`srdeblur.inference` inside the block.

    For callers that do not pass ``device`` through, e.g. :func:`srdeblur.evaluation.evaluate`.
    """
    resolved = parse_device(device)
    _default_device.append(resolved)
    try:
        yield resolved
    finally:
        _default_device.pop()


def network_autocast(device: torch.device, precision: str, *, cpu_bfloat16: bool) -> torch.autocast:
    """The autocast context the networks run under on ``device``.

    CPU: bfloat16 when ``cpu_bfloat16`` (native bfloat16, ``precision`` "auto" or "bfloat16"), else off. CUDA
    with ``precision`` "auto" or "bfloat16": bfloat16 where the GPU computes it natively (Ampere and later), else float16; the
    layers that read and write the image stay float32 (:func:`srdeblur.nets.float32_layer`). MPS:
    float16. ``precision="float32"``: off everywhere.
    """
    if device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_bfloat16)
    enabled = precision != "float32"  # "auto" and "bfloat16"
    if device.type == "cuda":
        dtype = torch.bfloat16 if enabled and torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype, enabled=enabled)
    return torch.autocast(device.type, dtype=torch.float16, enabled=enabled)


def parse_shard(spec: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K - 1, N)``: the 0-based index and the count, with 1 <= K <= N.

    Raises
    ------
    ShardError
        Not two integers separated by "/", N < 1, or K outside 1..N (``0/3``, ``4/3``, ``a/b``).
    """
    match = _SHARD.match(spec)
    if match is None:
        raise ShardError(f"--shard must be K/N with integers 1 <= K <= N (e.g. 1/4), got {spec!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 1 <= index <= count:
        raise ShardError(f"--shard {spec.strip()}: K must be between 1 and N (shards are numbered 1..N)")
    return index - 1, count


def distributed_shard(environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``(RANK, WORLD_SIZE)`` as ``torchrun`` sets them, or ``(0, 1)`` outside it.

    Raises
    ------
    ShardError
        RANK or WORLD_SIZE not a non-negative integer, WORLD_SIZE 0, or RANK >= WORLD_SIZE.
    """
    environ = os.environ if environ is None else environ
    world = _int_env(environ, "WORLD_SIZE", default=1)
    rank = _int_env(environ, "RANK", default=0)
    if world < 1 or rank >= world:
        raise ShardError(f"RANK={rank} / WORLD_SIZE={world} in the environment: need 0 <= RANK < WORLD_SIZE")
    return rank, world


def shard_of(items: Sequence[T], index: int, count: int) -> list[T]:
    """Every ``count``-th item starting at ``index`` (0-based): shard ``index`` of ``count``.

    Over ``index = 0..count-1`` the shards partition ``items`` (each item exactly once, in order within a
    shard); a shard may be empty when there are fewer items than shards.
    """
    if count < 1 or not 0 <= index < count:
        raise ShardError(f"shard index {index} out of range for {count} shards")
    return list(items[index::count])
