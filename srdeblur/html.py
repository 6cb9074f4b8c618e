"""The evaluation report as one HTML page with hand-drawn SVG charts: formatting only (data in, text out).

No computation on images, no files, no third-party imports: :mod:`srdeblur.visual` prepares the strips (as
``data:`` URIs or relative paths) and calls :func:`render_report`. The page has no scripts and loads nothing
from the network, so it opens from disk in any browser.
"""

from __future__ import annotations

import math
from html import escape
from typing import Sequence

__all__ = ["PALETTE", "curve_series", "dot_chart", "line_chart", "nice_ticks", "psnr_chart", "render_report"]

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
_FONT = "font-family:system-ui,sans-serif;font-size:12px"
_CURVE_KEYS = ("x2", "x3", "x4", "x8", "psnr", "input")  # validation PSNRs a training run records, in dB

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1500px;padding:0 16px;
color:#222;background:#fff}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}h3{font-size:1em;margin:1.5em 0 .4em}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}td:first-child,th:first-child{text-align:left}
img.strip{max-width:100%;height:auto;display:block;border:1px solid #ddd}
.note,.meta,footer{color:#555;font-size:.9em}.links{font-size:.9em;margin:.3em 0}
svg{max-width:100%;height:auto;display:block}
"""


# ------------------------------------------------------------------------------------------------ charts


def nice_ticks(low: float, high: float, *, count: int = 6) -> list[float]:
    """About ``count`` round tick values (steps of 1, 2 or 5 times a power of ten) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"tick range must be finite, got {low}, {high}")
    if high <= low:
        low, high = low - 0.5, low + 0.5
    raw = (high - low) / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first, last = math.floor(low / step), math.ceil(high / step)
    return [round(index * step, 10) for index in range(first, last + 1)]


def _format_tick(value: float) -> str:
    return f"{value:g}"


def _svg_open(width: int, height: int, label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}" style="{_FONT}">')


def _legend(names: Sequence[str], x: float, y: float) -> str:
    parts, offset = [], 0.0
    for index, name in enumerate(names):
        colour = PALETTE[index % len(PALETTE)]
        parts.append(f'<rect x="{x + offset:.1f}" y="{y - 9}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{x + offset + 14:.1f}" y="{y}">{escape(name)}</text>')
        offset += 24 + 7 * len(name)
    return "".join(parts)


def _y_axis(ticks: list[float], scale, left: float, right: float, label: str, top: float, bottom: float) -> str:
    parts = []
    for tick in ticks:
        y = scale(tick)
        parts.append(f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_format_tick(tick)}</text>')
    middle = (top + bottom) / 2
    parts.append(f'<text transform="translate(14 {middle:.1f}) rotate(-90)" text-anchor="middle">'
                 f'{escape(label)}</text>')
    parts.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{bottom}" stroke="#888"/>')
    return "".join(parts)


def dot_chart(categories: Sequence[str], series: dict[str, Sequence[float | None]], *, y_label: str,
              title: str = "") -> str:
    """One column per category, one coloured dot per series (missing values skipped), as an ``<svg>`` string.

    Dots rather than bars: the y axis does not start at zero (PSNRs differ by tenths of a dB around 30), and
    a bar's length would then mean nothing.
    """
    names = list(series)
    values = [v for vs in series.values() for v in vs if v is not None and math.isfinite(v)]
    if not categories or not values:
        return ""
    ticks = nice_ticks(min(values), max(values))
    low, high = ticks[0], ticks[-1]
    column = max(28, 10 * len(names) + 14, 420 // len(categories))  # a few images spread over 420 px
    longest = max(len(c) for c in categories)
    rotate = len(categories) > 6 or longest * 7 > column
    left, top, right_pad = 56, 34, 16
    bottom_pad = 30 + (min(longest, 24) * 5 if rotate else 0)
    plot_height = 260
    width = int(left + column * len(categories) + right_pad)
    height = int(top + plot_height + bottom_pad)

    def y_of(value: float) -> float:
        return top + plot_height * (high - value) / (high - low)

    parts = [_svg_open(width, height, title or y_label)]
    parts.append(_legend(names, left, 16))
    parts.append(_y_axis(ticks, y_of, left, width - right_pad, y_label, top, top + plot_height))
    for index, category in enumerate(categories):
        centre = left + column * (index + 0.5)
        parts.append(f'<line x1="{centre:.1f}" x2="{centre:.1f}" y1="{top}" y2="{top + plot_height}" '
                     'stroke="#f3f3f3"/>')
        label_y = top + plot_height + 14
        short = category if len(category) <= 24 else category[:23] + "…"
        if rotate:
            parts.append(f'<text transform="translate({centre + 3:.1f} {label_y}) rotate(-45)" '
                         f'text-anchor="end">{escape(short)}</text>')
        else:
            parts.append(f'<text x="{centre:.1f}" y="{label_y}" text-anchor="middle">{escape(short)}</text>')
        for series_index, name in enumerate(names):
            value = series[name][index]
            if value is None or not math.isfinite(value):
                continue
            x = centre + (series_index - (len(names) - 1) / 2) * 8
            parts.append(f'<circle cx="{x:.1f}" cy="{y_of(value):.1f}" r="4" '
                         f'fill="{PALETTE[series_index % len(PALETTE)]}"><title>{escape(category)} · '
                         f'{escape(name)}: {value:.2f}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(series: dict[str, Sequence[tuple[float, float]]], *, x_label: str, y_label: str,
               title: str = "", dashed: Sequence[str] = ()) -> str:
    """Polylines with dots, one per series of ``(x, y)`` points, as an ``<svg>`` string (x from 0)."""
    names = [name for name, points in series.items() if points]
    points = [p for name in names for p in series[name] if math.isfinite(p[0]) and math.isfinite(p[1])]
    if not points:
        return ""
    y_ticks = nice_ticks(min(p[1] for p in points), max(p[1] for p in points))
    x_ticks = nice_ticks(0.0, max(max(p[0] for p in points), 1e-9))
    left, top, right_pad, bottom_pad = 56, 34, 20, 44
    plot_width, plot_height = 640, 260
    width, height = left + plot_width + right_pad, top + plot_height + bottom_pad

    def x_of(value: float) -> float:
        return left + plot_width * (value - x_ticks[0]) / (x_ticks[-1] - x_ticks[0])

    def y_of(value: float) -> float:
        return top + plot_height * (y_ticks[-1] - value) / (y_ticks[-1] - y_ticks[0])

    parts = [_svg_open(width, height, title or y_label)]
    parts.append(_legend(names, left, 16))
    parts.append(_y_axis(y_ticks, y_of, left, left + plot_width, y_label, top, top + plot_height))
    axis_y = top + plot_height
    parts.append(f'<line x1="{left}" x2="{left + plot_width}" y1="{axis_y}" y2="{axis_y}" stroke="#888"/>')
    for tick in x_ticks:
        parts.append(f'<text x="{x_of(tick):.1f}" y="{axis_y + 16}" text-anchor="middle">{_format_tick(tick)}</text>')
    parts.append(f'<text x="{left + plot_width / 2}" y="{height - 6}" text-anchor="middle">{escape(x_label)}</text>')
    for index, name in enumerate(names):
        colour = PALETTE[index % len(PALETTE)]
        line = sorted((x, y) for x, y in series[name] if math.isfinite(x) and math.isfinite(y))
        coordinates = " ".join(f"{x_of(x):.1f},{y_of(y):.1f}" for x, y in line)
        dash = ' stroke-dasharray="5 4"' if name in dashed else ""
        parts.append(f'<polyline points="{coordinates}" fill="none" stroke="{colour}" stroke-width="1.5"{dash}/>')
        for x, y in line:
            parts.append(f'<circle cx="{x_of(x):.1f}" cy="{y_of(y):.1f}" r="2.5" fill="{colour}">'
                         f'<title>{escape(name)}: {y:.2f} at {x:.3g}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def psnr_chart(evaluation: dict) -> str:
    """PSNR per image (columns) per method (colours) of an :meth:`Evaluation.to_dict`, as ``<svg>``."""
    images = list(dict.fromkeys(row["image"] for row in evaluation["rows"]))
    value = {(row["image"], row["method"]): row["psnr"] for row in evaluation["rows"]}
    series = {method: [value.get((image, method)) for image in images] for method in evaluation["methods"]}
    return dot_chart(images, series, y_label="PSNR (dB)", title="PSNR per image and method")


def curve_series(history: Sequence[dict]) -> dict[str, list[tuple[float, float]]]:
    """Validation PSNRs of a training run against CPU-hours: ``{"x2": [(cpu_hours, dB), ...], ...}``.

    Entries without ``cpu_hours`` are skipped; ``input`` (deblurring: PSNR of the blurred input, a baseline)
    is kept as its own series.
    """
    series: dict[str, list[tuple[float, float]]] = {}
    for key in _CURVE_KEYS:
        points = [(float(entry["cpu_hours"]), float(entry[key])) for entry in history
                  if isinstance(entry.get("cpu_hours"), (int, float)) and isinstance(entry.get(key), (int, float))]
        if points:
            series[key] = points
    return series


# ------------------------------------------------------------------------------------------------ page


def _summary_table(evaluation: dict) -> str:
    rows = ["<table><tr><th>method</th><th>PSNR (dB)</th><th>SSIM</th><th>s / image</th><th>images</th></tr>"]
    for method in evaluation["methods"]:
        summary = evaluation["summary"].get(method)
        if not summary:
            continue
        rows.append(f"<tr><td>{escape(method)}</td><td>{summary['psnr']:.2f}</td><td>{summary['ssim']:.4f}</td>"
                    f"<td>{summary['seconds']:.3f}</td><td>{summary['count']}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _per_image_table(evaluation: dict) -> str:
    methods = evaluation["methods"]
    by_image: dict[str, dict[str, dict]] = {}
    for row in evaluation["rows"]:
        by_image.setdefault(row["image"], {})[row["method"]] = row
    head = "".join(f"<th>{escape(m)}</th>" for m in methods)
    rows = [f"<table><tr><th>image</th>{head}</tr>"]
    for image, cells in by_image.items():
        values = "".join(
            f"<td>{cells[m]['psnr']:.2f} / {cells[m]['ssim']:.4f}</td>" if m in cells else "<td>—</td>"
            for m in methods
        )
        rows.append(f"<tr><td>{escape(image)}</td>{values}</tr>")
    rows.append("</table>")
    return "".join(rows)


def _strip_section(strip: dict, index: int) -> str:
    x, y, w, h = strip["box"]
    links = " · ".join(f'<a href="{escape(href, quote=True)}">{escape(label)}</a>' for label, href in strip["links"])
    return (
        f'<section id="image-{index}"><h3>{escape(strip["name"])}</h3>'
        f'<img class="strip" src="{escape(strip["src"], quote=True)}" width="{strip["width"]}" '
        f'height="{strip["height"]}" alt="{escape(strip["name"], quote=True)}: crop {x},{y} {w}x{h}, '
        f'zoom x{strip["zoom"]}">'
        + (f'<p class="links">full size: {links}</p>' if links else "")
        + "</section>"
    )


def render_report(
    evaluation: dict,
    strips: Sequence[dict],
    *,
    title: str,
    history: Sequence[dict] | None = None,
    run_name: str = "",
) -> str:
    """The report page.

    Parameters
    ----------
    evaluation : dict
        :meth:`srdeblur.evaluation.Evaluation.to_dict` (dataset, task, methods, conventions, summary, rows).
    strips : sequence of dict
        Per image: ``name``, ``src`` (a ``data:`` URI or a path relative to the page), ``width`` and ``height``
        in pixels, ``box`` (x, y, w, h), ``zoom`` and ``links`` (``[(label, relative path), ...]`` of
        full-size files).
    title : str
        Page title and heading.
    history : sequence of dict, optional
        A training run's validation entries (see :func:`curve_series`): plotted against CPU-hours.
    run_name : str
        Name of that run, for the heading.

    Returns
    -------
    str
        A complete HTML5 document (UTF-8).
    """
    images = len({row["image"] for row in evaluation["rows"]})
    conventions = "; ".join(str(value) for value in evaluation.get("conventions", {}).values())
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">{escape(conventions)}</p>' if conventions else "",
        f"<h2>Mean over {images} image{'s' if images != 1 else ''}</h2>",
        _summary_table(evaluation),
        "<h2>PSNR per image</h2>",
        psnr_chart(evaluation),
        "<details><summary>PSNR (dB) / SSIM per image</summary>",
        _per_image_table(evaluation),
        "</details>",
    ]
    if history is not None:
        series = curve_series(history)
        chart = line_chart(series, x_label="CPU-hours", y_label="validation PSNR (dB)",
                           title="validation PSNR against CPU time", dashed=("input",))
        heading = f"Training run {escape(run_name)}: " if run_name else "Training run: "
        parts += [f"<h2>{heading}validation PSNR against CPU time</h2>",
                  chart or '<p class="note">The run has no validation entries with CPU time yet.</p>']
    parts += [
        "<h2>Images</h2>",
        '<p class="note">Each strip: the whole ground truth with the crop outlined, then that crop of the input '
        "and of every method, enlarged nearest-neighbour (every pixel a square), labelled with PSNR / SSIM "
        "against the ground truth as in the table above. The crop is where the methods differ most, unless "
        "one was given. Full-size PNGs are in the folder beside this page.</p>",
    ]
    parts += [_strip_section(strip, index) for index, strip in enumerate(strips)]
    parts.append("<footer><p>Made by srdeblur eval --report.</p></footer></body></html>")
    return "\n".join(part for part in parts if part)
