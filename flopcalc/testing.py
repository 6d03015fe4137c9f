"""Assertions for a test suite: counts equal an expectation, every formula equals its measurement, a budget holds.

Each helper takes a model and its inputs, in any form :func:`flopcalc.analyze` takes (a shape with batch, a
list of shapes, example tensors, a dict of keyword arguments) plus ``analyze()``'s keyword options, or a
:class:`~flopcalc.report.Report` made earlier (e.g. by the pytest fixture ``flopcalc_analyze``). It returns the
report. A failure raises ``AssertionError`` whose message is a plain-text per-layer table: the expected and
the actual numbers, and for every layer with a formula the formula and the formula with its numbers
substituted, so that the model or the expectation can be fixed from the test log alone.

Counts are the report's: MACs and FLOPs of a layer with a formula are the formula's, other layers are measured
(see :data:`flopcalc.report.CONVENTION`). ``non_trainable_params`` is Keras' figure: frozen parameters plus
floating-point buffers such as BatchNorm's running statistics.

>>> from torch import nn
>>> report = assert_counts(nn.Conv2d(3, 64, 11, stride=4, padding=2), (1, 3, 224, 224), params=3 * 11 * 11 * 64 + 64)
>>> report.totals.macs == 64 * 55 * 55 * 3 * 11 * 11
True
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sympy as sp
from torch import nn

from flopcalc.analyze import analyze
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
LAYER_COUNTS = ("params", "macs", "other_ops", "flops")
"""The counts a per-layer expectation (``assert_counts(..., layers=...)``) may give."""
_LAYER_FIELD = {"params": "params", "trainable_params": "params", "non_trainable_params": "params",
                "macs": "macs", "flops": "flops"}


def assert_counts(
    model: nn.Module | Report,
    inputs: Any = None,
    *,
    params: int | None = None,
    macs: int | None = None,
    flops: int | None = None,
    trainable_params: int | None = None,
    non_trainable_params: int | None = None,
    layers: Mapping[str, Mapping[str, int]] | None = None,
    **options: Any,
) -> Report:
    """Assert the model's total counts, and per-layer counts: only the counts given are checked.

    ``layers`` maps a qualified module name to its expected counts, e.g. ``{"conv1": {"macs": 118_013_952}}``
    (keys: ``params``, ``macs``, ``other_ops``, ``flops``); a failure then lists expected and got per layer.

    Raises:
        AssertionError: a count differs; the message has expected, got and the per-layer breakdown.
        TypeError: no count to check was given, or a layer expectation names an unknown count.
    """
    __tracebackhide__ = True  # pytest shows the failure message, not the frames of this module
    expected = {
        key: value
        for key, value in {
            "params": params, "macs": macs, "flops": flops, "trainable_params": trainable_params,
            "non_trainable_params": non_trainable_params,
        }.items()
        if value is not None
    }
    if not expected and not layers:
        raise TypeError(
            "assert_counts needs one of params=, macs=, flops=, trainable_params=, non_trainable_params=, layers="
        )
    for name, counts in (layers or {}).items():
        if unknown := set(counts) - set(LAYER_COUNTS):
            raise TypeError(f"layers[{name!r}] has {sorted(unknown)}; a layer's counts are {', '.join(LAYER_COUNTS)}")
    report = _report(model, inputs, options)
    got = {key: getattr(report.totals, key) for key in expected}
    wrong = [key for key in expected if got[key] != expected[key]]
    layer_rows = _layer_expectations(report, layers or {})
    if wrong or any(exp != got_ for *_, exp, got_ in layer_rows):
        raise AssertionError(_counts_message(report, expected, got, wrong, layer_rows))
    return report


def assert_layers_match(
    model: nn.Module | Report, inputs: Any = None, *, allow_measured_only: bool = True, **options: Any
) -> Report:
    """Assert that every layer's formula equals what its forward pass executed, and that no op went uncounted.

    A layer fails when its formula and measurement differ in params, buffers, MACs, any op kind or output
    shape; when an op without a counting rule ran inside it; and, with ``allow_measured_only=False``, when it
    did arithmetic of its own without any formula (a module type flopcalc has no formula for).
    """
    __tracebackhide__ = True
    report = _report(model, inputs, options)
    failures = _layer_failures(report, allow_measured_only)
    if failures:
        raise AssertionError(_layers_message(report, failures))
    return report


def assert_within_budget(
    model: nn.Module | Report,
    inputs: Any = None,
    *,
    max_params: int | None = None,
    max_macs: int | None = None,
    max_flops: int | None = None,
    **options: Any,
) -> Report:
    """Assert the model's totals are at most the given budgets (each optional, at least one required).

    A MAC or FLOP budget also fails when ops without a counting rule ran, because the totals would then be a
    lower bound and could pass a model that is over budget.
    """
    __tracebackhide__ = True
    budget = {
        key: value
        for key, value in {"params": max_params, "macs": max_macs, "flops": max_flops}.items()
        if value is not None
    }
    if not budget:
        raise TypeError("assert_within_budget needs one of max_params=, max_macs=, max_flops=")
    report = _report(model, inputs, options)
    got = {key: getattr(report.totals, key) for key in budget}
    over = [key for key in budget if got[key] > budget[key]]
    incomplete = bool(report.uncounted) and bool({"macs", "flops"} & budget.keys())
    if over or incomplete:
        raise AssertionError(_budget_message(report, budget, got, over, incomplete))
    return report


def _report(model: nn.Module | Report, inputs: Any, options: Mapping[str, Any]) -> Report:
    if isinstance(model, Report):
        if inputs is not None or options:
            raise TypeError("pass either a Report, or a model with its inputs and analyze() options, not both")
        return model
    return analyze(model, inputs, **options)


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


def _layer_expectations(report: Report, layers: Mapping[str, Mapping[str, int]]) -> list[LayerExpectation]:
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


def _counts_message(
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


def _layer_failures(report: Report, allow_measured_only: bool) -> list[tuple[LayerRow, str]]:
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


def _layers_message(report: Report, failures: list[tuple[LayerRow, str]]) -> str:
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


def _budget_message(
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
