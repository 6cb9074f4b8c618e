"""Rendering only: rich tables and progress on stderr, JSON on stdout. No computation happens here."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["stderr_console", "print_json", "evaluation_table", "batch_table"]


def stderr_console(*, quiet: bool = False) -> Console:
    """The console for humans: stderr, so stdout stays machine-readable."""
    return Console(stderr=True, quiet=quiet)


def print_json(data: Any) -> None:
    """One JSON object on stdout."""
    sys.stdout.write(json.dumps(data, indent=1, default=str) + "\n")
    sys.stdout.flush()


def evaluation_table(evaluation: dict, *, per_image: bool = True) -> Table:
    """Methods side by side: one row per image (PSNR / SSIM per method) and a mean row."""
    methods = evaluation["methods"]
    scale = f" x{evaluation['scale']}" if evaluation["task"] == "sr" else ""
    conventions = "; ".join(evaluation["conventions"].values())
    table = Table(title=f"{evaluation['dataset']}{scale} — PSNR (dB) / SSIM", caption=conventions)
    table.add_column("image")
    for method in methods:
        table.add_column(method, justify="right")
    by_image: dict[str, dict[str, dict]] = {}
    for row in evaluation["rows"]:
        by_image.setdefault(row["image"], {})[row["method"]] = row
    if per_image:
        for image, rows in by_image.items():
            table.add_row(image, *[_cell(rows.get(m)) for m in methods])
    summary = evaluation["summary"]
    table.add_row(
        f"[bold]mean ({len(by_image)})[/bold]",
        *[f"[bold]{_cell(summary.get(m))}[/bold]" for m in methods],
        end_section=True,
    )
    table.add_row("s / image", *[f"{summary[m]['seconds']:.3f}" if m in summary else "" for m in methods])
    return table


def group_table(evaluation: dict, group_summary: dict[str, dict]) -> Table:
    """Mean PSNR / SSIM per group (e.g. per blur kernel) and method."""
    methods = evaluation["methods"]
    groups = sorted({label.split("|", 1)[1] for label in group_summary}, key=_natural_key)
    table = Table(title=f"{evaluation['dataset']} — mean PSNR (dB) / SSIM per kernel")
    table.add_column("kernel")
    for method in methods:
        table.add_column(method, justify="right")
    for group in groups:
        table.add_row(group, *[_cell(group_summary.get(f"{m}|{group}")) for m in methods])
    return table


def batch_table(results: list[Any]) -> Table:
    """Summary of a batch: counts per status and every failure with its message."""
    table = Table(title="srdeblur batch summary")
    table.add_column("input")
    table.add_column("status")
    table.add_column("detail")
    for result in results:
        if result.status != "done":
            # Text, not markup: a file named "photo [final].png" must show as it is.
            table.add_row(Text(str(result.job.source)), result.status, Text(result.message))
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    table.caption = ", ".join(f"{n} {s}" for s, n in counts.items())
    return table


def _cell(row: dict | None) -> str:
    if not row:
        return "—"
    return f"{row['psnr']:.2f} / {row['ssim']:.4f}"


def _natural_key(text: str) -> tuple:
    digits = "".join(ch for ch in text if ch.isdigit())
    return (text.rstrip("0123456789"), int(digits) if digits else 0)
