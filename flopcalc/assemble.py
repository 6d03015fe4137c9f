"""Building the :class:`~flopcalc.report.Report` from a traced pass: each call's formula evaluated and compared
with its measurement, containers summed from their children, and the whole-model totals."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import sympy as sp
from torch import nn

from flopcalc.backward import BackwardTracer
from flopcalc.backward_rows import backward_rows, own_backward
from flopcalc.formula import Evaluation, Number
from flopcalc.inputs import ModelInputs
from flopcalc.measure import Count
from flopcalc.measure.core import ZERO
from flopcalc.memory import training_state
from flopcalc.report import Checked, LayerRow, MemoryTotals, Report, Status, Totals, Unchecked
from flopcalc.symbolic import ClosedForm, user_symbol
from flopcalc.trace import Call, Tracer
from flopcalc.weights import buffers, buffers_of, named_modules, weights, weights_of

def _normalized(ops: Mapping[str, Number]) -> dict[str, Number]:
    return {str(k): v for k, v in ops.items() if v != 0}


def _compare(call: Call, evaluation: Evaluation, measured: Count, at: Mapping[str, int]) -> tuple[str, ...]:
    """Every field where the formula and the measurement disagree, as 'field: formula X, measured Y'.

    Symbolic counts are compared at the hints ``at``: the two sides may write the same integer division
    differently, and both are exact there.
    """
    module = call.module
    checks: list[tuple[str, Any, Any]] = []
    if call.function is None:  # a functional call's parameters are its arguments, read by its binder
        checks += [
            ("params", evaluation.params, sum(w.tensor.numel() for w in weights(module))),
            ("buffers", evaluation.buffers, sum(b.numel() for b in buffers(module))),
        ]
    checks += [("macs", evaluation.macs, measured.macs), ("ops", _normalized(evaluation.ops), _normalized(measured.ops))]
    if evaluation.output_shape and call.output_shapes:
        checks.append(("output_shape", tuple(evaluation.output_shape), tuple(call.output_shapes[0])))
    if not at:  # concrete counts compare as they are
        return tuple(f"{what}: formula {a}, measured {b}" for what, a, b in checks if a != b)
    point = tuple(at.items())

    def concrete(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: concrete(v) for k, v in value.items()}
        if isinstance(value, tuple):
            return tuple(concrete(v) for v in value)
        return _value_at(value, point) if isinstance(value, sp.Basic) else value

    return tuple(
        f"{what}: formula {a}, measured {b}" for what, a, b in checks if concrete(a) != concrete(b)
    )


@functools.lru_cache(maxsize=4096)
def _value_at(value: sp.Basic, point: tuple[tuple[str, int], ...]) -> Any:
    """A symbolic count at the hints (the same counts recur in every layer of a stage)."""
    return sp.sympify(value.xreplace({user_symbol(name): size for name, size in point})).doit()


OWN_SUFFIX = " (self)"
"""Appended to a module's name for the row of the work its own forward does outside its child modules."""


def _difference(whole: Number, parts: list[Number]) -> Number:
    rest = whole - sum(parts, start=0)
    return sp.expand(rest) if isinstance(rest, sp.Basic) else rest


def _own_row(row: LayerRow, own: Count, children: list[LayerRow], at: Mapping[str, int]) -> LayerRow | None:
    """The part of ``row`` that none of its child calls accounts for, or None when that is nothing.

    A row without a formula is its own measured ops plus its children, so its part is exactly those ops, and
    no formula checks them. A formula row is checked as a whole; its part is the formula's count minus its
    children's (the rescale of a squeeze-and-excitation block), and it shares the row's status and check.
    """
    if not children:
        return None
    params = row.params - sum(child.params for child in children)
    if row.analytic is None:
        macs, ops = own.macs, dict(own.ops)
        status = Status.MEASURED_ONLY
    else:
        macs = _difference(row.macs, [child.macs for child in children])
        kinds = dict.fromkeys([*row.ops, *(kind for child in children for kind in child.ops)])
        ops = {kind: _difference(row.ops.get(kind, 0), [c.ops.get(kind, 0) for c in children]) for kind in kinds}
        status = row.status
    uncounted = Counter(row.uncounted)
    for child in children:
        uncounted.subtract(child.uncounted)
    ops = _normalized(ops)
    if not (params or macs or ops or +uncounted):
        return None
    other_ops = sum(ops.values(), 0)
    checked = _checked_of(0, 0, macs, other_ops, at)
    if row.analytic is not None and row.status is Status.MATCH and row.checked is not None:
        # all of it, less any work the root did outside every module call (not the formula's)
        checked = _checked_of(
            _difference(macs, [row.macs, -row.checked.macs]),
            _difference(other_ops, [row.other_ops, -row.checked.other_ops]), macs, other_ops, at,
        )
    return LayerRow(
        index=row.index, name=(row.name + OWN_SUFFIX).strip(), type=f"{row.type}.forward", depth=row.depth + 1,
        parent=row.index, children=(), input_shapes=(), output_shapes=(), params=params, macs=macs, ops=ops,
        measured=own, measured_self=own, status=status, uncounted=dict(+uncounted), checked=checked, is_own=True,
    )


def _has_empty_input(call: Call) -> bool:
    """A call whose first input has no elements (batch 0, an empty dimension) does no work, as the operator
    count says too; a formula's reduction terms would give ``n − 1 = −1`` there."""
    return bool(call.input_shapes) and any(type(d) is int and d == 0 for d in call.input_shapes[0])


def _container_status(call: Call, children: list[LayerRow | None]) -> Status:
    """A module without a formula matches when it is a pure container: no work of its own, and every child
    call matches, so its count is the sum of checked formulas. Otherwise part of its count is measured only."""
    pure = not call.self_count.macs and not call.self_count.ops and not call.uncounted
    if children and pure and all(child and child.status is Status.MATCH for child in children):
        return Status.MATCH
    return Status.MEASURED_ONLY


def _share(part: Number, whole: Number, at: Mapping[str, int]) -> float | None:
    """``part / whole`` as a float (at the hints ``at`` for closed forms); ``None`` when ``whole`` is 0."""
    if part == whole:
        return None if whole == 0 else 1.0
    if not isinstance(whole, int) or not isinstance(part, int):
        point = {user_symbol(name): value for name, value in at.items()}
        part, whole = (int(sp.sympify(n).xreplace(point)) for n in (part, whole))
    return part / whole if whole else None


def _checked(analytic: Evaluation | None, status: Status, children: list[LayerRow], macs: Number,
             ops: Mapping[str, Number], at: Mapping[str, int]) -> Checked:
    """How much of a row's count (``macs``, ``ops``) a matching formula stands behind: a formula row's formula
    count when it matches, nothing when it does not; a row without a formula as much as its children."""
    if analytic is not None:
        formula = Count(analytic.macs, analytic.ops) if status is Status.MATCH else ZERO
        checked_macs, checked_ops = formula.macs, formula.other_ops
    else:
        checked_macs = sum((child.checked.macs for child in children if child.checked), 0)
        checked_ops = sum((child.checked.other_ops for child in children if child.checked), 0)
    return _checked_of(checked_macs, checked_ops, macs, sum(ops.values(), 0), at)


def _checked_of(checked_macs: Number, checked_ops: Number, macs: Number, other_ops: Number,
                at: Mapping[str, int]) -> Checked:
    return Checked(checked_macs, checked_ops, _share(checked_macs, macs, at), _share(checked_ops, other_ops, at))


def _unchecked(rows: tuple[LayerRow, ...], row: LayerRow) -> Iterator[Unchecked]:
    """Where the unchecked work of ``row``'s subtree is: rows whose formula does not match, and the ``(self)``
    work of rows without a formula (named as their ``(self)`` row)."""
    if row.analytic is not None:
        assert row.checked is not None
        macs = _difference(row.macs, [row.checked.macs])
        other_ops = _difference(row.other_ops, [row.checked.other_ops])
        if macs != 0 or other_ops != 0:
            if row.status is Status.MATCH:  # the root's work outside every module call
                reason = "work outside every module call"
            else:
                reason = "formula disagrees" if row.status is Status.MISMATCH else "uncounted ops inside"
            yield Unchecked(row.name, row.type, macs, other_ops, reason)
        return
    own = row.own
    if own is not None and (own.macs != 0 or own.other_ops != 0):
        reason = "no formula binds" if row.mismatches else "own work outside its children"
        yield Unchecked(own.name, own.type, own.macs, own.other_ops, reason)
    for child in row.children:
        yield from _unchecked(rows, rows[child])


def _size_at(at: Mapping[str, int]) -> Callable[[Unchecked], tuple[int, int]]:
    point = {user_symbol(name): value for name, value in at.items()}

    def size(entry: Unchecked) -> tuple[int, int]:
        return tuple(int(sp.sympify(n).xreplace(point)) for n in (entry.macs, entry.other_ops))  # type: ignore[return-value]

    return size


def build_report(
    model: nn.Module, inputs: ModelInputs, tracer: Tracer, device: str, name: str, optimizer: str | None = None
) -> Report:
    calls = tracer.calls
    hints = tracer.symbolic.hints if tracer.symbolic else {}
    rows: list[LayerRow | None] = [None] * len(calls)
    for index in reversed(range(len(calls))):  # children are always after their parent
        call = calls[index]
        children = [rows[c] for c in call.children]
        measured = call.self_count
        uncounted = Counter(call.uncounted)
        for child in children:
            assert child is not None
            measured = measured + child.measured
            if child.uncounted:
                uncounted.update(child.uncounted)
        params = call.params + sum(child.params for child in children if child)
        analytic = None
        mismatches: tuple[str, ...] = ()
        if call.bound is not None:
            try:
                analytic = call.bound.evaluate()
            except Exception as exc:  # a formula that cannot be evaluated is a reported mismatch, never fatal
                mismatches = (f"formula could not be evaluated: {type(exc).__name__}: {exc}",)
        if analytic is not None and _has_empty_input(call):
            analytic = replace(analytic, macs=0, ops={})
        if analytic is not None:
            macs, ops = analytic.macs, dict(analytic.ops)
            if uncounted:
                status = Status.FORMULA_ONLY
            else:
                mismatches = _compare(call, analytic, measured, hints)
                status = Status.MISMATCH if mismatches else Status.MATCH
        else:
            if call.binding_error:
                mismatches = (f"formula could not bind: {call.binding_error}",)
            total = call.self_count
            for child in children:
                assert child is not None
                total = total + Count(child.macs, child.ops)
            macs, ops = total.macs, dict(total.ops)
            status = Status.MISMATCH if mismatches else _container_status(call, children)
        measured_self = call.self_count
        if index == 0:  # work done outside every module call (root pre-hooks, global hooks) is the root's
            outside = tracer.outside
            total = Count(macs, ops) + outside.count
            macs, ops = total.macs, dict(total.ops)
            measured, measured_self = measured + outside.count, measured_self + outside.count
            uncounted.update(outside.uncounted)
        present = [child for child in children if child is not None]
        normalized = _normalized(ops)
        checked = _checked(analytic, status, present, macs, normalized, hints)
        row = LayerRow(
            index=index, name=call.name, type=call.function or type(call.module).__name__, depth=call.depth,
            parent=call.parent, children=tuple(call.children), input_shapes=call.input_shapes,
            output_shapes=call.output_shapes, params=params, macs=macs, ops=normalized, measured=measured,
            measured_self=measured_self, status=status, bound=call.bound, analytic=analytic, mismatches=mismatches,
            uncounted=dict(uncounted), facts=call.facts, op_tallies=call.op_tallies, checked=checked,
            function=call.function,
            output_bytes=call.output_bytes,
        )
        # The row is not handed out yet: its own part is set on it rather than built into a second copy.
        object.__setattr__(row, "own", _own_row(row, measured_self, present, hints))
        rows[index] = row
    final_rows = tuple(row for row in rows if row is not None)
    if isinstance(tracer, BackwardTracer):
        final_rows = _with_backward(tracer, final_rows)
    root = final_rows[0] if final_rows else None
    # Modules whose parameters no call owns: never called, and not used by a formula row's forward either.
    modules = list(named_modules(model))  # as the pass leaves them: a forward may have added some
    uncalled = {
        module_name: unowned for module_name, module in modules if (unowned := _unclaimed(module, tracer.claimed))
    }
    totals = _totals([module for _, module in modules], root, _memory(model, tracer, optimizer))
    unchecked = tuple(sorted(_unchecked(final_rows, root), key=_size_at(hints), reverse=True)) if root else ()
    closed_form = None
    if tracer.symbolic is not None:
        expressions = {"macs": totals.macs, "flops": totals.flops, **{f"ops.{k}": v for k, v in totals.ops.items()}}
        expressions["measured_macs"] = totals.measured_macs
        closed_form = ClosedForm(
            {k: sp.sympify(v) for k, v in expressions.items()}, tracer.symbolic.conditions(), dict(hints)
        )
    return Report(
        model=name,
        input_shapes=inputs.shapes,
        input_labels=inputs.labels,
        device=device,
        rows=final_rows,
        totals=totals,
        uncounted=dict(root.uncounted) if root else {},
        uncalled=uncalled,
        closed_form=closed_form,
        unchecked=unchecked,
    )


def _unclaimed(module: nn.Module, claimed: set[Any]) -> int:
    """Elements of ``module``'s own weights that no call claimed (most modules hold none: no walk for them)."""
    attributes = vars(module)
    if not module._parameters and "_packed_params" not in attributes and "_packed_weight" not in attributes:
        return 0
    return sum(w.tensor.numel() for w in weights(module, recurse=False) if w.key not in claimed)


def _with_backward(tracer: BackwardTracer, rows: tuple[LayerRow, ...]) -> tuple[LayerRow, ...]:
    """``rows`` with their backward pass, each ``(self)`` row with its call's own backward work; a call whose
    backward does work of its own but whose forward did none gets a ``(self)`` row for it, so that the
    backward columns add up too."""
    with_backward = tuple(replace(row, backward=b) for row, b in zip(rows, backward_rows(tracer, rows), strict=True))
    out = []
    for row in with_backward:
        if not row.children:
            out.append(row)
            continue
        own_b = own_backward(tracer, row, [with_backward[c].backward for c in row.children])  # type: ignore[misc]
        own = row.own
        if own is None and (own_b.macs or own_b.ops or own_b.recompute.macs or own_b.recompute.ops or own_b.uncounted):
            own = _backward_self_row(row)
        out.append(replace(row, own=own and replace(own, backward=own_b)))
    return tuple(out)


def _backward_self_row(row: LayerRow) -> LayerRow:
    """The ``(self)`` row of a call whose forward did no work of its own but whose backward pass did."""
    return LayerRow(
        index=row.index, name=(row.name + OWN_SUFFIX).strip(), type=f"{row.type}.forward", depth=row.depth + 1,
        parent=row.index, children=(), input_shapes=(), output_shapes=(), params=0, macs=0, ops={},
        measured=ZERO, measured_self=ZERO, status=Status.MEASURED_ONLY, checked=_checked_of(0, 0, 0, 0, {}),
        is_own=True,
    )


def _memory(model: nn.Module, tracer: Tracer, optimizer: str | None) -> MemoryTotals | None:
    if tracer.peak_bytes is None:
        return None
    return MemoryTotals(
        activation_peak_bytes=tracer.peak_bytes,
        saved_for_backward_bytes=tracer.saved_bytes,
        training=training_state(model, optimizer) if optimizer else None,
    )


def _totals(modules: list[nn.Module], root: LayerRow | None, memory: MemoryTotals | None) -> Totals:
    """The whole model's counts: ``modules`` are all of its modules (parents first), ``root`` its row."""
    params = list(weights_of(modules))  # deduplicated by identity: tied weights count once
    model_buffers = list(buffers_of(modules))
    by_dtype: Counter[str] = Counter()
    for w in params:
        by_dtype[str(w.tensor.dtype).removeprefix("torch.")] += w.tensor.numel() * w.tensor.element_size()
    trainable = sum(w.tensor.numel() for w in params if w.trainable)
    total = sum(w.tensor.numel() for w in params)
    float_buffers = sum(b.numel() for b in model_buffers if b.is_floating_point())
    measured = root.measured if root else ZERO
    return Totals(
        params=total,
        trainable_params=trainable,
        frozen_params=total - trainable,
        non_trainable_params=total - trainable + float_buffers,
        buffers=sum(b.numel() for b in model_buffers),
        param_bytes=sum(by_dtype.values()),
        param_bytes_by_dtype=dict(by_dtype),
        buffer_bytes=sum(b.numel() * b.element_size() for b in model_buffers),
        macs=root.macs if root else 0,
        ops=dict(root.ops) if root else {},
        measured_macs=measured.macs,
        measured_flops=measured.flops,
        backward=root.backward if root else None,
        checked=root.checked if root else None,
        memory=memory,
    )

