"""Each report row's backward: the formula's grad-input and grad-weight, checked against what the row's call
and its children executed in the backward pass (:class:`flopcalc.backward.BackwardTracer`), or the measurement
alone where the family has no backward formula; and the ``(self)`` row's part of it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from flopcalc.backward import BackwardTracer
from flopcalc.formula import GRADIENT_PARTS
from flopcalc.measure import Count
from flopcalc.measure.core import ZERO
from flopcalc.report import LayerBackward, LayerRow, Status


def _split(row_backward: list[LayerBackward | None], children: tuple[int, ...]) -> tuple[Count, Count] | None:
    parts = [row_backward[c] for c in children]
    if any(part is None or part.grad_input is None or part.grad_weight is None for part in parts):
        return None
    grad_input = sum((part.grad_input for part in parts if part and part.grad_input), ZERO)
    grad_weight = sum((part.grad_weight for part in parts if part and part.grad_weight), ZERO)
    return grad_input, grad_weight


def backward_rows(tracer: BackwardTracer, rows: tuple[LayerRow, ...]) -> list[LayerBackward]:
    """Each row's backward: the formula's grad-input and grad-weight where the family has a backward formula,
    checked against the measured backward of the call and its children; otherwise the measurement."""
    result: list[LayerBackward | None] = [None] * len(rows)
    for row in reversed(rows):
        own = tracer.backward[row.index]
        measured, recompute, uncounted = own.count, own.recompute, Counter(own.uncounted)
        for child in row.children:
            done = result[child]
            assert done is not None
            measured, recompute = measured + done.measured, recompute + done.recompute
            uncounted.update(done.uncounted)
        formula = row.bound.formula if row.bound else None
        mismatches: tuple[str, ...] = ()
        if formula is not None and formula.has_backward:
            values = {**row.bound.values, **own.flags}
            try:
                grad_input, grad_weight = (_evaluate(formula.gradient(part), values) for part in GRADIENT_PARTS)
            except Exception as exc:  # reported as a mismatch, never fatal (as for the forward formula)
                grad_input = grad_weight = None
                mismatches = (f"backward formula could not be evaluated: {type(exc).__name__}: {exc}",)
            if mismatches:
                status = Status.MISMATCH
            elif uncounted:
                status = Status.FORMULA_ONLY
            else:
                mismatches = _compare(grad_input + grad_weight, measured)
                status = Status.MISMATCH if mismatches else Status.MATCH
        else:
            split = _split(result, row.children) if row.children else None
            if split is not None:
                # Work of a container's own (the engine summing the gradients of a tensor it uses twice)
                # is gradient propagation towards its input.
                grad_input, grad_weight = split[0] + own.count, split[1]
            else:
                grad_input = grad_weight = None
            children = [result[c] for c in row.children]
            pure = not own.count.macs and not own.count.ops and not own.uncounted
            matched = row.children and pure and all(c and c.status is Status.MATCH for c in children)
            status = Status.MATCH if matched else Status.MEASURED_ONLY
        result[row.index] = LayerBackward(
            grad_input=grad_input, grad_weight=grad_weight, measured=measured, recompute=recompute, status=status,
            mismatches=mismatches, flags=dict(own.flags), uncounted=dict(uncounted),
        )
    return [r for r in result if r is not None]


def own_backward(tracer: BackwardTracer, row: LayerRow, children: list[LayerBackward]) -> LayerBackward:
    """The backward work of ``row``'s ``(self)`` row: what its own nodes executed outside its children's (the
    gradient of a residual add, the engine summing the gradients of a tensor the call uses twice). Its
    grad-input/grad-weight split is the row's minus its children's where all of them have one. A row with a
    backward formula is checked as a whole, so its part shares its status; otherwise the part is measured."""
    whole, own = row.backward, tracer.backward[row.index]
    assert whole is not None
    grad_input = grad_weight = None
    parts = [whole, *children]
    if all(p.grad_input is not None and p.grad_weight is not None for p in parts):
        grad_input = _minus(whole.grad_input, [c.grad_input for c in children])  # type: ignore[arg-type]
        grad_weight = _minus(whole.grad_weight, [c.grad_weight for c in children])  # type: ignore[arg-type]
    checked = row.bound is not None and row.bound.formula.has_backward
    return LayerBackward(
        grad_input=grad_input, grad_weight=grad_weight, measured=own.count, recompute=own.recompute,
        status=whole.status if checked else Status.MEASURED_ONLY, uncounted=dict(own.uncounted),
    )


def _minus(whole: Count, parts: list[Count]) -> Count:
    taken = sum(parts, ZERO)
    ops = {kind: whole.ops.get(kind, 0) - taken.ops.get(kind, 0) for kind in {**whole.ops, **taken.ops}}
    return Count(whole.macs - taken.macs, {kind: n for kind, n in ops.items() if n})


def _evaluate(formula: Any, values: Mapping[str, Any]) -> Count:
    evaluation = formula.evaluate(values)
    return Count(evaluation.macs, dict(evaluation.ops))


def _compare(formula: Count, measured: Count) -> tuple[str, ...]:
    checks = [("backward macs", formula.macs, measured.macs), ("backward ops", dict(formula.ops), dict(measured.ops))]
    return tuple(f"{what}: formula {a}, measured {b}" for what, a, b in checks if a != b)
