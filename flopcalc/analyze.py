"""``analyze(model, inputs)``: one forward pass, formulas bound per module call, ops counted per module call.

This is the only module that touches the user's model. It registers forward hooks and sets eval mode for the
duration of one pass and undoes both in ``finally``, so the model leaves exactly as it came, also when the
forward pass raises. By default the pass runs on the meta device (or on fake tensors when the model holds real
weights): shapes propagate, nothing is computed, nothing is allocated.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy as sp
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from flopcalc import layers as _layers  # noqa: F401  (registers the formulas)
from flopcalc.errors import ForwardError, InputError, UncountedOpsError
from flopcalc.formula import Evaluation, Number
from flopcalc.inputs import ModelInputs, to_model_inputs
from flopcalc.measure import Count, OpCounter
from flopcalc.measure.core import ZERO
from flopcalc.registry import REGISTRY, Binder, Bound, FormulaRegistry
from flopcalc.report import LayerRow, Report, Status, Totals
from flopcalc.symbolic import ClosedForm, ConditionError, SymbolicShapes, SymbolicTraceError, user_symbol


@dataclass
class _Call:
    """A module call while the pass runs (mutable); becomes a :class:`LayerRow` afterwards."""

    module: nn.Module
    name: str
    parent: int | None
    depth: int
    input_shapes: tuple[tuple[Number, ...], ...]
    bound: Bound | None
    binding_error: str | None = None
    output_shapes: tuple[tuple[Number, ...], ...] = ()
    children: list[int] = field(default_factory=list)
    self_count: Count = ZERO
    uncounted: Counter[str] = field(default_factory=Counter)
    params: int = 0


def _shapes(value: Any) -> tuple[tuple[Number, ...], ...]:
    """Shapes of every tensor in a (nested) argument or output, in order."""
    if isinstance(value, torch.Tensor):
        return (tuple(value.shape),)
    if isinstance(value, list | tuple):
        return tuple(s for v in value for s in _shapes(v))
    if isinstance(value, Mapping):
        return tuple(s for v in value.values() for s in _shapes(v))
    return ()


class _Tracer:
    """Hooks that keep a stack of open module calls, and the sink that charges each op to the innermost one."""

    def __init__(self, model: nn.Module, registry: FormulaRegistry, symbolic: SymbolicShapes | None = None):
        self.registry = registry
        self.symbolic = symbolic
        self.calls: list[_Call] = []
        self.stack: list[int] = []
        self.claimed: set[int] = set()
        self.names = {id(m): name for name, m in model.named_modules()}
        self.times_called: Counter[int] = Counter()

    def pre_hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.times_called[id(module)] += 1
        name = self.names.get(id(module), type(module).__name__)
        if self.times_called[id(module)] > 1:
            name = f"{name}#{self.times_called[id(module)]}"
        binder = self.registry.binder_for(module)
        bound, error = self._bind(binder, module, args, kwargs)
        if bound is not None and self.symbolic is not None:
            bound = Bound(bound.formula, {k: self.symbolic.to_expr(v) for k, v in bound.values.items()})
        parent = self.stack[-1] if self.stack else None
        shapes = self._symbolic_shapes(_shapes((args, kwargs)))
        self.calls.append(_Call(module, name, parent, len(self.stack), shapes, bound, error))
        if parent is not None:
            self.calls[parent].children.append(len(self.calls) - 1)
        self.stack.append(len(self.calls) - 1)

    @staticmethod
    def _bind(binder: Binder | None, module: nn.Module, args: Any, kwargs: Any) -> tuple[Bound | None, str | None]:
        if binder is None:
            return None, None
        try:
            return binder(module, args, kwargs), None
        except Exception as exc:  # a formula that cannot bind this call is reported, never fatal
            return None, f"{type(exc).__name__}: {exc}"

    def post_hook(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        call = self.calls[self.stack.pop()]
        call.output_shapes = self._symbolic_shapes(_shapes(output))
        # A formula row owns every parameter of its subtree not claimed by a child call (e.g. the out_proj of
        # MultiheadAttention, which its forward uses without calling); other rows own their direct parameters.
        owned = module.parameters() if call.bound else module.parameters(recurse=False)
        for param in owned:
            if id(param) not in self.claimed:
                self.claimed.add(id(param))
                call.params += param.numel()

    def sink(self, func: Any, count: Count | None) -> None:
        if not self.stack:
            return
        call = self.calls[self.stack[-1]]
        if count is None:
            call.uncounted[str(func)] += 1
        elif self.symbolic is not None:
            to_expr = self.symbolic.to_expr
            ops = {kind: to_expr(n) for kind, n in count.ops.items()}
            call.self_count = call.self_count + Count(to_expr(count.macs), ops)
        else:
            call.self_count = call.self_count + count

    def _symbolic_shapes(self, shapes: tuple[tuple[Any, ...], ...]) -> tuple[tuple[Number, ...], ...]:
        if self.symbolic is None:
            return shapes
        return tuple(tuple(self.symbolic.to_expr(d) for d in shape) for shape in shapes)

    @contextlib.contextmanager
    def hooks(self, model: nn.Module) -> Iterator[None]:
        handles = []
        try:
            for module in {id(m): m for m in model.modules()}.values():
                handles.append(module.register_forward_pre_hook(self.pre_hook, with_kwargs=True))
                handles.append(module.register_forward_hook(self.post_hook, with_kwargs=True))
            yield
        finally:
            for handle in handles:
                handle.remove()


@contextlib.contextmanager
def _mode(model: nn.Module, training: bool) -> Iterator[None]:
    """Set train/eval for the pass and restore every module's own flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.train(training)
        yield
    finally:
        for module, flag in flags:
            module.training = flag


def _model_device(model: nn.Module) -> torch.device | None:
    for tensor in [*model.parameters(), *model.buffers()]:
        return tensor.device
    return None


def analyze(
    model: nn.Module,
    inputs: Any = None,
    *,
    kwargs: Mapping[str, Any] | None = None,
    device: str = "meta",
    training: bool = False,
    extra: Mapping[type, Binder] | None = None,
    strict: bool = False,
    name: str | None = None,
    hints: Mapping[str, int] | None = None,
) -> Report:
    """Count parameters, MACs and other ops of ``model`` per module call, by formula and by measurement.

    Args:
        model: any ``nn.Module``; it is not modified.
        inputs: a shape with batch ``(1, 3, 224, 224)``, a list of shapes, ``InputSpec``s (for dtypes), example
            tensors, or a dict of keyword arguments. Example tensors are used as given on ``device="cpu"``.
        kwargs: extra keyword arguments for the forward call.
        device: ``"meta"`` (default) propagates shapes only: on the meta device for a meta model, on fake
            tensors for a model with real weights. ``"cpu"`` runs the real computation (for models whose
            forward depends on data). Both give identical counts.
        training: count a training-mode forward (dropout masks, batch statistics) instead of inference.
        extra: binders for further module types (or overriding built-in ones), e.g. ``{MyBlock: bind_block}``.
        strict: raise :class:`UncountedOpsError` if any executed op has no counting rule.
        name: the model's name in the report (default: its class name).
        hints: for inputs with named dimensions (``(1, 3, "H", "W")``), the value torch assumes for each name
            where the model branches on a size (defaults in :mod:`flopcalc.symbolic`). Counts then come out as
            closed forms in those names, valid where ``report.closed_form.conditions`` hold.

    Raises:
        ForwardError: the forward pass raised; the message names the failing layer and its input shapes.
        InputError: ``inputs`` cannot be turned into forward arguments.
        UncountedOpsError: with ``strict=True``, when some op went uncounted.
    """
    if device not in ("meta", "cpu"):
        raise InputError(f"device must be 'meta' or 'cpu', not {device!r}")
    model_inputs = to_model_inputs(inputs, kwargs)
    registry = REGISTRY.extended(extra) if extra else REGISTRY
    name = name or type(model).__name__
    if model_inputs.is_symbolic:
        report = _analyze_symbolic(model, model_inputs, registry, device, training, name, hints)
    else:
        report = _analyze_concrete(model, model_inputs, registry, device, training, name)
    if strict and report.uncounted:
        listed = ", ".join(f"{op} ×{n}" for op, n in report.uncounted.items())
        raise UncountedOpsError(f"ops without a counting rule ran: {listed}")
    return report


def evaluate_at(
    model: nn.Module, inputs: Any, report: Report, points: Sequence[Mapping[str, int]], device: str = "meta"
) -> list[dict[str, Any]]:
    """Totals of a closed-form ``report`` at each point, e.g. ``[{"H": 224, "W": 224}]``.

    Where the closed form's conditions hold the totals come from it (``"source": "closed form"``); elsewhere
    the model takes another branch at that size, so that size is analysed concretely (``"concrete"``).
    ``inputs`` are the symbolic inputs the report was made from.
    """
    if report.closed_form is None:
        raise InputError("evaluate_at needs a report of named sizes, e.g. analyze(model, (1, 3, 'H', 'W'))")
    results = []
    for point in points:
        try:
            closed = report.evaluate(**point)
            macs, flops, source = closed["macs"], closed["flops"], "closed form"
        except ConditionError:
            totals = analyze(model, to_model_inputs(inputs).with_sizes(point), device=device).totals
            macs, flops, source = totals.macs, totals.flops, "concrete"
        results.append({"at": dict(point), "params": report.totals.params, "macs": macs, "flops": flops,
                        "source": source})
    return results


def _analyze_concrete(
    model: nn.Module, inputs: ModelInputs, registry: FormulaRegistry, device: str, training: bool, name: str
) -> Report:
    tracer = _Tracer(model, registry)
    _run(model, inputs, tracer, device, training)
    return _build_report(model, inputs, tracer, device, name)


def _analyze_symbolic(
    model: nn.Module, inputs: ModelInputs, registry: FormulaRegistry, device: str, training: bool, name: str,
    hints: Mapping[str, int] | None,
) -> Report:
    """A closed-form report, or :class:`SymbolicTraceError` carrying the concrete report at the hints."""
    symbolic = SymbolicShapes(hints)
    tracer = _Tracer(model, registry, symbolic)
    try:
        _run(model, inputs, tracer, device, training)
        pinned = symbolic.specialized()
        problem = f"the model fixes {'; '.join(pinned.values())}" if pinned else ""
    except ForwardError as exc:
        sizes = ", ".join(f"{k}={v}" for k, v in symbolic.hints.items())
        problem = f"the forward pass fails with symbolic sizes {sizes} (other sizes can be set as hints): {exc}"
    if not problem:
        return _build_report(model, inputs, tracer, device, name)
    at = {**symbolic.hints, **(hints or {})}
    concrete_inputs = inputs.with_sizes(at)
    concrete = None
    for concrete_device in dict.fromkeys((device, "cpu")):  # data-dependent models need real values
        try:
            concrete = _analyze_concrete(model, concrete_inputs, registry, concrete_device, training, name)
            break
        except (ForwardError, InputError):
            continue
    sizes = ", ".join(f"{k}={v}" for k, v in at.items())
    fallback = f"concrete count at {sizes} instead" if concrete else f"no concrete count at {sizes} either"
    raise SymbolicTraceError(f"{name} cannot be counted in closed form: {problem}; {fallback}", concrete)


def _run(model: nn.Module, inputs: ModelInputs, tracer: _Tracer, device: str, training: bool) -> None:
    model_device = _model_device(model)
    on_meta = model_device is not None and model_device.type == "meta"
    if device == "cpu" and on_meta:
        raise InputError("the model's weights are on the meta device; analyse it with device='meta'")
    symbolic = tracer.symbolic
    fake = None
    if symbolic is not None:
        fake = symbolic.fake_mode
    elif device == "meta" and not on_meta:
        fake = FakeTensorMode(allow_non_fake_inputs=True)
    target = "meta" if on_meta else (model_device or torch.device("cpu"))
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        stack.enter_context(_mode(model, training))
        if fake is not None:
            stack.enter_context(fake)
            resolve = symbolic.symint if symbolic else None
            args, kwargs = inputs.materialize(target, convert=fake.from_tensor, resolve=resolve)
        elif on_meta:
            args, kwargs = inputs.materialize(target, convert=lambda t: t.to("meta"))
        else:
            args, kwargs = inputs.materialize(target)
        stack.enter_context(tracer.hooks(model))
        stack.enter_context(OpCounter(tracer.sink))
        try:
            model(*args, **kwargs)
        except Exception as exc:
            raise _forward_error(model, tracer, exc) from exc


def _forward_error(model: nn.Module, tracer: _Tracer, exc: Exception) -> ForwardError:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if tracer.stack:
        call = tracer.calls[tracer.stack[-1]]
        shapes = ", ".join("x".join(map(str, s)) for s in call.input_shapes) or "no tensors"
        where = f"in {call.name or type(model).__name__} ({type(call.module).__name__}) called with input {shapes}"
    else:
        where = f"before {type(model).__name__} was called"
    hint = ""
    if "data-dependent" in message.lower() or "DataDependent" in type(exc).__name__:
        hint = "; the forward depends on tensor values, try device='cpu' (--device cpu)"
    return ForwardError(f"forward pass failed {where}: {type(exc).__name__}: {message}{hint}")


def _normalized(ops: Mapping[str, Number]) -> dict[str, Number]:
    return {str(k): v for k, v in ops.items() if v != 0}


def _compare(call: _Call, evaluation: Evaluation, measured: Count, at: Mapping[str, int]) -> tuple[str, ...]:
    """Every field where the formula and the measurement disagree, as 'field: formula X, measured Y'.

    Symbolic counts are compared at the hints ``at``: the two sides may write the same integer division
    differently, and both are exact there.
    """
    module = call.module
    checks: list[tuple[str, Any, Any]] = [
        ("params", evaluation.params, sum(p.numel() for p in module.parameters())),
        ("buffers", evaluation.buffers, sum(b.numel() for b in module.buffers())),
        ("macs", evaluation.macs, measured.macs),
        ("ops", _normalized(evaluation.ops), _normalized(measured.ops)),
    ]
    if evaluation.output_shape and call.output_shapes:
        checks.append(("output_shape", tuple(evaluation.output_shape), tuple(call.output_shapes[0])))
    point = {user_symbol(name): value for name, value in at.items()}

    def concrete(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: concrete(v) for k, v in value.items()}
        if isinstance(value, tuple):
            return tuple(concrete(v) for v in value)
        if not (point and isinstance(value, sp.Basic)):
            return value
        return sp.sympify(value.xreplace(point)).doit()

    return tuple(
        f"{what}: formula {a}, measured {b}" for what, a, b in checks if concrete(a) != concrete(b)
    )


def _container_status(call: _Call, children: list[LayerRow | None]) -> Status:
    """A module without a formula matches when it is a pure container: no work of its own, and every child
    call matches, so its count is the sum of checked formulas. Otherwise part of its count is measured only."""
    pure = not call.self_count.macs and not call.self_count.ops and not call.uncounted
    if children and pure and all(child and child.status is Status.MATCH for child in children):
        return Status.MATCH
    return Status.MEASURED_ONLY


def _build_report(model: nn.Module, inputs: ModelInputs, tracer: _Tracer, device: str, name: str) -> Report:
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
            uncounted.update(child.uncounted)
        params = call.params + sum(child.params for child in children if child)
        analytic = None
        mismatches: tuple[str, ...] = ()
        if call.bound is not None:
            try:
                analytic = call.bound.evaluate()
            except Exception as exc:  # a formula that cannot be evaluated is a reported mismatch, never fatal
                mismatches = (f"formula could not be evaluated: {type(exc).__name__}: {exc}",)
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
        rows[index] = LayerRow(
            index=index, name=call.name, type=type(call.module).__name__, depth=call.depth, parent=call.parent,
            children=tuple(call.children), input_shapes=call.input_shapes, output_shapes=call.output_shapes,
            params=params, macs=macs, ops=_normalized(ops), measured=measured, measured_self=call.self_count,
            status=status, bound=call.bound, analytic=analytic, mismatches=mismatches, uncounted=dict(uncounted),
        )
    final_rows = tuple(row for row in rows if row is not None)
    root = final_rows[0] if final_rows else None
    # Modules whose parameters no call owns: never called, and not used by a formula row's forward either.
    uncalled = {
        module_name: unowned
        for module_name, module in model.named_modules()
        if (unowned := sum(p.numel() for p in module.parameters(recurse=False) if id(p) not in tracer.claimed))
    }
    totals = _totals(model, root)
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
        device=device,
        rows=final_rows,
        totals=totals,
        uncounted=dict(root.uncounted) if root else {},
        uncalled=uncalled,
        closed_form=closed_form,
    )


def _totals(model: nn.Module, root: LayerRow | None) -> Totals:
    params = list(model.parameters())  # deduplicated by identity: tied weights count once
    buffers = list(model.buffers())
    by_dtype: Counter[str] = Counter()
    for p in params:
        by_dtype[str(p.dtype).removeprefix("torch.")] += p.numel() * p.element_size()
    trainable = sum(p.numel() for p in params if p.requires_grad)
    total = sum(p.numel() for p in params)
    float_buffers = sum(b.numel() for b in buffers if b.is_floating_point())
    measured = root.measured if root else ZERO
    return Totals(
        params=total,
        trainable_params=trainable,
        frozen_params=total - trainable,
        non_trainable_params=total - trainable + float_buffers,
        buffers=sum(b.numel() for b in buffers),
        param_bytes=sum(by_dtype.values()),
        param_bytes_by_dtype=dict(by_dtype),
        buffer_bytes=sum(b.numel() * b.element_size() for b in buffers),
        macs=root.macs if root else 0,
        ops=dict(root.ops) if root else {},
        measured_macs=measured.macs,
        measured_flops=measured.flops,
    )
