"""The gradient sums the autograd engine runs between nodes, and the call each is charged to.

A tensor used more than once gets the gradients of its uses added into one buffer by the engine, outside any
node. A call whose own nodes use it several times is charged those sums (RMSNorm's ``x`` feeds both its
square and its product with rstd); the sums that join the gradients of different calls (a residual
connection) go to the model's row. Two kinds of sum are not arithmetic by the conventions (docs/conventions.md,
"Gradient sums") and are not counted: the per-use gradients of a weight that one call transposes into several
products (a recurrent layer's weights at every step: one product over all the uses accumulates the same terms,
and its MACs count them), and the gradients of distinct elements one call ``select``-s from one tensor (they do
not overlap: assembling them is data movement, as ``unbind``'s backward is).
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

from flopcalc.measure import Count

Edge = tuple[Any, int]
"""A gradient edge of the autograd graph: ``(node, input_nr)``."""


class GradientSums:
    """Which call each of the engine's sums is charged to, from the uses recorded while the forward built the
    graph."""

    def __init__(self) -> None:
        self.uses: dict[Edge, list[int]] = {}  # per gradient edge: the call of each node consuming it
        self.consumers: dict[Edge, list[Any]] = {}  # per gradient edge: the nodes consuming it
        self.arrivals: Counter[Edge] = Counter()
        self.charges: dict[Edge, list[int | None]] = {}
        self.pending: deque[int | None] = deque()

    def record_use(self, edge: Edge, call: int, node: Any) -> None:
        """``node``, claimed by ``call``, consumes the gradient of ``edge``."""
        self.uses.setdefault(edge, []).append(call)
        self.consumers.setdefault(edge, []).append(node)

    def after(self, node: Any) -> None:
        """Queue the sums the engine runs after ``node``: it adds each output into the buffer of the edge it
        feeds, in edge order, and a buffer that already holds a gradient costs one sum. Of an edge's sums, a
        call whose own nodes use it n times is charged n − 1; the sums that join different calls' gradients go
        to the model's row (the order in which they happen does not change the totals); ``None``: a sum not
        counted (:meth:`_uncounted`)."""
        for edge in node.next_functions:
            users = self.uses.get(edge)
            if users is None:
                continue
            self.arrivals[edge] += 1
            if self.arrivals[edge] > 1:
                if edge not in self.charges:
                    calls = Counter(users)
                    charges: list[int | None] = [c for c, n in calls.items() for _ in range(n - 1)]
                    charges += [0] * (len(calls) - 1)
                    self.charges[edge] = [None] * len(charges) if self._uncounted(edge) else charges
                charges = self.charges[edge]
                self.pending.append(charges.pop() if charges else 0)

    def node_entered(self) -> None:
        """A node starts: the sums queued after the one before have all run."""
        self.pending.clear()

    def target(self, count: Count | None) -> int | None:
        """The call charged with an op run between nodes: a sum (an op that does arithmetic; fake tensors also
        ask for devices there) takes the next queued charge (``None``: not counted), anything else goes to the
        model's row."""
        if count is not None and (count.macs or count.ops) and self.pending:
            return self.pending.popleft()
        return 0

    def _uncounted(self, edge: Edge) -> bool:
        """Whether the engine's sums into ``edge`` are not counted: the per-use gradients of a tensor that one
        call transposes into several products (a recurrent layer's weights, step by step: their sum is the
        accumulation its products' MACs count), or the gradients of distinct elements that one call selects
        from one tensor along one dimension (they never overlap: the CPU LSTM takes its initial state layer by
        layer so, and MultiheadAttention Q, K and V from its packed projection, where ``unbind`` would be a
        free op)."""
        consumers, calls = self.consumers[edge], set(self.uses[edge])
        if len(calls) != 1:
            return False
        kinds = {type(node).__name__ for node in consumers}
        if kinds == {"TBackward0"}:
            return True
        if kinds == {"SelectBackward0"}:
            picked = [(node._saved_dim, node._saved_index) for node in consumers]
            indices = [index for _, index in picked]
            return (len({dim for dim, _ in picked}) == 1 and all(isinstance(i, int) and i >= 0 for i in indices)
                    and len(set(indices)) == len(indices))
        return False
