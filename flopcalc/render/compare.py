"""Several models side by side: the comparison table's cells and the params-vs-MACs (or vs accuracy) plot.

matplotlib is an optional extra (``pip install 'flopcalc[plot]'``); it is imported only when a plot is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flopcalc.errors import FlopcalcError
from flopcalc.render.cells import KIB, Column, fmt_count
from flopcalc.report import Report

PLOT_FORMATS = (".png", ".svg", ".pdf")


@dataclass(frozen=True)
class ComparisonEntry:
    """One model of a comparison: the name the user gave, its report, and the user's accuracy if known."""

    name: str
    report: Report
    accuracy: float | None = None


def comparison_columns(entries: Sequence[ComparisonEntry]) -> tuple[Column, ...]:
    """Model, params, MACs, FLOPs and parameter memory; an accuracy column when any entry has one."""
    base = (
        Column("model", "Model"),
        Column("params", "Params", numeric=True),
        Column("macs", "MACs", numeric=True),
        Column("flops", "FLOPs", numeric=True),
        Column("param_memory", "Param memory (MB, 1 kB = 1024 B)", numeric=True),
    )
    if any(entry.accuracy is not None for entry in entries):
        return (*base, Column("accuracy", "Accuracy", numeric=True))
    return base


def comparison_cells(entries: Sequence[ComparisonEntry]) -> list[dict[str, str]]:
    """Formatted cells of each entry, keyed like :func:`comparison_columns`."""
    rows = []
    for entry in entries:
        totals = entry.report.totals
        rows.append({
            "model": entry.name,
            "params": fmt_count(totals.params),
            "macs": fmt_count(totals.macs),
            "flops": fmt_count(totals.flops),
            "param_memory": f"{totals.param_bytes / KIB**2:,.3f}",
            "accuracy": "" if entry.accuracy is None else f"{entry.accuracy:g}",
        })
    return rows


def check_plot_path(path: Path) -> None:
    """Raise :class:`FlopcalcError` unless ``path`` ends in a format the plot can be written as."""
    if path.suffix.lower() not in PLOT_FORMATS:
        raise FlopcalcError(f"cannot plot to {path.name}: use a file ending in {', '.join(PLOT_FORMATS)}")


def plot_comparison(entries: Sequence[ComparisonEntry], path: Path) -> None:
    """Scatter params (x) against accuracy when every entry has one, otherwise against MACs; one labelled
    point per model, written to ``path`` (.png, .svg or .pdf).

    Raises:
        FlopcalcError: matplotlib is not installed, or ``path`` has another suffix.
    """
    check_plot_path(path)
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import NullFormatter
    except ImportError:
        raise FlopcalcError("--plot needs matplotlib: pip install 'flopcalc[plot]'") from None
    by_accuracy = all(entry.accuracy is not None for entry in entries)
    figure = Figure(figsize=(6, 4.5), layout="constrained")
    axes = figure.add_subplot()
    for entry in entries:
        x = entry.report.totals.params
        y = entry.accuracy if by_accuracy and entry.accuracy is not None else float(entry.report.totals.macs)
        axes.scatter([x], [y])
        axes.annotate(entry.name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    axes.set_xscale("log")
    axes.set_xlabel("parameters")
    if not by_accuracy:
        axes.set_yscale("log")
    for axis in (axes.xaxis, axes.yaxis):
        axis.set_minor_formatter(NullFormatter())  # log axes label minor ticks too, and they overlap
    axes.margins(0.15)  # room for the labels of the outermost points
    axes.set_ylabel("accuracy" if by_accuracy else "MACs (multiply-accumulates)")
    axes.grid(True, which="both", alpha=0.3)
    figure.savefig(path)
