"""The coverage figure in words: how much of a report's counts a formula that matches its measurement stands
behind, and where the rest is. :mod:`flopcalc.render.cells` puts these lines into every format's totals and
notes."""

from __future__ import annotations

import math

import sympy as sp

from flopcalc.formula import Number
from flopcalc.report import Report


def fmt_share(share: float | None) -> str:
    """A share as a percentage that never rounds up to 100% (``99.9%`` for 0.99996), ``n/a`` for ``None``."""
    if share is None:
        return "n/a"
    return "100%" if share == 1 else f"{math.floor(share * 1000) / 10:.1f}%"


def checked_text(report: Report) -> str:
    """How much of the totals a matching formula stands behind: ``1,814,073,344 of 1,814,073,344 MACs (100%),
    ...``; for a closed form, the shares at the sizes it was traced at."""
    t = report.totals
    assert t.checked is not None
    macs, ops = fmt_share(t.checked.macs_share), fmt_share(t.checked.ops_share)
    if report.closed_form is not None:
        at = ", ".join(f"{name}={value}" for name, value in report.closed_form.hints.items())
        return f"{macs} of MACs, {ops} of other ops (at {at}) by a formula that matches the measurement"
    return (
        f"{t.checked.macs:,} of {t.macs:,} MACs ({macs}), {t.checked.other_ops:,} of {t.other_ops:,} other ops "
        f"({ops}) by a formula that matches the measurement"
    )


def unchecked_text(report: Report, listed: int) -> str:
    """The ``listed`` largest pieces of work no matching formula stands behind, e.g. ``layer1.0 (self)
    (BasicBlock.forward) 200,704 other ops: own work outside its children``."""
    hints = report.closed_form.hints if report.closed_form is not None else {}
    point = {sp.Symbol(name, integer=True, positive=True): value for name, value in hints.items()}

    def at_hints(n: Number) -> int:
        """A closed form's amount at the traced sizes (said once, after the list)."""
        return n if isinstance(n, int) else int(sp.sympify(n).subs(point))

    def amount(macs: Number, other_ops: Number) -> str:
        macs, other_ops = at_hints(macs), at_hints(other_ops)
        parts = [f"{macs:,} MACs" if macs else "", f"{other_ops:,} other ops" if other_ops else ""]
        return " + ".join(p for p in parts if p) or "0 MACs"

    named = "; ".join(
        f"{u.name or report.model} ({u.type}) {amount(u.macs, u.other_ops)}: {u.reason}"
        for u in report.unchecked[:listed]
    )
    more = f"; and {len(report.unchecked) - listed} more" if len(report.unchecked) > listed else ""
    at = f" (at {', '.join(f'{k}={v}' for k, v in hints.items())})" if hints else ""
    return named + more + at
