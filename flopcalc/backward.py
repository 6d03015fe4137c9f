"""The backward pass: run on the traced forward's graph, its ops charged to the module calls that created them.

During the forward pass, each module call claims the autograd nodes its forward created: when the call
returns, the graph is walked back from its outputs until the nodes of its inputs or nodes already claimed
(inner calls return first, so they claim their own nodes). The backward pass then runs under the same
operator counter with a pre- and post-hook on every claimed node, so each op autograd executes is charged to
the call whose node is running. Gradients are taken with ``torch.autograd.grad``, so nothing accumulates into
``.grad``; reentrant checkpointing needs ``.backward()``, and every ``.grad`` it writes is restored afterwards.

What autograd skips is skipped here too: no grad-input where the input needs no gradient (the first layer),
no grad-weight for frozen parameters. A forward that activation checkpointing re-runs during the backward
pass re-enters the module hooks; its ops are charged to that call's ``recompute``.

Between nodes the engine sums the gradients of a tensor used more than once: :mod:`flopcalc.gradient_sums`
charges each sum to a call.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from flopcalc.backward_flags import OUTPUT_SYMBOLS, function_flags, module_flags
from flopcalc.errors import InputError
from flopcalc.formula import OUTPUT_FLAGS
from flopcalc.gradient_sums import GradientSums
from flopcalc.measure import Count
from flopcalc.measure.core import ZERO
from flopcalc.registry import FormulaRegistry
from flopcalc.trace import Tracer, tensors_in


@dataclass
class CallBackward:
    """What one module call's autograd nodes executed (mutable, while the pass runs)."""

    flags: dict[str, int]
    count: Count = ZERO
    recompute: Count = ZERO
    uncounted: Counter[str] = field(default_factory=Counter)


class BackwardTracer(Tracer):
    """A :class:`Tracer` that also records which call created each autograd node, then runs the backward pass."""

    def __init__(self, model: nn.Module, registry: FormulaRegistry, symbolic: Any = None):
        if symbolic is not None:
            raise InputError("the backward pass needs concrete sizes; give numbers instead of names")
        super().__init__(model, registry)
        self.model = model
        self.phase = "forward"
        self.backward: list[CallBackward] = []
        self.stops: dict[int, set[Any]] = {}  # per call: the nodes of its inputs
        self.node_call: dict[Any, int] = {}
        self.leaves: dict[int, torch.Tensor] = {}
        self.node_stack: list[int] = []
        self.recompute_stack: list[tuple[int, set[Any]]] = []  # (call, its inputs' nodes) per open recompute
        self.recomputed: Counter[int] = Counter()
        self.reentrant = False
        self.recompute_node_call: dict[Any, int] = {}
        self.recompute_stops: dict[int, set[Any]] = {}
        self.handles: list[Any] = []
        self.sums = GradientSums()
        self.output_flags: dict[Any, list[tuple[int, int, str]]] = {}  # per node: (call, output_nr, flag)

    def pre_hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.phase == "backward":  # activation checkpointing re-runs this module's forward
            index = self._recomputed_call(module)
            tensors = tensors_in((args, kwargs))
            self.recompute_stack.append((index, {t.grad_fn for t in tensors if t.grad_fn is not None}))
            if self.reentrant and torch.is_grad_enabled():  # the reentrant forward ran without grad
                self.backward[index].flags = self._flags(module, tensors, self.calls[index].bound)
            return
        super().pre_hook(module, args, kwargs)
        tensors = tensors_in((args, kwargs))
        self.stops[len(self.calls) - 1] = {t.grad_fn for t in tensors if t.grad_fn is not None}
        self.backward.append(CallBackward(self._flags(module, tensors, self.calls[-1].bound)))

    def post_hook(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        if self.phase == "backward":
            return  # a recompute ends in _recompute_done
        index = self.stack[-1]
        super().post_hook(module, args, kwargs, output)
        self._claim_nodes(index, output, self.stops[index], self.node_call, self.stops)
        self._watch_outputs(index, output)

    def _watch_outputs(self, index: int, output: Any) -> None:
        """For a formula with output flags (``g_y``, ``g_hn``, ``g_cn``, ``g_aw``): each is 0 until the backward
        pass delivers a gradient to that floating-point output of the call."""
        bound = self.calls[index].bound
        named = OUTPUT_SYMBOLS & bound.formula.gradient_symbols if bound is not None else set()
        if not named:
            return
        floating = [t for t in tensors_in(output) if t.is_floating_point() or t.is_complex()]
        for symbols, tensor in zip(OUTPUT_FLAGS, floating):
            for symbol in (s for s in symbols if s in named):
                self.backward[index].flags[symbol.name] = 0
                if tensor.grad_fn is not None:
                    self.output_flags.setdefault(tensor.grad_fn, []).append((index, tensor.output_nr, symbol.name))

    def function_call(self, label: str, binder: Any, func: Any, args: tuple[Any, ...],
                      kwargs: Mapping[str, Any]) -> Any:
        """A functional call that becomes a row (``F.linear`` in a forward) claims its autograd nodes as a
        module call does."""
        index = len(self.calls)
        tensors = tensors_in((args, kwargs))
        # The inputs' nodes before the call: an in-place call (F.relu(x, inplace=True)) replaces them.
        stops = {t.grad_fn for t in tensors if t.grad_fn is not None}
        output = super().function_call(label, binder, func, args, kwargs)
        if len(self.calls) > index:  # a row of its own (it runs no module, so it is the last call)
            self.stops[index] = stops
            self.backward.append(CallBackward(function_flags(tensors, self.calls[index].bound)))
            self._claim_nodes(index, output, self.stops[index], self.node_call, self.stops)
        return output

    def _recompute_done(self, module: nn.Module, args: Any, output: Any) -> None:
        """Called when a module's forward returns *or raises*: non-reentrant checkpointing stops a recompute
        with an exception once it has the tensors it needs."""
        if self.phase != "backward" or not self.recompute_stack:
            return
        index, stops = self.recompute_stack.pop()
        if output is not None and self.reentrant and torch.is_grad_enabled():
            # Reentrant checkpointing runs the backward of this recomputed graph next: hook its nodes too.
            self.recompute_stops[index] = stops
            for node in self._claim_nodes(index, output, stops, self.recompute_node_call, self.recompute_stops):
                self._hook(node, index)

    @contextlib.contextmanager
    def hooks(self, model: nn.Module) -> Iterator[None]:
        modules = {id(m): m for m in model.modules()}.values()
        handles = [m.register_forward_hook(self._recompute_done, always_call=True) for m in modules]
        try:
            with super().hooks(model):
                yield
        finally:
            for handle in handles:
                handle.remove()

    def _flags(self, module: nn.Module, tensors: list[torch.Tensor], bound: Any) -> dict[str, int]:
        """The call's backward flags (:func:`flopcalc.backward_flags.module_flags`)."""
        return module_flags(module, tensors, bound, recurse=self.registry.binder_for(module) is not None)

    def _claim_nodes(
        self, index: int, output: Any, stops: set[Any], owners: dict[Any, int], stops_of: Mapping[int, set[Any]]
    ) -> list[Any]:
        """Give call ``index`` every node reachable from its outputs that is neither its inputs' (``stops``) nor
        in ``owners``; returns the nodes it claimed.

        A node claimed by one of its inner calls is not the end of the walk: the walk resumes from that
        call's inputs (``stops_of[call]``), so nodes this call created between two inner calls are found too.
        """
        claimed = []
        pending = [t.grad_fn for t in tensors_in(output) if t.grad_fn is not None]
        resumed: set[int] = set()
        while pending:
            node = pending.pop()
            if node is None or node in stops:
                continue
            owner = owners.get(node)
            if owner is not None:
                if owner > index and owner not in resumed and owner in stops_of:  # an inner call (in call order)
                    resumed.add(owner)
                    pending.extend(stops_of[owner])
                continue
            variable = getattr(node, "variable", None)
            if isinstance(variable, torch.Tensor):  # AccumulateGrad: a leaf the gradients are taken for
                if self.phase == "forward":
                    self.leaves[id(variable)] = variable
                continue
            owners[node] = index
            claimed.append(node)
            for edge in node.next_functions:
                if edge[0] is not None and self.phase == "forward":
                    self.sums.record_use(edge, index, node)
                pending.append(edge[0])
        return claimed

    def _recomputed_call(self, module: nn.Module) -> int:
        """The forward call a checkpoint recompute repeats: the module's calls in order, cycling."""
        calls = [i for i, call in enumerate(self.calls) if call.module is module and call.function is None]
        occurrence = self.recomputed[id(module)]
        self.recomputed[id(module)] += 1
        return calls[occurrence % len(calls)] if calls else 0

    def sink(self, func: Any, count: Count | None) -> None:
        if self.phase == "forward":
            super().sink(func, count)
            return
        if self.recompute_stack:
            target = self.backward[self.recompute_stack[-1][0]]
            if count is not None:
                target.recompute = target.recompute + count
        else:
            # Between nodes the engine sums the gradients of a tensor used more than once.
            index = self.node_stack[-1] if self.node_stack else self.sums.target(count)
            if index is None:
                return  # a sum the conventions do not count
            target = self.backward[index]
            if count is not None:
                target.count = target.count + count
        if count is None:
            target.uncounted[str(func)] += 1

    def _hook(self, node: Any, index: int) -> None:
        self.handles.append(node.register_prehook(self._entering(index, self.output_flags.get(node, ()))))
        self.handles.append(node.register_hook(self._leaving(node)))

    def _entering(self, index: int, outputs: Any) -> Any:
        def hook(grad_outputs: Any) -> None:
            self.node_stack.append(index)
            self.sums.node_entered()
            for call, output_nr, name in outputs:  # a watched output of a call receives its gradient
                if grad_outputs[output_nr] is not None:
                    self.backward[call].flags[name] = 1

        return hook

    def _leaving(self, node: Any) -> Any:
        def hook(grad_inputs: Any, grad_outputs: Any) -> None:
            self.node_stack.pop()
            self.sums.after(node)

        return hook

    def run_backward(self, output: Any) -> None:
        """Differentiate the sum of every floating-point output that needs a gradient, with respect to every
        leaf of the graph (the trainable parameters, and any input that requires a gradient)."""
        outputs = [t for t in tensors_in(output) if t.requires_grad]
        if not outputs or not self.leaves:
            raise InputError("no output depends on a trainable parameter: there is no backward pass to count")
        grad_outputs = [torch.ones_like(t) for t in outputs]
        leaves = list(self.leaves.values())
        saved_grads = [(p, p.grad) for p in {id(t): t for t in [*self.model.parameters(), *leaves]}.values()]
        # Reentrant checkpointing refuses autograd.grad; only then are gradients accumulated (and undone).
        self.reentrant = any(type(node).__name__ == "CheckpointFunctionBackward" for node in self.node_call)
        try:
            for node, index in self.node_call.items():
                self._hook(node, index)
            self.phase = "backward"
            if self.reentrant:
                torch.autograd.backward(outputs, grad_outputs)
            else:
                torch.autograd.grad(outputs, leaves, grad_outputs, allow_unused=True)
        finally:
            self.phase = "done"
            for handle in self.handles:
                handle.remove()
            for param, grad in saved_grads:
                param.grad = grad
