"""Tiling: run a function of an image piece by piece with overlapping, feathered tiles, in bounded memory.

``tiled_forward`` assembles a whole output; ``tiled_bands`` yields it in horizontal bands (for huge images
written as they are made). A tile that runs out of memory is split and retried. ``auto_tile`` picks the side
from the free memory. Every image is a float32 ``(B, C, H, W)`` tensor in [0, 1].
"""

from __future__ import annotations

import logging
from typing import Callable, Iterator

import torch

from srdeblur.io import Canvas

log = logging.getLogger(__name__)

__all__ = ["TileFunction", "DEFAULT_TILE_OVERLAP", "tiled_forward", "tiled_bands", "run_tile", "auto_tile"]

TileFunction = Callable[[torch.Tensor], torch.Tensor]
#: Context per tile side (input pixels) that the SR networks need for tiles to match the whole image.
DEFAULT_TILE_OVERLAP = 32


def _fade(coordinates: torch.Tensor, centre: float, half: float) -> torch.Tensor:
    """Weight rising linearly from 0 to 1 across ``[centre - half, centre + half)`` (pixel centres)."""
    if half <= 0:
        return (coordinates + 0.5 >= centre).to(torch.float32)
    return ((coordinates + 0.5 - (centre - half)) / (2 * half)).clamp(0, 1)


def _axis_tiles(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis as (core_start, core_end, read_start, read_end) in input pixels."""
    starts = list(range(0, length, tile))
    return [(s, min(s + tile, length), max(0, s - overlap), min(length, s + tile + overlap)) for s in starts]


def _axis_weights(tiles, index: int, scale: int, overlap: int) -> torch.Tensor:
    """Blending weights along one axis for tile ``index`` over its read range, in output pixels.

    The cross-fades are ``min(overlap, tile)`` wide: two fades of one tile must not overlap, or the
    weights would stop summing to 1.
    """
    core_start, core_end, read_start, read_end = tiles[index]
    coordinates = torch.arange(read_start * scale, read_end * scale, dtype=torch.float32)
    tile = tiles[0][1] - tiles[0][0]
    half = min(overlap, tile) * scale / 2
    weight = torch.ones_like(coordinates)
    if index > 0:
        weight = weight * _fade(coordinates, core_start * scale, half)
    if index < len(tiles) - 1:
        weight = weight * (1 - _fade(coordinates, core_end * scale, half))
    return weight


def tiled_forward(
    image: torch.Tensor,
    function: TileFunction,
    *,
    scale: int = 1,
    tile: int,
    overlap: int = DEFAULT_TILE_OVERLAP,
    on_tile: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Apply ``function`` (``(B, C, h, w) -> (B, C, scale h, scale w)``) tile by tile and blend the results.

    Each tile of ``tile`` x ``tile`` input pixels is read with ``overlap`` pixels of context on every side
    (less at the image border); neighbouring results are cross-faded linearly over ``overlap`` input pixels
    centred on their shared edge (``min(overlap, tile)`` wide), so every output pixel comes from tiles in
    which it lies at least ``overlap / 2`` pixels from the tile's edge. With ``overlap / 2`` at least the network's receptive
    radius the result equals the untiled one up to float rounding. The output is assembled on the CPU; only
    tiles go through ``function``. If a tile fails for lack of memory it is split in four and retried.

    Parameters
    ----------
    image : (B, C, H, W) float32.
    tile : tile side in input pixels (>= 1).
    overlap : context per side in input pixels (>= 0).
    on_tile : called with (tiles done, tiles total) after each tile.

    Returns
    -------
    (B, C_out, scale H, scale W) float32 on the CPU.
    """
    output: torch.Tensor | None = None
    for top, band in tiled_bands(image, function, scale=scale, tile=tile, overlap=overlap, on_tile=on_tile):
        if output is None:
            height, width = image.shape[-2:]
            output = torch.empty(*band.shape[:2], height * scale, width * scale, dtype=torch.float32)
        output[..., top : top + band.shape[-2], :] = band
    assert output is not None
    return output


def tiled_bands(
    image: torch.Tensor,
    function: TileFunction,
    *,
    scale: int = 1,
    tile: int,
    overlap: int = DEFAULT_TILE_OVERLAP,
    on_tile: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """:func:`tiled_forward` as a stream of finished output rows, top to bottom.

    Yields ``(top, band)``: ``band`` is ``(B, C_out, rows, scale W)`` float32 and final (no later tile
    touches it), ``top`` its first output row. Only one row of tiles (plus the rows it shares with the
    next) is held in memory, so a caller can quantise each band into a compact canvas
    (:class:`srdeblur.io.Canvas`) instead of holding the whole float32 output.
    """
    if tile < 1 or overlap < 0:
        raise ValueError(f"tile must be >= 1 and overlap >= 0, got tile={tile}, overlap={overlap}")
    height, width = image.shape[-2:]
    rows, columns = _axis_tiles(height, tile, overlap), _axis_tiles(width, tile, overlap)
    total, done = len(rows) * len(columns), 0
    carry: torch.Tensor | None = None  # weighted rows shared with the previous row of tiles
    carry_top = 0
    for i, (_, _, top, bottom) in enumerate(rows):
        weight_y = _axis_weights(rows, i, scale, overlap)
        strip: torch.Tensor | None = None
        for j, (_, _, left, right) in enumerate(columns):
            weight_x = _axis_weights(columns, j, scale, overlap)
            result = run_tile(function, image[..., top:bottom, left:right], scale, tile, overlap).cpu()
            if strip is None:
                strip = torch.zeros(*result.shape[:2], (bottom - top) * scale, width * scale, dtype=torch.float32)
            strip[..., left * scale : right * scale].add_(result * weight_y[:, None] * weight_x[None, :])
            done += 1
            if on_tile:
                on_tile(done, total)
        assert strip is not None
        if carry is not None:
            offset = carry_top - top * scale
            strip[..., offset : offset + carry.shape[-2], :].add_(carry)
        # Rows above where the next row of tiles starts reading are final.
        finished = rows[i + 1][2] * scale if i + 1 < len(rows) else bottom * scale
        start = carry_top if carry is not None else top * scale
        if finished > start:
            yield start, strip[..., start - top * scale : finished - top * scale, :]
        carry, carry_top = strip[..., finished - top * scale :, :], finished


def _is_out_of_memory(error: RuntimeError) -> bool:
    text = str(error).lower()
    return "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text


def run_tile(function: TileFunction, piece: torch.Tensor, scale: int, tile: int, overlap: int) -> torch.Tensor:
    """``function(piece)``; on out-of-memory, the piece again in tiles of half its side (while that is at least
    16 px and the overlap)."""
    try:
        return function(piece)
    except RuntimeError as error:
        smaller = max(piece.shape[-2:]) // 2
        if not _is_out_of_memory(error) or smaller < max(16, overlap):
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the failed tile's blocks, before the smaller tiles ask again
        log.warning("a %dx%d tile ran out of memory; retrying it in tiles of %d", *piece.shape[-2:], smaller)
        return tiled_forward(piece, function, scale=scale, tile=smaller, overlap=overlap)


def auto_tile(image: torch.Tensor, *, bytes_per_output_pixel: int, scale: int, budget: int | None = None) -> int:
    """The largest tile side (input pixels, 0 = no tiling) whose activations fit in ``budget`` bytes
    (default: a quarter of the available memory, at most 1 GiB)."""
    if budget is None:
        budget = min(1 << 30, _available_memory() // 4)
    height, width = image.shape[-2:]
    pixels_that_fit = budget / (bytes_per_output_pixel * scale * scale * image.shape[0])
    if height * width <= pixels_that_fit:
        return 0
    return max(64, int(pixels_that_fit**0.5) // 16 * 16)


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30
