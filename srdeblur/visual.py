"""Seeing the difference: the zoomed crop where restorations differ most, side by side and labelled, and the
evaluation report that shows one such strip per image.

Pure functions first: :func:`method_spread` and :func:`pick_crop` choose the crop, :func:`crop`,
:func:`zoom_nearest`, :func:`labelled_panel`, :func:`overview_panel` and :func:`make_strip` draw it, and
:func:`comparison_strip` / :func:`compare` put them together. Then the report: :class:`StripCollector` receives
the ``on_output`` / ``on_row`` callbacks of :func:`srdeblur.evaluation.evaluate` and keeps only the current
image's outputs; :func:`evaluation_report` writes a report folder::

    DIR/index.html             the page; strips embedded as base64 PNG data: URIs, charts as inline SVG
    DIR/strips/NAME.png        the same strips as files
    DIR/full/NAME/METHOD.png   full-size input, outputs and ground truth (linked from the page, not embedded)

so ``index.html`` alone shows every strip and chart without a server; the full-size links need the folder.

Images are ``(1, C, H, W)`` float32 tensors in [0, 1] with C = 1 or 3; strips are RGB ``(1, 3, H, W)``. A
box is ``(x, y, w, h)`` in pixels of the compared images (x to the right, y down). Labels are drawn with
Pillow on uint8 arrays made by :func:`srdeblur.io.to_array` (and turned back by :func:`srdeblur.io.to_tensor`).
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont
import torch
from torch.nn import functional as F

from srdeblur import html
from srdeblur.evaluation import Evaluation, Sample, evaluate
from srdeblur.io import read_image, to_array, to_tensor, write_image
from srdeblur.metrics import psnr, ssim

__all__ = [
    "Box",
    "Comparison",
    "Panel",
    "StripCollector",
    "StripRecord",
    "clamp_box",
    "compare",
    "comparison_strip",
    "crop",
    "default_crop_size",
    "evaluation_report",
    "labelled_panel",
    "make_strip",
    "method_comparison",
    "method_spread",
    "overview_panel",
    "parse_box",
    "pick_crop",
    "read_run_history",
    "sample_panels",
    "score_caption",
    "zoom_nearest",
]

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


class Comparison(NamedTuple):
    """What :func:`compare` returns: the strip, the crop it shows, and each image's scores against the truth."""

    strip: torch.Tensor
    box: Box
    scores: dict[str, tuple[float, float]]  # label -> (PSNR dB, SSIM), for the images measured


def _measure(image: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    if image.shape[1] != truth.shape[1]:  # a gray image against a colour truth, or the reverse: compare as RGB
        image, truth = _rgb(image), _rgb(truth)
    return float(psnr(image, truth)[0]), float(ssim(image, truth)[0])


def _integer_factor(small: tuple[int, int], large: tuple[int, int]) -> int | None:
    factor = large[0] // small[0]
    return factor if factor >= 1 and (small[0] * factor, small[1] * factor) == large else None


def compare(
    images: Sequence[torch.Tensor],
    *,
    labels: Sequence[str] | None = None,
    truth: torch.Tensor | None = None,
    box: Box | None = None,
    crop_size: int | None = None,
    panel_size: int = PANEL_SIZE,
) -> Comparison:
    """A labelled strip of the same zoomed crop of ``images`` (and ``truth``), with PSNR/SSIM against the truth.

    Parameters
    ----------
    images : sequence of torch.Tensor
        ``(1, C, H, W)`` float in [0, 1]. Images the size of ``truth`` (or of the largest image) are measured
        and choose the crop; smaller ones by an integer factor (a low-resolution input) are enlarged
        nearest-neighbour and only shown.
    labels : sequence of str, optional
        One per image; default ``"image 1"``, ``"image 2"``...
    truth : torch.Tensor, optional
        The ground truth: shown last and whole as an overview (else the first full-size image is), and every
        full-size image is measured against it (PSNR and SSIM on the Y channel, nothing shaved,
        :mod:`srdeblur.metrics`).
    box, crop_size, panel_size : see :func:`comparison_strip`.

    Returns
    -------
    Comparison
        ``strip`` (1, 3, Hs, Ws) float32 in [0, 1], ``box`` (x, y, w, h) and ``scores`` {label: (psnr, ssim)}.
    """
    if not images:
        raise ValueError("need at least one image to compare")
    labels = list(labels) if labels is not None else [f"image {index + 1}" for index in range(len(images))]
    if len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} images")
    for index, image in enumerate(images):
        _check_image(image, f"image {index}")
    if truth is not None:
        _check_image(truth, "truth")
    size = tuple(truth.shape[-2:]) if truth is not None else max(tuple(i.shape[-2:]) for i in images)
    panels, scores = [], {}
    for label, image in zip(labels, images):
        own = tuple(image.shape[-2:])
        if own == size:
            caption = ""
            if truth is not None:
                scores[label] = _measure(image, truth)
                caption = score_caption(*scores[label])
            panels.append(Panel(label, image, caption))
            continue
        factor = _integer_factor(own, size)
        if factor is None:
            raise ValueError(f"{label}: {own[1]}x{own[0]} is neither {size[1]}x{size[0]} nor smaller by an "
                             "integer factor")
        panels.append(Panel(label, zoom_nearest(image, factor), f"x{factor} nearest", choose_crop=False))
    if truth is not None:
        panels.append(Panel("ground truth", truth, "reference"))
    overview = truth if truth is not None else next((p.image for p in panels if p.choose_crop), panels[0].image)
    margin = min(size) // 16  # as in the report: borders are where padding differs
    strip, box, _ = comparison_strip(panels, box=box, crop_size=crop_size, margin=margin, panel_size=panel_size,
                                     overview=overview)
    return Comparison(strip, box, scores)


def sample_panels(sample: Sample, outputs: dict[str, torch.Tensor], rows: dict[str, dict]) -> list[Panel]:
    """The panels of one evaluated image: its input (SR: the LR image enlarged nearest-neighbour), every
    method's output captioned with its row's PSNR/SSIM, and the ground truth last."""
    truth_size = tuple(sample.ground_truth.shape[-2:])
    panels = []
    if "input" not in outputs:  # no method shows the input (SR: it is smaller)
        factor = _integer_factor(tuple(sample.degraded.shape[-2:]), truth_size)
        if factor == 1:
            panels.append(Panel("input", sample.degraded, "degraded", choose_crop=False))
        elif factor is not None:
            panels.append(Panel("input", zoom_nearest(sample.degraded, factor), f"LR, x{factor} nearest",
                                choose_crop=False))
    for method, output in outputs.items():
        row = rows.get(method)
        caption = score_caption(row["psnr"], row["ssim"]) if row else ""
        panels.append(Panel(method, output, caption))
    panels.append(Panel("ground truth", sample.ground_truth, "reference"))
    return panels


def _margin_for(sample: Sample) -> int:
    """Border the automatic crop avoids: the SR shave, at least 1/16 of the shorter side."""
    height, width = sample.ground_truth.shape[-2:]
    factor = height // max(1, sample.degraded.shape[-2])
    return max(factor, min(height, width) // 16)


def method_comparison(
    truth_path: str | os.PathLike,
    *,
    scale: int = 4,
    methods: Sequence[str] = ("bicubic", "lanczos"),
    box: Box | None = None,
    crop_size: int | None = None,
    panel_size: int = PANEL_SIZE,
    models: dict[str, torch.nn.Module] | None = None,
) -> Comparison:
    """Degrade one ground-truth image as ``srdeblur eval`` does (MATLAB bicubic x1/``scale``, 8-bit), restore
    it with each of ``methods`` and return their :func:`compare`-style strip: whole image, input, methods
    (with PSNR/SSIM on Y, ``scale`` pixels shaved, as in the eval tables) and ground truth."""
    outputs: dict[str, torch.Tensor] = {}
    rows: dict[str, dict] = {}
    seen: list[Sample] = []

    def keep(sample: Sample, method: str, output: torch.Tensor) -> None:
        seen[:] = [sample]
        outputs[method] = output

    evaluate(str(truth_path), task="sr", scale=scale, methods=tuple(methods), models=models, on_output=keep,
             on_row=lambda row: rows.__setitem__(row["method"], row))
    sample = seen[0]
    panels = sample_panels(sample, outputs, rows)
    strip, box, _ = comparison_strip(panels, box=box, crop_size=crop_size, margin=_margin_for(sample),
                                     panel_size=panel_size, overview=sample.ground_truth)
    return Comparison(strip, box, {m: (r["psnr"], r["ssim"]) for m, r in rows.items()})


# ------------------------------------------------------------------------------------------------ report


@dataclass
class StripRecord:
    """One image of a report: where its strip and full-size files are (relative to the report folder)."""

    name: str
    strip: Path
    width: int
    height: int
    box: Box
    zoom: int
    full: dict[str, Path] = field(default_factory=dict)  # panel label -> full-size PNG


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"


class StripCollector:
    """The report's side of an evaluation: pass :meth:`on_output` and :meth:`on_row` to
    :func:`srdeblur.evaluation.evaluate`, then call :meth:`finish`.

    Only the current image's outputs are held; when the next image starts, its strip is drawn and written to
    ``folder/strips/NAME.png`` (and, with ``write_full``, every output to ``folder/full/NAME/METHOD.png`` as it
    arrives, plus ``input.png`` and ``truth.png``), and the tensors are dropped.

    Parameters
    ----------
    folder : path
        The report folder (created if needed).
    box : Box, optional
        The crop of every image (clamped to each image); default: chosen per image by :func:`pick_crop`.
    crop_size, panel_size : see :func:`comparison_strip`.
    write_full : bool
        Also write full-size PNGs (8-bit).
    """

    def __init__(self, folder: str | os.PathLike, *, box: Box | None = None, crop_size: int | None = None,
                 panel_size: int = PANEL_SIZE, write_full: bool = True) -> None:
        self.folder = Path(folder)
        self.box = box
        self.crop_size = crop_size
        self.panel_size = panel_size
        self.write_full = write_full
        self.records: list[StripRecord] = []
        self._sample: Sample | None = None
        self._slug = ""
        self._outputs: dict[str, torch.Tensor] = {}
        self._rows: dict[str, dict] = {}
        self._full: dict[str, Path] = {}
        self._slugs: set[str] = set()

    def on_output(self, sample: Sample, method: str, output: torch.Tensor) -> None:
        """Keep ``output`` until ``sample`` is complete (and write it full-size)."""
        if self._sample is not None and (sample is not self._sample or method in self._outputs):
            self._flush()
        if self._sample is None:
            self._start(sample)
        self._outputs[method] = output.detach()
        if self.write_full:
            self._write_full(method, output)

    def on_row(self, row: dict) -> None:
        """Keep the current image's scores for the strip's captions."""
        if self._sample is not None and row["image"] == self._sample.name:
            self._rows[row["method"]] = row

    def finish(self) -> list[StripRecord]:
        """Draw the last image's strip; return one record per image, in evaluation order."""
        if self._sample is not None:
            self._flush()
        return self.records

    def _start(self, sample: Sample) -> None:
        self._sample = sample
        slug, suffix = _slug(sample.name), 2
        while slug in self._slugs:  # two images named alike (a.png and a.jpg): keep both
            slug, suffix = f"{_slug(sample.name)}-{suffix}", suffix + 1
        self._slugs.add(slug)
        self._slug = slug
        if self.write_full:
            self._write_full("input", sample.degraded)
            self._write_full("ground truth", sample.ground_truth, file_stem="truth")

    def _write_full(self, label: str, image: torch.Tensor, *, file_stem: str | None = None) -> None:
        relative = Path("full") / self._slug / f"{_slug(file_stem or label)}.png"
        (self.folder / relative).parent.mkdir(parents=True, exist_ok=True)
        write_image(self.folder / relative, image)
        self._full[label] = relative

    def _flush(self) -> None:
        sample = self._sample
        assert sample is not None
        panels = sample_panels(sample, self._outputs, self._rows)
        height, width = sample.ground_truth.shape[-2:]
        box = clamp_box(self.box, height, width) if self.box else None
        strip, box, zoom = comparison_strip(panels, box=box, crop_size=self.crop_size, margin=_margin_for(sample),
                                            panel_size=self.panel_size, overview=sample.ground_truth)
        relative = Path("strips") / f"{self._slug}.png"
        (self.folder / relative).parent.mkdir(parents=True, exist_ok=True)
        write_image(self.folder / relative, strip)
        # Links in the strip's order: input, methods, ground truth.
        full = {label: path for label, path in self._full.items() if label != "ground truth"}
        full.update({label: path for label, path in self._full.items() if label == "ground truth"})
        self.records.append(StripRecord(sample.name, relative, strip.shape[-1], strip.shape[-2], box, zoom, full))
        self._sample, self._outputs, self._rows, self._full = None, {}, {}, {}


def read_run_history(run: str | os.PathLike) -> list[dict]:
    """The validation history of a training run: ``RUN/last.json`` (or the given JSON file) -> its
    ``history`` entries (``step``, ``cpu_hours``, and ``x2``/``x4``... or ``psnr`` in dB)."""
    path = Path(run)
    if path.is_dir():
        path = path / "last.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training run record here (expected RUN/last.json)")
    try:
        history = json.loads(path.read_text()).get("history")
    except (ValueError, AttributeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a training run record ({error})") from None
    if not isinstance(history, list) or not all(isinstance(entry, dict) for entry in history):
        raise ValueError(f"{path}: no 'history' list of validation entries")
    return history


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def evaluation_report(
    dataset: str,
    folder: str | os.PathLike,
    *,
    run: str | os.PathLike | None = None,
    box: Box | None = None,
    crop_size: int | None = None,
    write_full: bool = True,
    on_row: Callable[[dict], None] | None = None,
    **options,
) -> Evaluation:
    """Evaluate ``dataset`` (see :func:`srdeblur.evaluation.evaluate`, which gets ``options``) and write a
    self-contained HTML report to ``folder/index.html``, with the strips, charts and full-size files beside it
    (layout in the module docstring).

    Parameters
    ----------
    run : path, optional
        A training run folder (or its ``last.json``): its validation curve against CPU-hours is plotted too.
    box : Box, optional
        One crop for every image (clamped to each); default: where the methods differ most, per image.
    crop_size : int, optional
        Side of the automatic crop (default :func:`default_crop_size`).
    write_full : bool
        Write the full-size input, outputs and ground truth too (linked from the page).
    on_row : also called with each row (progress).

    Returns
    -------
    Evaluation
        As :func:`srdeblur.evaluation.evaluate` returns it.
    """
    history = read_run_history(run) if run is not None else None  # a bad --run fails before the long part
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    collector = StripCollector(folder, box=box, crop_size=crop_size, write_full=write_full)

    def row_seen(row: dict) -> None:
        collector.on_row(row)
        if on_row:
            on_row(row)

    evaluation = evaluate(dataset, on_row=row_seen, on_output=collector.on_output, **options)
    records = collector.finish()
    strips = [
        {"name": record.name, "src": _data_uri(folder / record.strip), "width": record.width,
         "height": record.height, "box": record.box, "zoom": record.zoom,
         "links": [(label, path.as_posix()) for label, path in record.full.items()]}
        for record in records
    ]
    scale = f" x{evaluation.scale}" if evaluation.task == "sr" else ""
    page = html.render_report(evaluation.to_dict(), strips, title=f"srdeblur eval: {evaluation.dataset}{scale}",
                              history=history, run_name=Path(run).name if run is not None else "")
    (folder / "index.html").write_text(page, encoding="utf-8")
    return evaluation
