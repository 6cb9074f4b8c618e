"""Drawing comparison strips: the zoomed crop where restorations differ most, labelled panels side by side.

:func:`method_spread` and :func:`pick_crop` choose the crop; :func:`crop`, :func:`zoom_nearest`,
:func:`labelled_panel`, :func:`overview_panel` and :func:`make_strip` draw it; :func:`comparison_strip` puts
them together. Pure functions of tensors: :mod:`srdeblur.visual` measures, collects and writes reports with them.

Images are ``(1, C, H, W)`` float32 tensors in [0, 1] with C = 1 or 3; strips are RGB ``(1, 3, H, W)``. A
box is ``(x, y, w, h)`` in pixels of the compared images (x to the right, y down). Labels are drawn with
Pillow on uint8 arrays made by :func:`srdeblur.io.to_array` (and turned back by :func:`srdeblur.io.to_tensor`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont
import torch
from torch.nn import functional as F

from srdeblur.io import to_array, to_tensor

__all__ = ["Box", "LABEL_LINES", "PANEL_SIZE", "Panel", "clamp_box", "comparison_strip", "crop", "default_crop_size", "labelled_panel", "make_strip", "method_spread", "overview_panel", "parse_box", "pick_crop", "score_caption", "zoom_nearest"]

Box = tuple[int, int, int, int]
"""``(x, y, w, h)``: left column, top row, width and height in pixels."""

PANEL_SIZE = 192  # longer side of a zoomed crop on screen, in pixels (the zoom is an integer)
LABEL_LINES = 2  # label and caption
_FONT_SIZE = 14
_LINE_HEIGHT = 18
_BAND_PADDING = 4
_GAP = 8
_OVERVIEW_MIN_WIDTH = 150  # room for the overview's caption beside a tall, narrow image
_BOX_COLOUR = (230, 30, 30)


# ------------------------------------------------------------------------------------------------ checks


def _check_image(image: torch.Tensor, name: str = "image") -> None:
    if not isinstance(image, torch.Tensor) or not image.is_floating_point():
        raise ValueError(f"{name} must be a floating-point torch.Tensor in [0, 1]")
    if image.ndim != 4 or image.shape[0] != 1 or image.shape[1] not in (1, 3) or 0 in image.shape:
        raise ValueError(f"{name} must have shape (1, 1 or 3, H, W), got {tuple(image.shape)}")


def _check_same_size(images: Sequence[torch.Tensor]) -> tuple[int, int]:
    if not images:
        raise ValueError("need at least one image")
    for index, image in enumerate(images):
        _check_image(image, f"image {index}")
    sizes = {tuple(image.shape[-2:]) for image in images}
    if len(sizes) != 1:
        raise ValueError(f"images must all have the same height and width, got {sorted(sizes)}")
    height, width = sizes.pop()
    return height, width


def _rgb(image: torch.Tensor) -> torch.Tensor:
    return image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image


# ------------------------------------------------------------------------------------------------ the crop


def method_spread(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """How much the images disagree at each pixel.

    Parameters
    ----------
    images : sequence of torch.Tensor
        ``(1, C, H, W)`` float in [0, 1], all the same H and W (gray ones count as RGB).

    Returns
    -------
    torch.Tensor
        ``(H, W)`` float32: the variance across the images (population, not unbiased), averaged over the three
        colour channels; 0 where they all agree (everywhere, for a single image).
    """
    _check_same_size(images)
    stack = torch.cat([_rgb(image).float() for image in images])
    return stack.var(dim=0, unbiased=False).mean(dim=0)


def default_crop_size(height: int, width: int) -> int:
    """Side of the automatic crop: a quarter of the shorter side, kept within 16..96 pixels and the image."""
    return max(1, min(height, width, max(16, min(96, min(height, width) // 4))))


def _window_sums(values: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Sums of ``values`` (H, W) over every ``height`` x ``width`` window, indexed by its top-left corner."""
    integral = F.pad(values.double().cumsum(0).cumsum(1), (1, 0, 1, 0))
    return (integral[height:, width:] - integral[:-height, width:] - integral[height:, :-width]
            + integral[:-height, :-width])


def pick_crop(
    images: Sequence[torch.Tensor], *, size: int | tuple[int, int] | None = None, margin: int = 0
) -> Box:
    """The crop where the images differ most: the window with the largest mean :func:`method_spread`.

    Parameters
    ----------
    images : sequence of torch.Tensor
        ``(1, C, H, W)`` float in [0, 1], all the same H and W: the outputs of the methods being compared (and,
        usefully, the ground truth, so that the crop also shows where they are all wrong).
    size : int or (height, width), optional
        Crop size in pixels; default :func:`default_crop_size`. Clipped to the image.
    margin : int, optional
        Pixels along each border that the crop avoids when the image is large enough (borders are where the
        methods' padding differs, which is rarely what one wants to look at). Default 0.

    Returns
    -------
    Box
        ``(x, y, w, h)``; the centred crop when the images agree everywhere; the first (top-most, then
        left-most) of equally good windows.
    """
    spread = method_spread(images)
    height, width = spread.shape
    if size is None:
        size = default_crop_size(height, width)
    crop_height, crop_width = (size, size) if isinstance(size, int) else size
    if crop_height < 1 or crop_width < 1:
        raise ValueError(f"crop size must be positive, got {size}")
    crop_height, crop_width = min(crop_height, height), min(crop_width, width)
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if float(spread.max()) <= 0.0:
        return (width - crop_width) // 2, (height - crop_height) // 2, crop_width, crop_height
    # The margin shrinks where the image is too small for it, so that a crop always exists.
    margin_y = min(margin, (height - crop_height) // 2)
    margin_x = min(margin, (width - crop_width) // 2)
    sums = _window_sums(spread, crop_height, crop_width)
    allowed = sums[margin_y : sums.shape[0] - margin_y, margin_x : sums.shape[1] - margin_x]
    index = int(torch.argmax(allowed))
    top, left = divmod(index, allowed.shape[1])
    return left + margin_x, top + margin_y, crop_width, crop_height


def parse_box(text: str) -> Box:
    """``"x,y,w,h"`` -> ``(x, y, w, h)``; x, y >= 0 and w, h >= 1 (ValueError otherwise)."""
    parts = [part.strip() for part in text.split(",")]
    try:
        x, y, w, h = (int(part) for part in parts)
    except ValueError:
        raise ValueError(f"a crop is x,y,w,h in pixels (four integers), got {text!r}") from None
    if x < 0 or y < 0 or w < 1 or h < 1:
        raise ValueError(f"a crop needs x, y >= 0 and w, h >= 1, got {text!r}")
    return x, y, w, h


def _check_box(box: Box, height: int, width: int) -> None:
    x, y, w, h = box
    if x < 0 or y < 0 or w < 1 or h < 1 or x + w > width or y + h > height:
        raise ValueError(f"crop x,y,w,h = {x},{y},{w},{h} does not fit in the {width}x{height} image")


def clamp_box(box: Box, height: int, width: int) -> Box:
    """``box`` shrunk to at most the image and moved inside it (for one crop asked of images of many sizes)."""
    x, y, w, h = box
    w, h = min(w, width), min(h, height)
    return min(x, width - w), min(y, height - h), w, h


def crop(image: torch.Tensor, box: Box) -> torch.Tensor:
    """``image[..., y:y+h, x:x+w]`` of a ``(1, C, H, W)`` image; ValueError if the box is not inside it."""
    _check_image(image)
    _check_box(box, *image.shape[-2:])
    x, y, w, h = box
    return image[..., y : y + h, x : x + w]


def zoom_nearest(image: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest-neighbour enlargement ``(1, C, H, W)`` -> ``(1, C, factor H, factor W)``: every pixel a square."""
    _check_image(image)
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"zoom factor must be an integer >= 1, got {factor!r}")
    return image.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def _zoom_for(box: Box, panel_size: int) -> int:
    return max(1, round(panel_size / max(box[2], box[3])))


# ------------------------------------------------------------------------------------------------ drawing


def _font(size: int = _FONT_SIZE) -> PIL.ImageFont.ImageFont | PIL.ImageFont.FreeTypeFont:
    try:
        return PIL.ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1 or built without FreeType: the fixed bitmap font
        return PIL.ImageFont.load_default()


def _fit_text(draw: PIL.ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text``, cut and ended with an ellipsis if it is wider than ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…" if text else ""


def _to_pillow(image: torch.Tensor) -> PIL.Image.Image:
    return PIL.Image.fromarray(to_array(_rgb(image).contiguous()), mode="RGB")


def _from_pillow(picture: PIL.Image.Image) -> torch.Tensor:
    return to_tensor(np.asarray(picture.convert("RGB")))


def labelled_panel(image: torch.Tensor, lines: Sequence[str], *, band_lines: int = LABEL_LINES) -> torch.Tensor:
    """``image`` above a white band holding ``lines`` of black text (each cut to the panel's width).

    Parameters
    ----------
    image : torch.Tensor
        ``(1, C, H, W)`` float in [0, 1].
    lines : sequence of str
        At most ``band_lines`` lines, e.g. ``["bicubic", "28.42 dB / 0.8104"]``; missing lines stay blank.
    band_lines : int, optional
        Height of the band in lines (the same for every panel of a strip, so that they line up).

    Returns
    -------
    torch.Tensor
        ``(1, 3, H + band, W)`` float32 in [0, 1] (RGB, quantised to 8 bits), ``band`` =
        ``18 * band_lines + 4`` pixels.
    """
    _check_image(image)
    if len(lines) > band_lines:
        raise ValueError(f"{len(lines)} label lines do not fit a band of {band_lines}")
    height, width = image.shape[-2:]
    band = _LINE_HEIGHT * band_lines + _BAND_PADDING
    picture = PIL.Image.new("RGB", (width, height + band), "white")
    picture.paste(_to_pillow(image), (0, 0))
    draw = PIL.ImageDraw.Draw(picture)
    font = _font()
    for index, line in enumerate(lines):
        text = _fit_text(draw, line, font, width - 4)
        draw.text((2, height + _BAND_PADDING // 2 + index * _LINE_HEIGHT), text, fill="black", font=font)
    return _from_pillow(picture)


def overview_panel(image: torch.Tensor, box: Box, *, height: int) -> torch.Tensor:
    """The whole ``image`` resized to ``height`` rows (aspect kept, Lanczos), with ``box`` outlined in red.

    Returns
    -------
    torch.Tensor
        ``(1, 3, height, round(W * height / H))`` float32 in [0, 1].
    """
    _check_image(image)
    if height < 1:
        raise ValueError(f"height must be >= 1, got {height}")
    source_height, source_width = image.shape[-2:]
    _check_box(box, source_height, source_width)
    factor = height / source_height
    width = max(1, round(source_width * factor))
    picture = _to_pillow(image).resize((width, height), PIL.Image.Resampling.LANCZOS)
    x, y, w, h = box
    left, top = int(x * factor), int(y * factor)
    right, bottom = max(left, round((x + w) * factor) - 1), max(top, round((y + h) * factor) - 1)
    PIL.ImageDraw.Draw(picture).rectangle((left, top, right, bottom), outline=_BOX_COLOUR, width=2)
    return _from_pillow(picture)


def make_strip(panels: Sequence[torch.Tensor], *, gap: int = _GAP) -> torch.Tensor:
    """Panels side by side, top-aligned on white, ``gap`` white columns between them.

    Parameters
    ----------
    panels : sequence of torch.Tensor
        ``(1, C, H_i, W_i)`` float in [0, 1].

    Returns
    -------
    torch.Tensor
        ``(1, 3, max H_i, sum W_i + gap (n - 1))`` float32 in [0, 1].
    """
    if not panels:
        raise ValueError("need at least one panel")
    for index, panel in enumerate(panels):
        _check_image(panel, f"panel {index}")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    height = max(panel.shape[-2] for panel in panels)
    width = sum(panel.shape[-1] for panel in panels) + gap * (len(panels) - 1)
    strip = torch.ones(1, 3, height, width)
    left = 0
    for panel in panels:
        panel_height, panel_width = panel.shape[-2:]
        strip[..., :panel_height, left : left + panel_width] = _rgb(panel).float()
        left += panel_width + gap
    return strip


def _pad_right(image: torch.Tensor, width: int) -> torch.Tensor:
    """``image`` widened to at least ``width`` columns with white on the right."""
    missing = width - image.shape[-1]
    return F.pad(image, (0, missing), value=1.0) if missing > 0 else image


# ------------------------------------------------------------------------------------------------ strips


@dataclass(frozen=True)
class Panel:
    """One image of a comparison.

    Attributes
    ----------
    label : str
        First line under the crop, e.g. the method.
    image : torch.Tensor
        ``(1, C, H, W)`` float in [0, 1]; every panel of a strip has the same H and W.
    caption : str
        Second line, e.g. ``"28.42 dB / 0.8104"`` from :func:`score_caption`.
    choose_crop : bool
        Whether the image takes part in choosing the crop (not, e.g., a nearest-neighbour enlarged input).
    """

    label: str
    image: torch.Tensor
    caption: str = ""
    choose_crop: bool = True


def score_caption(psnr_db: float, ssim_value: float) -> str:
    """``"28.42 dB / 0.8104"``: PSNR in dB and SSIM, as in the eval tables."""
    return f"{psnr_db:.2f} dB / {ssim_value:.4f}"


def comparison_strip(
    panels: Sequence[Panel],
    *,
    box: Box | None = None,
    crop_size: int | None = None,
    margin: int = 0,
    panel_size: int = PANEL_SIZE,
    overview: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Box, int]:
    """The same crop of every panel, zoomed nearest-neighbour and labelled, side by side.

    Parameters
    ----------
    panels : sequence of Panel
        In display order; images of one size.
    box : Box, optional
        The crop; default :func:`pick_crop` over the panels with ``choose_crop`` (all of them if none has it).
    crop_size, margin : passed to :func:`pick_crop`.
    panel_size : int, optional
        Wanted on-screen size of the crop's longer side; the zoom is the nearest integer (at least 1).
    overview : torch.Tensor, optional
        ``(1, C, H, W)``: shown first, whole, at the crops' height, with the crop outlined.

    Returns
    -------
    (strip, box, zoom)
        ``strip`` ``(1, 3, Hs, Ws)`` float32 in [0, 1]; the box used; the integer zoom factor.
    """
    if not panels:
        raise ValueError("need at least one panel")
    height, width = _check_same_size([panel.image for panel in panels])
    if box is None:
        chosen = [panel.image for panel in panels if panel.choose_crop] or [panel.image for panel in panels]
        box = pick_crop(chosen, size=crop_size, margin=margin)
    _check_box(box, height, width)
    zoom = _zoom_for(box, panel_size)
    tiles = []
    if overview is not None:
        x, y, w, h = box
        whole = _pad_right(overview_panel(overview, box, height=h * zoom), _OVERVIEW_MIN_WIDTH)
        tiles.append(labelled_panel(whole, ["whole image", f"crop {x},{y} {w}x{h}"]))
    for panel in panels:
        tiles.append(labelled_panel(zoom_nearest(crop(panel.image, box), zoom), [panel.label, panel.caption]))
    return make_strip(tiles), box, zoom
