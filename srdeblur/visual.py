"""Seeing the difference: the zoomed crop where restorations differ most, side by side and labelled, and the
evaluation report that shows one such strip per image.

The strips themselves are drawn by :mod:`srdeblur.strips` (re-exported here); this module measures them
(:func:`compare`, :func:`method_comparison`) and builds the report: :class:`StripCollector` receives
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

import torch

from srdeblur import html
from srdeblur.evaluation import Evaluation, Sample, evaluate
from srdeblur.io import write_image
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

from srdeblur.strips import (LABEL_LINES, PANEL_SIZE, Box, Panel, _check_image, _rgb, clamp_box,  # noqa: F401
                              comparison_strip, crop, default_crop_size, labelled_panel, make_strip, method_spread,
                              overview_panel, parse_box, pick_crop, score_caption, zoom_nearest)


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
