"""Tracing one forward pass: hooks keep a stack of open calls, and every counted op goes to the innermost.

A :class:`Tracer` binds each module call to its layer formula (through the registry's binder) when the call
opens, and receives the operator counter's ``(op, count)`` pairs while it is open. Functional calls that a
layer family covers (``F.linear``, ``torch.matmul``, ``F.scaled_dot_product_attention``, ...) are calls too:
a ``TorchFunctionMode``, which sees them above the dispatcher and so independently of the operator count,
opens a call for each one made by a module that has no formula of its own (a module with a formula, such as
nn.Linear calling ``F.linear``, is already checked whole). What the tracer collects is turned into a
:class:`~flopcalc.report.Report` by :mod:`flopcalc.assemble`.
"""

from __future__ import annotations

import contextlib
import dis
import functools
import math
import sys
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import CodeType, FrameType
from typing import Any

import torch
from torch import nn
from torch._C import (
    _get_function_stack_at,
    _len_torch_function_stack,
    _pop_torch_function_stack,
    _push_on_torch_function_stack,
)
from torch.overrides import TorchFunctionMode

from flopcalc.facts import ModuleFacts, OpTally, module_facts, op_name, tree_paths
from flopcalc.formula import Number
from flopcalc.measure import Count, Tally
from flopcalc.measure.core import ZERO, RuleFailed, uncounted_name
from flopcalc.registry import Bound, FormulaRegistry, FunctionBinder
from flopcalc.symbolic import SymbolicShapes
from flopcalc.weights import Weight, named_modules, weights

@dataclass(slots=True)
class Call:
    """A module call or a functional call while the pass runs (mutable); becomes a :class:`LayerRow` afterwards.

    For a functional call ``module`` is the module whose forward made it and ``function`` its label
    (``"F.linear"``); ``function`` is ``None`` for a module call.
    """

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
    function: str | None = None
    output_bytes: Number = 0

    @property
    def has_formula(self) -> bool:
        """A binder claimed this call (bound, or failed to bind): its work is checked or reported as a whole."""
        return self.bound is not None or self.binding_error is not None


def tensors_in(value: Any) -> list[torch.Tensor]:
    """Every tensor in a (nested) argument, in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, list | tuple):
        return [t for v in value for t in tensors_in(v)]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in tensors_in(v)]
    return []


def _bytes(value: Any) -> Number:
    """Bytes of every tensor in a (nested) output, each at its dtype."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, list | tuple):
        return sum((_bytes(v) for v in value), 0)
    if isinstance(value, Mapping):
        return sum((_bytes(v) for v in value.values()), 0)
    return 0


def _call_shapes(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[tuple[Number, ...], ...]:
    """:func:`_shapes` of a call's arguments; most calls pass one dense tensor, which takes no recursion."""
    if not kwargs and len(args) == 1:
        value = args[0]
        if isinstance(value, torch.Tensor) and not value.is_nested:
            return (tuple(value.shape),)
    return _shapes((args, kwargs))


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
        self.model = model
        self.registry = registry
        self.symbolic = symbolic
        self.calls: list[Call] = []
        self.stack: list[int] = []
        self.claimed: set[Hashable] = set()
        self.modules = list(named_modules(model))  # (name, module) as the pass starts; a forward may add more
        self.names = {id(m): name for name, m in self.modules}
        self.tree_paths = tree_paths(model) if symbolic is None else {}
        self.times_called: Counter[int] = Counter()
        self.function_names: Counter[str] = Counter()
        self.param_owners: dict[int, str] = {}
        self.outside = Tally()
        self.peak_bytes: int | None = None  # the pass's activation memory (flopcalc.memory), when tracked
        self.saved_bytes: int | None = None
        self._byte_sizes: dict[tuple[tuple[Number, ...], int], Number] = {}
        self._function_mode: TorchFunctionMode | None = None

    def pre_hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        key = id(module)
        times = self.times_called[key] = self.times_called[key] + 1
        name = self.names.get(key, type(module).__name__)
        if times > 1:
            name = f"{name}#{times}"
        binder = self.registry.binder_for(module)
        bound, error = (None, None) if binder is None else self._bind(lambda: binder(module, args, kwargs))
        facts = module_facts(module, self.tree_paths.get(key, 1)) if self.symbolic is None else None
        shapes = _call_shapes(args, kwargs)
        if self.symbolic is not None:
            shapes = self._symbolic_shapes(shapes)
        self._open(Call(module, name, None, 0, shapes, bound, error, facts=facts))

    def _open(self, call: Call) -> None:
        if call.bound is not None and self.symbolic is not None:
            to_expr = self.symbolic.to_expr
            call.bound = Bound(call.bound.formula, {k: to_expr(v) for k, v in call.bound.values.items()})
        call.parent = self.stack[-1] if self.stack else None
        call.depth = len(self.stack)
        self.calls.append(call)
        if call.parent is not None:
            self.calls[call.parent].children.append(len(self.calls) - 1)
        self.stack.append(len(self.calls) - 1)

    @staticmethod
    def _bind(bind: Callable[[], Bound | None] | None) -> tuple[Bound | None, str | None]:
        if bind is None:
            return None, None
        try:
            return bind(), None
        except Exception as exc:  # a formula that cannot bind this call is reported, never fatal
            return None, f"{type(exc).__name__}: {exc}"

    def takes_function_calls(self) -> bool:
        """Functional calls become rows inside a module call without a formula of its own (and not inside
        another functional call)."""
        return bool(self.stack) and not self.calls[self.stack[-1]].has_formula

    def function_call(self, label: str, binder: FunctionBinder, func: Any, args: tuple[Any, ...],
                      kwargs: Mapping[str, Any]) -> Any:
        """Run ``func`` as a call of its own: bound to its family's formula, charged the ops it dispatches.

        A call the binder does not cover (returns ``None``) runs as part of its caller. The row is named by
        the module that owns its parameter arguments (``attn.qkv ← F.linear``), else by its caller.
        """
        bound, error = self._bind(lambda: binder(args, kwargs))
        if bound is None and error is None:
            return func(*args, **kwargs)
        caller = self.calls[self.stack[-1]]
        owned = [t for t in tensors_in((args, kwargs)) if id(t) in self.param_owners]
        owner = self.param_owners[id(owned[0])] if owned else caller.name
        name = f"{owner} ← {label}".lstrip()
        self.function_names[name] += 1
        if self.function_names[name] > 1:
            name = f"{name}#{self.function_names[name]}"
        shapes = self._symbolic_shapes(_shapes((args, kwargs)))
        self._open(Call(caller.module, name, None, 0, shapes, bound, error, function=label))
        output = func(*args, **kwargs)
        call = self.calls[self.stack.pop()]
        call.output_shapes = self._symbolic_shapes(_shapes(output))
        self._claim(call, [Weight(id(t), t, t.requires_grad) for t in owned])
        return output

    def _claim(self, call: Call, owned: Iterable[Weight]) -> None:
        """Give ``call`` the weights no earlier call has claimed (tied and shared weights count once)."""
        for weight in owned:
            if weight.key not in self.claimed:
                self.claimed.add(weight.key)
                call.params += weight.tensor.numel()

    def post_hook(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        call = self.calls[self.stack.pop()]
        call.output_shapes = _call_shapes((output,), {})
        if self.symbolic is None:
            call.output_bytes = _bytes(output)
        else:
            call.output_shapes = self._symbolic_shapes(call.output_shapes)
            call.output_bytes = self._symbolic_bytes(output)
        # A formula row owns every parameter of its subtree not claimed by a child call (e.g. the out_proj of
        # MultiheadAttention, which its forward uses without calling); other rows own their direct parameters.
        self._claim(call, weights(module, recurse=call.bound is not None))

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
        """Keep per-op facts of the innermost module call (concrete passes only: the conventions need numbers).

        A functional call's ops count as its module's own here: the counters the conventions reproduce hook
        modules, not functions."""
        if self.stack and self.symbolic is None:
            innermost = self.calls[self.stack[-1]]
            module_call = self.calls[innermost.parent] if innermost.function and innermost.parent is not None else innermost
            tallies = module_call.op_tallies
            name = op_name(func)
            tally = tallies.get(name)
            if tally is None:
                tally = tallies[name] = OpTally()
            tally.add(count, args, out)

    def _symbolic_bytes(self, output: Any) -> Number:
        """:func:`_bytes` of a symbolic pass's output, multiplied out from its sizes' expressions (each rewritten
        once): torch's SymInt arithmetic would derive and simplify a new expression for every product."""
        to_expr = self.symbolic.to_expr  # type: ignore[union-attr]
        total: Number = 0
        for tensor in tensors_in(output):
            if tensor.is_nested:
                total += to_expr(tensor.numel() * tensor.element_size())
                continue
            key = (tuple(to_expr(d) for d in tensor.shape), tensor.element_size())
            size = self._byte_sizes.get(key)
            if size is None:
                size = self._byte_sizes[key] = math.prod(key[0]) * key[1]
            total += size
        return total

    def _symbolic_shapes(self, shapes: tuple[tuple[Any, ...], ...]) -> tuple[tuple[Number, ...], ...]:
        if self.symbolic is None:
            return shapes
        return tuple(tuple(self.symbolic.to_expr(d) for d in shape) for shape in shapes)

    @contextlib.contextmanager
    def hooks(self, model: nn.Module) -> Iterator[None]:
        """Module hooks and the functional-call mode for one pass, removed afterwards (also on error)."""
        modules = self.modules if model is self.model else list(named_modules(model))
        self.param_owners = {
            id(param): _parameter_owner(name, attribute, module, self.registry)
            for name, module in modules for attribute, param in module._parameters.items() if param is not None
        }
        handles = []
        try:
            for _, module in modules:
                handles.append(module.register_forward_pre_hook(self._registered_pre_hook, with_kwargs=True))
                handles.append(module.register_forward_hook(self._registered_post_hook, with_kwargs=True))
            with _FunctionCalls(self) as mode:
                self._function_mode = mode
                try:
                    yield
                finally:
                    self._function_mode = None
        finally:
            for handle in handles:
                handle.remove()

    # The hooks registered on the modules run the tracer's own work with the functional-call mode lifted off
    # the stack: reading shapes, sizes, dtypes and weights would otherwise pass every tensor attribute through
    # the mode (thousands of calls in a ResNet, none of them a functional call of the model).

    def _registered_pre_hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        mode = self._lift_function_mode()
        try:
            self.pre_hook(module, args, kwargs)
        finally:
            if mode is not None:
                _push_on_torch_function_stack(mode)

    def _registered_post_hook(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        mode = self._lift_function_mode()
        try:
            self.post_hook(module, args, kwargs, output)
        finally:
            if mode is not None:
                _push_on_torch_function_stack(mode)

    def _lift_function_mode(self) -> TorchFunctionMode | None:
        """Pop this pass's functional-call mode when it is the innermost torch-function mode (else leave the
        stack alone: a mode the model entered is above it) and return it, to be pushed back."""
        depth = _len_torch_function_stack()
        if self._function_mode is None or not depth or _get_function_stack_at(depth - 1) is not self._function_mode:
            return None
        return _pop_torch_function_stack()


def _parameter_owner(module_name: str, attribute: str, module: nn.Module, registry: FormulaRegistry) -> str:
    """What a functional row using this parameter is named after: a layer's module (``attn.qkv`` for
    ``F.linear(x, self.qkv.weight, …)``), or the parameter itself where a module holds it directly
    (``attn.relative_bias``): its module's name would not tell which of its parameters the call used."""
    if registry.binder_for(module) is not None:
        return module_name
    return f"{module_name}.{attribute}" if module_name else attribute


@functools.lru_cache(maxsize=1024)
def _binary_operators(code: CodeType) -> dict[int, str]:
    """The binary operators in ``code``, by the offset of their instruction (``{56: "@"}``)."""
    return {i.offset: i.argrepr for i in dis.get_instructions(code) if i.opname == "BINARY_OP"}


def call_site_label(label: str, frame: FrameType | None) -> str:
    """The operator (``@``) when the Python instruction that made the call is one, else ``label``: torch hands
    ``x @ w`` and ``x.matmul(w)`` to a mode as the same function, but the caller's bytecode tells them apart."""
    if frame is None:
        return label
    return _binary_operators(frame.f_code).get(frame.f_lasti, label)


class _FunctionCalls(TorchFunctionMode):
    """Sees every torch function call above the dispatcher and hands the ones a family covers to the tracer.

    torch disables the mode while ``__torch_function__`` runs, so the calls a functional call makes
    internally (``F.softmax`` calling ``Tensor.softmax``) are part of it, never rows of their own.
    """

    def __init__(self, tracer: Tracer):
        super().__init__()
        self.tracer = tracer
        self.binders = tracer.registry.function_binders()

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        try:
            entry = self.binders.get(func)
        except TypeError:  # an unhashable callable is no registered function
            entry = None
        if entry is None or not self.tracer.takes_function_calls():
            return func(*args, **kwargs)
        label, binder = entry
        # The frame that called the function: torch calls a mode's __torch_function__ from it directly.
        return self.tracer.function_call(call_site_label(label, sys._getframe(1)), binder, func, args, kwargs)

