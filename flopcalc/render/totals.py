"""The blocks under every layer table: the totals (params, MACs, other ops, FLOPs, in the named sizes for a
closed form, with where it holds) and the notes (convention, uncounted ops, mismatches, unchecked rows).

Every renderer takes these (label, value) lines from here, as it takes its cells from :mod:`cells`.
"""

from __future__ import annotations

from collections.abc import Mapping

from flopcalc.formula import Number
from flopcalc.render import closed_forms, coverage, training
from flopcalc.render.cells import Latex, count_style, display_name, size_names
from flopcalc.render.units import fmt_bytes, fmt_count, fmt_scaled
from flopcalc.report import Report
from flopcalc.sizes import SizeNames

LISTED = 5
"""How many never-called modules the notes name before summarising the rest."""


def _by_kind(ops: Mapping[str, Number]) -> str:
    return ", ".join(f"{kind} {fmt_count(n)}" for kind, n in sorted(ops.items()))


def totals_items(report: Report, latex: bool = False) -> list[tuple[str, str]]:
    """The totals block as (label, value) lines; every count names its unit (params, MACs, FLOPs, bytes).

    For a closed form the counts are written in the named sizes, listed first (``Where``); with ``latex``
    those values are :class:`Latex`."""
    t = report.totals
    dtypes = sorted(t.param_bytes_by_dtype.items())
    by_dtype = dtypes[0][0] if len(dtypes) == 1 else ", ".join(f"{dtype} {n:,} B" for dtype, n in dtypes)
    items = [
        ("Total params", fmt_count(t.params)),
        ("Trainable params", fmt_count(t.trainable_params)),
        (
            "Non-trainable params",
            f"{t.non_trainable_params:,} (Keras: frozen params {t.frozen_params:,} "
            f"+ floating-point buffer elements {t.non_trainable_params - t.frozen_params:,}; "
            "torchinfo counts the frozen params only)",
        ),
        ("Keras total params", f"{t.keras_total_params:,} (trainable + non-trainable)"),
        ("Buffers", f"{t.buffers:,} elements, {t.buffer_bytes:,} B"),
        ("Parameter memory", fmt_bytes(t.param_bytes) + f" ({by_dtype + '; ' if by_dtype else ''}1 kB = 1024 B)"),
    ]
    names = size_names(report)
    if names is None:
        return items + [
            ("MACs", fmt_scaled(t.macs, "MACs")),
            ("Other ops", fmt_count(t.other_ops) + (f" ({_by_kind(t.ops)})" if t.ops else "")),
            ("FLOPs", fmt_scaled(t.flops, "FLOPs") + " = 2 × MACs + other ops"),
            ("Measured", f"{fmt_count(t.measured_macs)} MACs, {fmt_count(t.measured_flops)} FLOPs (aten ops executed)"),
        ] + _checked_items(report) + training.items(report)
    where = _where_items(names, latex)
    return where + items + _closed_form_counts(report, names, latex) + _checked_items(report) + closed_form_items(report)


def _checked_items(report: Report) -> list[tuple[str, str]]:
    return [("Checked", coverage.checked_text(report))] if report.totals.checked is not None else []


def _where_items(names: SizeNames, latex: bool) -> list[tuple[str, str]]:
    definitions = closed_forms.definitions(names, count_style(False, latex))
    if not definitions:
        return []
    return [("Where", Latex(", ".join(f"${d}$" for d in definitions)) if latex else ", ".join(definitions))]


def _closed_form_counts(report: Report, names: SizeNames, latex: bool) -> list[tuple[str, str]]:
    """MACs, other ops and FLOPs in the named sizes, their leading terms, and whether the measurement agrees
    (it does when both are the same expression in normal form, which holds at every size)."""
    t = report.totals
    style = count_style(False, latex)

    def count(value: Number) -> str:
        text = closed_forms.format_count(value, names, style)
        return f"${text}$" if latex else text

    def line(text: str) -> str:
        return Latex(text) if latex else text

    times = "$\\times$" if latex else "×"
    by_kind = ", ".join(f"{kind} {count(n)}" for kind, n in sorted(t.ops.items()))
    items = [
        ("MACs", line(f"{count(t.macs)} MACs")),
        ("Other ops", line(count(t.other_ops) + (f" ({by_kind})" if by_kind else ""))),
        ("FLOPs", line(f"{count(t.flops)} FLOPs = 2 {times} MACs + other ops")),
    ]
    leading = {unit: closed_forms.leading(value, names, style) for unit, value in (("MACs", t.macs), ("FLOPs", t.flops))}
    if all(leading.values()):
        approx = "\\approx" if latex else "≈"
        terms = ", ".join(f"{unit} ${approx} {text}$" if latex else f"{unit} {approx} {text}" for unit, text in leading.items())
        symbols = ", ".join(symbol.name for symbol in names.user_symbols)
        items.append(("Large sizes", line(f"{terms} (leading terms as {symbols} grow: roundings dropped, "
                                          "coefficients exact)")))
    equal, tested = closed_forms.agreement(report, names)
    if equal:
        where = f"at all {tested:,} sizes tested where it holds" if tested else "at every size"
        items.append(("Measured", f"equal to the formula {where} (MACs and FLOPs of the aten ops executed)"))
    else:
        items.append(("Measured", line(f"{count(t.measured_macs)} MACs, {count(t.measured_flops)} FLOPs "
                                       "(aten ops executed; written as the formula is)")))
    return items


def closed_form_items(report: Report) -> list[tuple[str, str]]:
    """For a symbolic report: where its closed forms hold, and the sizes torch assumed while tracing."""
    closed_form = report.closed_form
    if closed_form is None:
        return []
    bounds = ", ".join(closed_form.describe_conditions()) or "every size"
    hints = ", ".join(f"{name}={value}" for name, value in closed_form.hints.items())
    return [
        ("Valid for", f"{bounds} (from torch's shape guards; {len(closed_form.conditions)} conditions checked "
                      "by evaluate)"),
        ("Traced at", f"{hints} (hints: where the model branches on a size, it took the branch for these)"),
    ]


def notes(report: Report) -> list[tuple[str, str]]:
    """What a reader must know besides the numbers: the convention, gaps and disagreements."""
    found = [("Convention", report.convention)]
    if report.uncounted:
        listed = ", ".join(f"{op} ×{n}" for op, n in sorted(report.uncounted.items()))
        found.append(("Uncounted ops", f"{listed} (no counting rule; the counts above are lower bounds)"))
    else:
        found.append(("Uncounted ops", "none"))
    for row in report.mismatches:
        found.append(("Mismatch", f"{display_name(report, row)} ({row.type}): {'; '.join(row.mismatches)}"))
    if report.unchecked:
        found.append(("Unchecked", coverage.unchecked_text(report, LISTED)))
    found += training.notes(report)
    if report.uncalled:
        uncalled = sorted(report.uncalled.items())
        listed = ", ".join(f"{name} ({n:,} params)" for name, n in uncalled[:LISTED])
        more = f" and {len(uncalled) - LISTED} more" if len(uncalled) > LISTED else ""
        found.append(("Never called", f"{listed}{more}: the forward pass did not call these modules; "
                      "their parameters are in the params totals"))
    return found
