"""``analyze(model, inputs)``: one forward pass, formulas bound per module call, ops counted per module call.

The work is split by job: :mod:`flopcalc.trace` follows module calls and charges ops to them,
:mod:`flopcalc.isolate` runs the pass without changing the user's model, and :mod:`flopcalc.assemble` turns
the trace into a :class:`~flopcalc.report.Report`. By default the pass runs on the meta device (or on fake
tensors when the model holds real weights): shapes propagate, nothing is computed, nothing is allocated.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from flopcalc import layers as _layers  # noqa: F401  (registers the formulas)
from flopcalc.assemble import build_report
from flopcalc.backward import BackwardTracer
from flopcalc.errors import ForwardError, InputError, UncountedOpsError
from flopcalc.inputs import ModelInputs, to_model_inputs
from flopcalc.isolate import run_pass
from flopcalc.hardware import Hardware
from flopcalc.hardware import hardware as resolve_hardware
from flopcalc.memory import OPTIMIZER_STATES
from flopcalc.roofline import BytesMoved, with_roofline
from flopcalc.timing import check_device, time_layers, with_timing
from flopcalc.registry import REGISTRY, Binder, FormulaRegistry
from flopcalc.report import Report, convention
from flopcalc.symbolic import ConditionError, SymbolicShapes, SymbolicTraceError
from flopcalc.trace import Tracer

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
    backward: bool = False,
    optimizer: str | None = None,
    memory: bool = False,
    hardware: str | Hardware | None = None,
    time: str | None = None,
    repeats: int = 10,
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
        backward: also run the backward pass (gradients of the sum of the outputs with respect to every
            trainable parameter) and count it per layer: ``row.backward`` (grad-input, grad-weight, recompute
            under activation checkpointing, checked against the backward formulas) and
            ``totals.backward_macs``/``training_macs``. Needs concrete sizes.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"`` (with momentum): ``totals.memory.training`` gives the
            bytes of parameters, gradients, float32 master weights (for 16-bit parameters) and optimizer state.
        memory: track tensor lifetimes during the pass: ``totals.memory.activation_peak_bytes`` and, with
            ``backward``, ``saved_for_backward_bytes`` (implied by ``optimizer``). Needs concrete sizes.
        hardware: a name from :data:`flopcalc.hardware.HARDWARE` (``"h100-sxm"``), ``"cpu"`` (measured here),
            ``"peak=989e12,bandwidth=3.35e12"`` or a :class:`~flopcalc.hardware.Hardware`: each row gets
            ``row.roofline`` (bytes moved, intensity, roofline time, bound) and ``totals.roofline``.
        time: ``"cpu"`` or ``"cuda"``: also run the model for real there (2 warm-up runs, then the median of
            ``repeats``) and time every module call: ``report.timing``; the model needs real weights on that
            device. With ``hardware``, :func:`flopcalc.timing.achieved` and ``flop_utilisation`` compare.

    Raises:
        ForwardError: the forward pass raised; the message names the failing layer and its input shapes.
        InputError: ``inputs`` cannot be turned into forward arguments.
        UncountedOpsError: with ``strict=True``, when some op went uncounted.
    """
    if device not in ("meta", "cpu"):
        raise InputError(f"device must be 'meta' or 'cpu', not {device!r}")
    if isinstance(model, torch.jit.ScriptModule):
        raise InputError(
            f"{name or type(model).__name__} is a TorchScript module, which cannot be hooked per layer; "
            "analyse the nn.Module before torch.jit.script"
        )
    if optimizer is not None and optimizer not in OPTIMIZER_STATES:
        raise InputError(f"unknown optimizer {optimizer!r}; use one of {', '.join(OPTIMIZER_STATES)}")
    model_inputs = to_model_inputs(inputs, kwargs)
    memory = memory or optimizer is not None
    if (backward or memory or hardware is not None or time is not None) and model_inputs.is_symbolic:
        raise InputError(
            "the backward pass, memory, the roofline and timing need concrete sizes; give numbers instead of names")
    if time is not None:
        check_device(model, time)  # before the count, so a missing device fails fast
    device_spec = resolve_hardware(hardware) if isinstance(hardware, str) else hardware
    registry = REGISTRY.extended(extra) if extra else REGISTRY
    name = name or type(model).__name__
    _check_hints(model_inputs, hints)
    if model_inputs.is_symbolic:
        report = _analyze_symbolic(model, model_inputs, registry, device, training, name, hints)
    else:
        report = _analyze_concrete(model, model_inputs, registry, device, training, name, backward=backward,
                                   optimizer=optimizer, memory=memory, hardware=device_spec)
    if training or backward:
        report = dataclasses.replace(report, convention=convention(bool(training), backward))
    if time is not None:
        report = with_timing(report, time_layers(model, model_inputs, time, repeats, training=bool(training)))
    if strict and report.uncounted:
        listed = ", ".join(f"{op} ×{n}" for op, n in report.uncounted.items())
        raise UncountedOpsError(f"ops without a counting rule ran: {listed}")
    return report


def evaluate_at(
    model: nn.Module, inputs: Any, report: Report, points: Sequence[Mapping[str, int]], device: str = "meta"
) -> list[dict[str, Any]]:
    """Totals of a closed-form ``report`` at each point, e.g. ``[{"H": 224, "W": 224}]``.

    Where the closed form's conditions hold the totals come from it (``"source": "closed form"``); elsewhere
    the model takes another branch at that size, so that size is analysed concretely (``"concrete"``). Where
    even the concrete forward pass fails (a size too small for the model), MACs and FLOPs are ``None`` and the
    source says why. A report without a closed form (the concrete fallback of a :class:`SymbolicTraceError`)
    has every point analysed concretely. ``inputs`` are the symbolic inputs the report was made from.
    """
    model_inputs = to_model_inputs(inputs)
    if not model_inputs.is_symbolic:
        raise InputError("evaluate_at needs inputs with named sizes, e.g. evaluate_at(model, (1, 3, 'H', 'W'), ...)")
    results = []
    for point in points:
        closed = None
        if report.closed_form is not None:
            with contextlib.suppress(ConditionError):
                closed = report.evaluate(**point)
        if closed is not None:
            macs, flops, source = closed["macs"], closed["flops"], "closed form"
        else:
            try:
                totals = analyze(model, model_inputs.with_sizes(point), device=device).totals
                macs, flops, source = totals.macs, totals.flops, "concrete"
            except ForwardError as exc:  # the model itself cannot run at this size: say so, count nothing
                first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                macs, flops, source = None, None, f"not countable: the forward pass fails at this size ({first_line})"
        results.append({"at": dict(point), "params": report.totals.params, "macs": macs, "flops": flops,
                        "source": source})
    return results


def _check_hints(inputs: ModelInputs, hints: Mapping[str, int] | None) -> None:
    """Every hint names a size of the inputs: a hint for another name would silently do nothing."""
    named = list(dict.fromkeys(d for shape in inputs.shapes for d in shape if isinstance(d, str)))
    unknown = [name for name in hints or {} if name not in named]
    if unknown:
        sizes = f"the named sizes are {', '.join(named)}" if named else "the inputs name no size (e.g. 3xHxW)"
        raise InputError(f"hint for {', '.join(unknown)}, which is not a size in the inputs; {sizes}")


def _analyze_concrete(
    model: nn.Module, inputs: ModelInputs, registry: FormulaRegistry, device: str, training: bool, name: str, *,
    backward: bool = False, optimizer: str | None = None, memory: bool = False, hardware: Hardware | None = None,
) -> Report:
    tracer = BackwardTracer(model, registry) if backward else Tracer(model, registry)
    bytes_moved = BytesMoved(tracer.stack) if hardware is not None else None
    with run_pass(model, inputs, tracer, device, training, backward, memory, bytes_moved):
        report = build_report(model, inputs, tracer, device, name, optimizer)
        if bytes_moved is None or hardware is None:
            return report
        return with_roofline(report, model, inputs, bytes_moved, hardware)


def _analyze_symbolic(
    model: nn.Module, inputs: ModelInputs, registry: FormulaRegistry, device: str, training: bool, name: str,
    hints: Mapping[str, int] | None,
) -> Report:
    """A closed-form report, or :class:`SymbolicTraceError` carrying the concrete report at the hints."""
    symbolic = SymbolicShapes(hints)
    tracer = Tracer(model, registry, symbolic)
    try:
        with run_pass(model, inputs, tracer, device, training):
            pinned = symbolic.specialized()
            problem = f"the model fixes {'; '.join(pinned.values())}" if pinned else ""
            if not problem:
                return build_report(model, inputs, tracer, device, name)
    except ForwardError as exc:
        sizes = ", ".join(f"{k}={v}" for k, v in symbolic.hints.items())
        problem = f"the forward pass fails with symbolic sizes {sizes} (other sizes can be set as hints): {exc}"
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

