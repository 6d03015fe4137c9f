"""The failure messages of :mod:`flopcalc.testing`: plain-text tables a test log can be fixed from.

Each message names the model and its input, then tabulates expected against got (or budget against got), and
for the counts that differ lists the layers that make them up: every formula row with its formula and the
formula with the call's numbers substituted, every measured row with where its count comes from.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import sympy as sp

from flopcalc.formula import LayerFormula, Number
from flopcalc.printing import render_substituted, to_text
from flopcalc.registry import Bound
from flopcalc.report import LayerRow, Report, Status

MAX_TABLE_ROWS = 40
"""A per-layer table lists at most this many layers (the largest, in forward order) and sums up the rest."""

MAX_DETAILS = 10
"""``assert_layers_match`` details at most this many formulas (the first failing layer of each)."""

_LABELS = {
    "params": "params", "trainable_params": "trainable params", "non_trainable_params": "non-trainable params",
    "macs": "MACs", "flops": "FLOPs",
}
_LAYER_FIELD = {"params": "params", "trainable_params": "params", "non_trainable_params": "params",
                "macs": "macs", "flops": "flops"}


def _fmt(value: Number) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _label(row: LayerRow) -> str:
    """The row's qualified module name; the model itself has the empty name."""
    return row.name or "(model)"


def _title(report: Report) -> str:
    shapes = ", ".join("x".join(map(str, shape)) for shape in report.input_shapes) or "no tensor inputs"
    return f"{report.model} on input {shapes}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int] = ()) -> list[str]:
    """Columns padded to their widest cell, two spaces apart; ``right`` are the right-aligned columns."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        return ("  " + "  ".join(padded)).rstrip()

    return [line(header), *(line(row) for row in rows)]


def _share(value: Number, total: Number) -> str:
    if isinstance(value, int) and isinstance(total, int) and total > 0:
        return f"{100 * value / total:.1f}%"
    return ""


def _formula_expr(formula: LayerFormula, field: str) -> sp.Expr:
    """``params``, ``macs``, an op kind, or ``flops`` (2·MACs plus every other op) of ``formula``."""
    if field == "flops":
        return 2 * formula.field_expr("macs") + sum((formula.field_expr(k) for k in formula.ops), sp.Integer(0))
    return formula.field_expr(field)


def _formula_cells(bound: Bound, field: str) -> tuple[str, str]:
    """The formula of ``field`` as text, and with the call's numbers substituted."""
    expr = _formula_expr(bound.formula, field)
    return to_text(expr), render_substituted(expr, bound.formula.resolve(bound.values))


@dataclass(frozen=True)
class _Part:
    """A share of the model's totals: a formula row (its whole subtree), a leaf, or a container's (self) row.

    ``bound`` is the formula behind the counts; without one, ``source`` says where the counts come from.
    """

    label: str
    type: str
    params: Number
    macs: Number
    flops: Number
    bound: Bound | None
    source: str

    def count(self, field: str) -> Number:
        return getattr(self, field)


def _parts(report: Report) -> list[_Part]:
    """The rows whose counts add up to the totals, in forward order; their sum is the model's total."""
    by_index = {row.index: row for row in report.rows}
    parts: list[_Part] = []

    def visit(row: LayerRow) -> None:
        if row.bound is not None or row.is_leaf:
            failed = row.bound is not None and row.analytic is None
            bound, source = (None, "measured, formula failed") if failed else (row.bound, "measured, no formula")
            parts.append(_Part(_label(row), row.type, row.params, row.macs, row.flops, bound, source))
            return
        for child in row.children:
            visit(by_index[child])
        own = row.own
        if own is not None:
            parts.append(_Part(own.name, own.type, own.params, own.macs, own.flops, None, "measured, no formula"))

    if report.rows:
        visit(report.rows[0])
    return parts


def _layer_table(report: Report, field: str) -> list[str]:
    """Per-layer table of ``field`` (params, macs or flops), with each formula and its substituted numbers."""
    total = getattr(report.totals, field)
    parts = [part for part in _parts(report) if part.count(field) != 0]
    largest = sorted(parts, key=lambda p: p.count(field) if isinstance(p.count(field), int) else 0, reverse=True)
    kept_ids = {id(p) for p in largest[:MAX_TABLE_ROWS]}
    rows = []
    for part in (p for p in parts if id(p) in kept_ids):
        formula, numbers = _formula_cells(part.bound, field) if part.bound else (part.source, "")
        value = part.count(field)
        rows.append([part.label, part.type, _fmt(value), _share(value, total), formula, numbers])
    hidden = [p for p in parts if id(p) not in kept_ids]
    if hidden:
        rest = sum(p.count(field) for p in hidden)
        rows.append([f"... {len(hidden)} smaller layers", "", _fmt(rest), _share(rest, total), "", ""])
    if field == "params":
        for name, count in report.uncalled.items():
            rows.append([name, "never called", _fmt(count), _share(count, total), "", ""])
    rows.append(["total", "", _fmt(total), "", "", ""])
    header = ["layer", "type", _LABELS[field], "share", "formula", "with numbers"]
    return [f"{_LABELS[field]} per layer:", *_table(header, rows, right={2, 3})]


def _listed(ops: Mapping[str, int]) -> str:
    """Op names with their call counts: ``aten.foo.default x3, ...``."""
    return ", ".join(f"{op} x{n}" for op, n in ops.items())


def _uncounted_note(report: Report) -> list[str]:
    if not report.uncounted:
        return []
    return [f"note: ops without a counting rule ran, so MACs and FLOPs are incomplete: {_listed(report.uncounted)}"]


LayerExpectation = tuple[LayerRow | None, str, str, int, Number | None]
"""(row, layer name, count, expected, got) of one per-layer expectation."""


def layer_expectations(report: Report, layers: Mapping[str, Mapping[str, int]]) -> list[LayerExpectation]:
    """(row, layer name, count, expected, got) for every per-layer expectation; row and got are None for a
    name no module call has."""
    found = []
    for name, counts in layers.items():
        row = next((r for r in report.rows if r.name == name), None)
        for key, value in counts.items():
            found.append((row, name, key, value, getattr(row, key) if row else None))
    return found


def _verdict(expected: int, got: Number | None) -> str:
    if got is None:
        return "no such layer"
    if got == expected:
        return "ok"
    difference = got - expected
    return f"{difference:+,}" if isinstance(difference, int) else str(difference)


def _per_layer_message(report: Report, layer_rows: Sequence[LayerExpectation]) -> list[str]:
    """Expected and got per layer, with the formula behind each count that differs."""
    rows = [[name, key, _fmt(value), "-" if got is None else _fmt(got), _verdict(value, got)]
            for _, name, key, value, got in layer_rows]
    lines = ["", "per layer:", *_table(["layer", "count", "expected", "got", "got - expected"], rows, right={2, 3})]
    for row, name, key, value, got in layer_rows:
        if row is not None and got != value and row.bound is not None and key != "other_ops":
            formula, numbers = _formula_cells(row.bound, key)
            lines.append(f"  {name} {key} = {formula} = {numbers}")
    if any(got is None for *_, got in layer_rows):
        names = ", ".join(row.name for row in report.rows if row.name)
        lines.append(f"  module calls in this model: {names}")
    return lines


def counts_message(
    report: Report,
    expected: dict[str, int],
    got: dict[str, Number],
    wrong: list[str],
    layer_rows: Sequence[LayerExpectation] = (),
) -> str:
    rows = []
    for key, value in expected.items():
        rows.append([_LABELS[key], _fmt(value), _fmt(got[key]), _verdict(value, got[key])])
    lines = [f"{_title(report)}: counts differ from the expected ones", ""]
    if rows:
        lines += _table(["count", "expected", "got", "got - expected"], rows, right={1, 2, 3})
    if layer_rows:
        lines += _per_layer_message(report, layer_rows)
    totals = report.totals
    if {"trainable_params", "non_trainable_params"} & set(wrong):
        float_buffers = totals.non_trainable_params - totals.frozen_params
        lines += [
            "",
            f"params {totals.params:,} = trainable {totals.trainable_params:,} + frozen (requires_grad=False) "
            f"{totals.frozen_params:,}",
            f"non-trainable {totals.non_trainable_params:,} = frozen {totals.frozen_params:,} + floating-point "
            f"buffers {float_buffers:,} (BatchNorm running mean and variance, as Keras counts them)",
        ]
    for field in dict.fromkeys(_LAYER_FIELD[key] for key in wrong):
        lines += ["", *_layer_table(report, field)]
    if report.mismatches:
        names = ", ".join(_label(row) for row in report.mismatches)
        lines += ["", f"note: layers whose formula disagrees with the measurement (see assert_layers_match): {names}"]
    lines += _uncounted_note(report)
    return "\n".join(lines)


def _own_uncounted(row: LayerRow, by_index: Mapping[int, LayerRow]) -> Counter[str]:
    own = Counter(row.uncounted)
    for child in row.children:
        own.subtract(by_index[child].uncounted)
    return +own


def layer_failures(report: Report, allow_measured_only: bool) -> list[tuple[LayerRow, str]]:
    """Failing rows in forward order, each with what is wrong in one line."""
    by_index = {row.index: row for row in report.rows}
    failures = []
    for row in report.rows:
        uncounted = _own_uncounted(row, by_index)
        if row.status is Status.MISMATCH:
            failures.append((row, "; ".join(row.mismatches)))
        elif row.status is Status.FORMULA_ONLY:
            listed = _listed(row.uncounted)
            failures.append((row, f"measurement incomplete, ops without a counting rule ran inside: {listed}"))
        elif uncounted:
            failures.append((row, f"ops without a counting rule: {_listed(uncounted)}"))
        elif not allow_measured_only and row.bound is None and (row.measured_self.macs or row.measured_self.ops):
            failures.append((row, f"no formula for {row.type}; its arithmetic is only measured"))
    return failures


def _details(row: LayerRow) -> list[str]:
    """The formula of a failing row, field by field, next to what was measured."""
    assert row.bound is not None and row.analytic is not None
    formula = row.bound.formula
    measured = row.measured
    lines = [f"{_label(row)} ({row.type}): formula {formula.name}, {formula.description}"]
    rows = []
    for field in ("params", "buffers"):
        if field == "params" or formula.buffers != 0:
            rows.append([field, *_formula_cells(row.bound, field), "-"])
    rows.append(["macs", *_formula_cells(row.bound, "macs"), _fmt(measured.macs)])
    for kind in dict.fromkeys([*formula.ops, *measured.ops]):
        cells = _formula_cells(row.bound, kind) if kind in formula.ops else ("(no term)", "0")
        rows.append([kind, *cells, _fmt(measured.ops.get(kind, 0))])
    if formula.output_shape:
        shape_text = "(" + ", ".join(to_text(d) for d in formula.output_shape) + ")"
        got = str(tuple(row.output_shapes[0])) if row.output_shapes else "-"
        rows.append(["output shape", shape_text, str(tuple(row.analytic.output_shape)), got])
    return [*lines, *_table(["count", "formula", "with numbers", "measured"], rows, right={3})]


def layers_message(report: Report, failures: list[tuple[LayerRow, str]]) -> str:
    shown = failures[:MAX_TABLE_ROWS]
    rows = [[_label(row), row.type, str(row.status), problem] for row, problem in shown]
    if len(failures) > len(shown):
        rows.append([f"... {len(failures) - len(shown)} more", "", "", ""])
    lines = [f"{_title(report)}: {len(failures)} layer(s) where formula and measurement disagree or counting is "
             "incomplete", ""]
    lines += _table(["layer", "type", "status", "problem"], rows)
    detailed: set[str] = set()
    for row, _ in failures:
        if row.bound is None or row.analytic is None or row.bound.formula.name in detailed:
            continue
        if len(detailed) == MAX_DETAILS:
            break
        detailed.add(row.bound.formula.name)
        lines += ["", *_details(row)]
    return "\n".join(lines)


def budget_message(
    report: Report, budget: dict[str, int], got: dict[str, Number], over: list[str], incomplete: bool
) -> str:
    rows = []
    for key, limit in budget.items():
        excess = got[key] - limit
        verdict = f"{excess:+,} ({excess / limit:+.1%})" if key in over else "within"
        rows.append([_LABELS[key], _fmt(limit), _fmt(got[key]), verdict])
    lines = [f"{_title(report)}: " + ("over budget" if over else "budget cannot be checked"), ""]
    lines += _table(["count", "budget", "got", "over by"], rows, right={1, 2})
    for key in over:
        lines += ["", *_layer_table(report, key)]
    if incomplete:
        lines += ["", f"MACs and FLOPs cannot be checked: ops without a counting rule ran "
                  f"({_listed(report.uncounted)}), so the totals are only a lower bound"]
    else:
        lines += _uncounted_note(report)
    return "\n".join(lines)
