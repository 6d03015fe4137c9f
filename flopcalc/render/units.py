"""How measured quantities are written: exact counts with separators, bytes with their binary multiples, and
the floats of the roofline and timing views (durations, rates, ratios) with their units."""

from __future__ import annotations

from flopcalc.formula import Number

KIB = 1024
"""1 kB = 1024 B, as PyTorch and Keras summaries (and seed report 003) count parameter memory."""


def fmt_count(value: Number) -> str:
    """An exact count with thousands separators (``61,100,840``); a symbolic count as sympy prints it."""
    return f"{value:,}" if isinstance(value, int) else str(value)


def fmt_scaled(value: Number, unit: str) -> str:
    """A count with its unit, exact and then scaled for reading: ``714,188,480 MACs (714.19 M)``."""
    if not isinstance(value, int):
        return f"{value} {unit}"
    for factor, prefix in ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K")):
        if abs(value) >= factor:
            return f"{value:,} {unit} ({value / factor:.2f} {prefix})"
    return f"{value:,} {unit}"


def fmt_bytes(n: int) -> str:
    """Bytes, kB and MB with 1 kB = 1024 B: ``3,905,936 B = 3,814.391 kB = 3.725 MB``."""
    return f"{n:,} B = {n / KIB:,.3f} kB = {n / KIB**2:,.3f} MB"


class Seconds(float):
    """A duration, shown with its unit and 4 significant digits (``10.02 µs``)."""


class Ratio(float):
    """A ratio such as FLOPs per byte, shown with 2 decimals."""


class Rate(float):
    """FLOP/s, shown scaled with 4 significant digits (``1.234 T``)."""


def fmt_rate(value: float, unit: str = "") -> str:
    """A rate with an SI prefix and 4 significant digits: ``fmt_rate(1.234e12, "FLOP/s")`` is ``1.234 TFLOP/s``."""
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if value >= factor:
            return f"{value / factor:.4g} {prefix}{unit}"
    return f"{value:.4g} {unit}".rstrip()


def fmt_seconds(value: float) -> str:
    """A duration in s, ms, µs or ns with 4 significant digits: ``10.02 µs``."""
    for factor, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if value >= factor:
            return f"{value / factor:.4g} {unit}"
    return f"{value / 1e-9:.4g} ns"




def format_measure(value: object, raw: bool) -> str | None:
    """A :class:`Seconds`, :class:`Rate` or :class:`Ratio` as text (``raw``: the float as Python writes it, for
    CSV); ``None`` for anything else."""
    if isinstance(value, Seconds):
        return repr(float(value)) if raw else fmt_seconds(value)
    if isinstance(value, Rate):
        return repr(float(value)) if raw else fmt_rate(value)
    if isinstance(value, Ratio):
        return repr(float(value)) if raw else f"{value:,.2f}"
    return None
