"""Tracing one forward pass: hooks keep a stack of open module calls, and every counted op goes to the innermost.

A :class:`Tracer` binds each module call to its layer formula (through the registry's binder) when the call
opens, and receives the operator counter's ``(op, count)`` pairs while it is open. What it collects is turned
into a :class:`~flopcalc.report.Report` by :mod:`flopcalc.assemble`.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from flopcalc.facts import ModuleFacts, OpTally, module_facts, op_name, tree_paths
from flopcalc.formula import Number
from flopcalc.measure import Count, Tally
from flopcalc.measure.core import ZERO, RuleFailed, uncounted_name
from flopcalc.registry import Binder, Bound, FormulaRegistry
from flopcalc.symbolic import SymbolicShapes
from flopcalc.weights import weights

@dataclass
class Call:
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
    facts: ModuleFacts | None = None
    op_tallies: dict[str, OpTally] = field(default_factory=dict)


def _shapes(value: Any) -> tuple[tuple[Number, ...], ...]:
    """Shapes of every tensor in a (nested) argument or output, in order."""
    if isinstance(value, torch.Tensor):
        return () if value.is_nested else (tuple(value.shape),)  # a nested tensor has no single shape
    if isinstance(value, list | tuple):
        return tuple(s for v in value for s in _shapes(v))
    if isinstance(value, Mapping):
        return tuple(s for v in value.values() for s in _shapes(v))
    return ()


class Tracer:
    """Hooks that keep a stack of open module calls, and the sink that charges each op to the innermost one."""

    def __init__(self, model: nn.Module, registry: FormulaRegistry, symbolic: SymbolicShapes | None = None):
        self.registry = registry
        self.symbolic = symbolic
        self.calls: list[Call] = []
        self.stack: list[int] = []
        self.claimed: set[Hashable] = set()
        self.names = {id(m): name for name, m in model.named_modules()}
        self.tree_paths = tree_paths(model) if symbolic is None else {}
        self.times_called: Counter[int] = Counter()
        self.outside = Tally()

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
        facts = module_facts(module, self.tree_paths.get(id(module), 1)) if self.symbolic is None else None
        self.calls.append(Call(module, name, parent, len(self.stack), shapes, bound, error, facts=facts))
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
        for weight in weights(module, recurse=call.bound is not None):
            if weight.key not in self.claimed:
                self.claimed.add(weight.key)
                call.params += weight.tensor.numel()

    def sink(self, func: Any, count: Count | RuleFailed | None) -> None:
        """Charge an op to the innermost open call. Ops run while no call is open (the root's own forward
        pre-hooks such as ``weight_norm``'s, global module hooks) go to :attr:`outside`, which the report adds
        to the root row on top of its formula."""
        if isinstance(count, Count) and self.symbolic is not None:
            to_expr = self.symbolic.to_expr
            count = Count(to_expr(count.macs), {kind: to_expr(n) for kind, n in count.ops.items()})
        if not self.stack:
            self.outside(func, count)
            return
        call = self.calls[self.stack[-1]]
        if isinstance(count, Count):
            call.self_count = call.self_count + count
        else:
            call.uncounted[uncounted_name(func, count)] += 1

    def record(self, func: Any, count: Count | RuleFailed | None, args: Any, out: Any) -> None:
        """Keep per-op facts of the innermost call (concrete passes only: the conventions need numbers)."""
        if self.stack and self.symbolic is None:
            tallies = self.calls[self.stack[-1]].op_tallies
            name = op_name(func)
            tally = tallies.get(name)
            if tally is None:
                tally = tallies[name] = OpTally()
            tally.add(count, args, out)

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

