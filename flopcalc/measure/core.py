"""Operator-level measurement: count what a forward pass executes, op by op, independently of the layer formulas.

A :class:`OpCounter` is a ``TorchDispatchMode``: it sees every aten op after autograd and decompositions, runs
it, and asks the rule registered for that op how many MACs and other operations it performed, computed from
the op's argument and result *shapes*. Nothing here imports :mod:`flopcalc.layers`; agreement between the two
is evidence, not a tautology.

Rules live in the ``ops_*.py`` modules beside this one. An op with neither a rule nor a zero-cost reason is
reported as uncounted with its call count — never silently zero.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch._ops import OpOverload, OpOverloadPacket

from flopcalc.dispatch import DispatchMode
from flopcalc.formula import CountTotals, Number, OpKind
from flopcalc.measure.derive import DerivedOutputs, checked, is_checking
from flopcalc.measure.repeats import RepeatedOps


def _is_zero(value: Number) -> bool:
    return isinstance(value, int) and value == 0


@dataclass(frozen=True)
class Count(CountTotals):
    """MACs and non-MAC operations (by :class:`OpKind` value) of one op or one module call."""

    macs: Number = 0
    ops: Mapping[str, Number] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # One spelling per count: plain-string kinds, and no kind listed with zero operations (inlined: every
        # op and every row makes counts).
        for kind, value in self.ops.items():
            if type(kind) is not str or (isinstance(value, int) and value == 0):
                object.__setattr__(self, "ops", {str(k): v for k, v in self.ops.items() if not _is_zero(v)})
                return

    def __add__(self, other: Count) -> Count:
        """The sum; one addend's own object when the other is nothing (counts are never changed in place)."""
        if not other.ops and _is_zero(other.macs):
            return self
        if not self.ops and _is_zero(self.macs):
            return other
        ops = dict(self.ops)
        for kind, value in other.ops.items():
            ops[kind] = ops.get(kind, 0) + value
        return Count(self.macs + other.macs, ops)


ZERO = Count()

OpRule = Callable[[Sequence[Any], Mapping[str, Any], Any], Count]
"""``rule(args, kwargs, out) -> Count`` for one aten op; it reads shapes only."""

_RULES: dict[OpOverloadPacket | OpOverload, OpRule] = {}
_ZERO_COST: dict[OpOverloadPacket | OpOverload, str] = {}


def op_rule(*ops: OpOverloadPacket | OpOverload) -> Callable[[OpRule], OpRule]:
    """Register ``rule`` for ``ops`` (a packet covers all its overloads); a second registration raises."""

    def register(rule: OpRule) -> OpRule:
        for op in ops:
            if op in _RULES or op in _ZERO_COST:
                raise RuntimeError(f"duplicate counting rule for {op}")
            _RULES[op] = rule
        return rule

    return register


def zero_cost(reason: str, ops: Iterable[OpOverloadPacket | OpOverload]) -> None:
    """Declare ``ops`` free of arithmetic, with the reason shown in the report."""
    for op in ops:
        if op in _RULES or op in _ZERO_COST:
            raise RuntimeError(f"duplicate counting rule for {op}")
        _ZERO_COST[op] = reason


def rule_for(func: OpOverload) -> OpRule | str | None:
    """The rule for ``func``, its zero-cost reason, or ``None`` when the op is not counted."""
    for key in (func, func.overloadpacket):
        if key in _RULES:
            return _RULES[key]
        if key in _ZERO_COST:
            return _ZERO_COST[key]
    return None


def zero_cost_reasons() -> Mapping[OpOverloadPacket | OpOverload, str]:
    return MappingProxyType(_ZERO_COST)


def numel(shape: Sequence[Number]) -> Number:
    return math.prod(shape, start=1)


def shape_of(value: Any) -> tuple[Number, ...]:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else ()


def per_element(out: Any, **kinds: Number) -> Count:
    """``kinds`` operations for every element of ``out`` (the broadcast result), e.g. ``per_element(out, add=1)``."""
    n = numel(shape_of(out))
    return Count(0, {OpKind(kind).value: n * k for kind, k in kinds.items() if k})


def stand_in(*shape: Number) -> torch.Tensor:
    """A meta tensor of ``shape``, to apply an op rule to the shapes a fused kernel works on internally."""
    return torch.empty(shape, device="meta")


def cost_of(op: OpOverload, *args: Any, out: Any, **kwargs: Any) -> Count:
    """What the registered rule for ``op`` counts for these arguments.

    Fused kernels are counted as the sum of the unfused ops they replace, each through its own rule, so that
    a convention (softmax, sigmoid, layer norm, ...) lives in one place and the fused count follows it.
    """
    rule = rule_for(op)
    if rule is None:
        raise RuntimeError(f"no counting rule for {op}, which a fused-kernel rule is composed from")
    return ZERO if isinstance(rule, str) else rule(args, kwargs, out)


def _has_no_elements(value: Any) -> bool:
    """An op whose input tensor is empty (batch 0, an empty dimension) does no arithmetic: zero work, which
    the per-shape rules would otherwise turn into ``n − 1 = −1`` steps or a division by zero."""
    if not isinstance(value, torch.Tensor) or value.is_nested:  # a nested tensor has no single shape
        return False
    return any(type(d) is int and d == 0 for d in value.shape)


@dataclass(frozen=True)
class RuleFailed:
    """The counting rule of an op raised: a flopcalc bug, reported with the op as uncounted."""

    error: str


def uncounted_name(func: OpOverload, failure: RuleFailed | None = None) -> str:
    """How an uncounted op is listed: its name, and why when its rule failed."""
    if failure is None:
        return str(func)
    return f"{func} (flopcalc could not count it, please report: {failure.error})"


def _count(func: OpOverload, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count | RuleFailed | None:
    """What ``func``'s rule counts for this run: ``None`` without a rule, :class:`RuleFailed` when it raised."""
    rule = rule_for(func)
    if rule is None:
        return None
    if isinstance(rule, str) or _has_no_elements(args[0] if args else None):
        return ZERO
    try:
        return rule(args, kwargs, out)
    except Exception as exc:  # noqa: BLE001  (a rule's bug is reported, never the model's failure)
        return RuleFailed(f"{type(exc).__name__}: {exc}")


OpSink = Callable[[OpOverload, Count | RuleFailed | None], None]
OpRecorder = Callable[[OpOverload, Count | RuleFailed | None, Sequence[Any], Any], None]


class OpCounter(DispatchMode):
    """Runs every op and reports ``(op, count)`` to ``sink``; ``count`` is ``None`` for an op with no rule and
    :class:`RuleFailed` when its rule raised. A failing rule never stops the forward pass.

    ``record``, when given, receives the op's arguments and result as well (``record(op, count, args, out)``),
    for a caller that keeps per-op facts beyond the count (the conventions of other counters need them).
    """

    def __init__(self, sink: OpSink, record: OpRecorder | None = None):
        super().__init__()
        self._sink = sink
        self._record = record
        self._repeats = RepeatedOps(_count)
        self._derived = DerivedOutputs()

    def __torch_dispatch__(self, func: OpOverload, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        key = self._repeats.key(func, args, kwargs)
        replayed = None if key is None else self._repeats.replay(key, args, kwargs)
        if replayed is not None:  # the same op on the same meta inputs as before: same output metadata, same count
            out, count = replayed
        else:  # a first run: the output derived where a rule applies (measure/derive.py), else the kernel's
            out = None if key is None else self._derived.output(func, args, kwargs)
            if out is None:
                out = func(*args, **kwargs)
            elif is_checking():
                out = checked(func, args, kwargs, out)
            count = _count(func, args, kwargs, out)
            if key is not None:
                self._repeats.remember(key, args, out, count)
        self._sink(func, count)
        if self._record is not None:
            self._record(func, count, args, out)
        return out


@dataclass
class Tally:
    """A whole-pass total: counted work, and the uncounted ops with their call counts."""

    count: Count = ZERO
    uncounted: Counter[str] = field(default_factory=Counter)

    def __call__(self, func: OpOverload, count: Count | RuleFailed | None) -> None:
        if not isinstance(count, Count):
            self.uncounted[uncounted_name(func, count)] += 1
        else:
            self.count = self.count + count


def measure(fn: Callable[[], Any]) -> Tally:
    """Count everything ``fn()`` executes, e.g. ``measure(lambda: x @ y).count.macs``."""
    tally = Tally()
    with OpCounter(tally):
        fn()
    return tally
