"""Several models side by side: the comparison table's cells and the scatter plot of any two of params, MACs,
FLOPs, parameter memory and accuracy.

matplotlib is an optional extra (``pip install 'flopcalc[plot]'``); it is imported only when a plot is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flopcalc.errors import FlopcalcError
from flopcalc.render.cells import Column, fmt_shapes
from flopcalc.render.units import KIB, fmt_count
from flopcalc.report import Report

PLOT_FORMATS = (".png", ".svg", ".pdf")


@dataclass(frozen=True)
class ComparisonEntry:
    """One model of a comparison: the name the user gave, its report, and the user's accuracy if known."""

    name: str
    report: Report
    accuracy: float | None = None


AXES = {
    "params": "parameters",
    "macs": "MACs (multiply-accumulates)",
    "flops": "FLOPs (2 × MACs + other ops)",
    "param_memory": "parameter memory (MB, 1 kB = 1024 B)",
    "accuracy": "accuracy",
}
"""What ``--x`` and ``--y`` may plot, with each axis label."""


def axis_value(entry: ComparisonEntry, axis: str) -> float:
    """The value ``axis`` (a key of :data:`AXES`) plots for ``entry``."""
    totals = entry.report.totals
    if axis == "accuracy":
        if entry.accuracy is None:
            raise FlopcalcError(f"no accuracy for {entry.name}; give it in --accuracy FILE or plot another axis")
        return entry.accuracy
    if axis == "param_memory":
        return totals.param_bytes / KIB**2
    return float(getattr(totals, axis))


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


def comparison_cells(entries: Sequence[ComparisonEntry], raw: bool = False) -> list[dict[str, str]]:
    """Formatted cells of each entry, keyed like :func:`comparison_columns`; ``raw``: counts without
    separators (CSV)."""
    count = str if raw else fmt_count
    rows = []
    for entry in entries:
        totals = entry.report.totals
        rows.append({
            "model": entry.name,
            "params": count(totals.params),
            "macs": count(totals.macs),
            "flops": count(totals.flops),
            "param_memory": f"{totals.param_bytes / KIB**2:{'' if raw else ','}.3f}",
            "accuracy": "" if entry.accuracy is None else f"{entry.accuracy:g}",
        })
    return rows


def comparison_title(entries: Sequence[ComparisonEntry]) -> str:
    """``Compared at input 1×3×224×224 (meta device); MACs = multiply-accumulates, FLOPs = 2 × MACs + other ops``."""
    first = entries[0].report if entries else None
    where = f" at input {fmt_shapes(first.input_shapes)} ({first.device} device)" if first else ""
    return f"Compared{where}; MACs = multiply-accumulates, FLOPs = 2 × MACs + other ops"


def check_plot_path(path: Path) -> None:
    """Raise :class:`FlopcalcError` unless ``path`` ends in a format the plot can be written as."""
    if path.suffix.lower() not in PLOT_FORMATS:
        raise FlopcalcError(f"cannot plot to {path.name}: use a file ending in {', '.join(PLOT_FORMATS)}")


def plot_comparison(entries: Sequence[ComparisonEntry], path: Path, x: str = "params", y: str | None = None) -> None:
    """Scatter ``x`` against ``y`` (keys of :data:`AXES`; ``y`` defaults to accuracy when every entry has one,
    otherwise MACs), one labelled point per model, written to ``path`` (.png, .svg or .pdf). Counts are on log
    axes, accuracy on a linear one.

    Raises:
        FlopcalcError: matplotlib is not installed, ``path`` has another suffix, or an axis is accuracy and a
            model has none.
    """
    check_plot_path(path)
    if y is None:
        y = "accuracy" if entries and all(entry.accuracy is not None for entry in entries) else "macs"
    points = [(entry.name, axis_value(entry, x), axis_value(entry, y)) for entry in entries]
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter
    except ImportError:
        raise FlopcalcError("--plot needs matplotlib: pip install 'flopcalc[plot]'") from None
    figure = Figure(figsize=(6, 4.5), layout="constrained")
    axes = figure.add_subplot()
    for name, x_value, y_value in points:
        axes.scatter([x_value], [y_value])
        axes.annotate(name, (x_value, y_value), textcoords="offset points", xytext=(4, 4), fontsize=8)
    for key, axis, set_scale in ((x, axes.xaxis, axes.set_xscale), (y, axes.yaxis, axes.set_yscale)):
        if key == "accuracy":
            continue
        set_scale("log")
        # 1, 2 and 5 × 10^k labelled as 2 M, 500 k, ...: a range under one decade still gets readable ticks
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(EngFormatter(sep=" "))
        axis.set_minor_formatter(NullFormatter())  # log axes label minor ticks too, and they overlap
    axes.margins(0.15)  # room for the labels of the outermost points
    axes.set_xlabel(AXES[x])
    axes.set_ylabel(AXES[y])
    axes.grid(True, which="both", alpha=0.3)
    figure.savefig(path)
