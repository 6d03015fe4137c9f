"""``--plot roofline.png``: every layer of a roofline report on its device's roofline (matplotlib extra)."""

from __future__ import annotations

from pathlib import Path

from flopcalc.errors import FlopcalcError, InputError
from flopcalc.render.compare import check_plot_path
from flopcalc.report import Report


def plot_roofline(report: Report, path: Path) -> None:
    """Layers without children at (FLOPs per byte, attained FLOP/s), under ``min(peak, intensity × bandwidth)``.

    Raises:
        InputError: the report has no roofline (``analyze(..., hardware=...)``).
        FlopcalcError: matplotlib is not installed, or ``path`` is not .png/.svg.
    """
    roofline = report.totals.roofline
    if roofline is None:
        raise InputError("--plot needs --hardware: the roofline of a device")
    check_plot_path(path)
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise FlopcalcError("--plot needs matplotlib: pip install 'flopcalc[plot]'") from None
    points = [(row, row.roofline) for row in report.leaves if row.roofline and row.roofline.intensity and row.roofline.time_s]
    peak, bandwidth = roofline.peak, roofline.hardware.bandwidth
    intensities = [r.intensity for _, r in points] or [1.0]
    low, high = min(min(intensities), peak / bandwidth) / 4, max(max(intensities), peak / bandwidth) * 4
    figure = Figure(figsize=(7, 5))
    axes = figure.subplots()
    ridge = peak / bandwidth
    axes.plot([low, ridge, high], [low * bandwidth, peak, peak], color="black", linewidth=1.5,
              label=f"{roofline.hardware.name} ({roofline.dtype})")
    for kind, colour in (("compute", "tab:red"), ("memory", "tab:blue")):
        chosen = [r for _, r in points if r.bound == kind]
        axes.scatter([r.intensity for r in chosen], [r.attained_flops_per_s for r in chosen], s=14, color=colour,
                     label=f"{kind}-bound layers ({len(chosen)})")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("arithmetic intensity (FLOPs per byte moved)")
    axes.set_ylabel("roofline FLOP/s")
    axes.set_title(f"{report.model}: {len(points)} layers")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path)
