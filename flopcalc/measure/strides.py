"""torch's stride rules over size and stride *expressions*, answered statically.

The rules of torch's fake kernels for symbolic sizes (``torch._prims_common``: contiguity, the elementwise
output's dimension order, broadcasting) ask questions of the sizes: is this size 1, is this stride 0, is this
stride at least that one. torch answers each through ``guard_or_false`` and the like, which try the ShapeEnv's
static evaluation first and, where it cannot decide, evaluate the hint and add a guard. :class:`Truths` asks
the same static evaluation, memoised per expression, and raises :class:`Undecided` where torch would guard, so
that a derivation (:mod:`flopcalc.measure.derive`) gives up there and the op runs its kernel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import sympy as sp
import torch
from torch._prims_common import make_contiguous_strides_for
from torch.utils._sympy import functions as torch_sympy


class Undecided(Exception):
    """The rule does not apply, or a question about the sizes is not statically known: run the kernel."""


def expr_of(value: Any) -> Any:
    return value.node.expr if type(value) is torch.SymInt else value


class Truths:
    """Static answers about one ShapeEnv's sizes: what ``guard_or_false`` gets without adding a guard."""

    def __init__(self, shape_env: Any) -> None:
        self.shape_env = shape_env
        self._known: dict[Any, bool] = {}
        self._equal: dict[tuple[Any, Any], bool] = {}

    def holds(self, relation: Any) -> bool:
        """``relation`` (a Python or sympy truth) when it is statically known; :class:`Undecided` else."""
        if type(relation) is bool:
            return relation
        if relation is sp.true or relation is sp.false:
            return bool(relation)
        known = self._known.get(relation)
        if known is None:
            answer = self.shape_env._maybe_evaluate_static(relation)
            if answer is None:
                raise Undecided
            known = self._known[relation] = bool(answer)
        return known

    def eq(self, a: Any, b: Any) -> bool:
        if type(a) is int and type(b) is int:
            return a == b
        if a is b:
            return True
        known = self._equal.get((a, b))
        if known is None:
            known = self._equal[(a, b)] = self.holds(sp.Eq(a, b))
        return known

    def divides(self, divisor: Any, value: Any) -> bool:
        """``value % divisor == 0``."""
        if type(value) is int and type(divisor) is int:
            return value % divisor == 0
        return self.holds(sp.Eq(torch_sympy.PythonMod(value, divisor), 0))

    def ge(self, a: Any, b: Any) -> bool:
        if type(a) is int and type(b) is int:
            return a >= b
        return self.holds(sp.Ge(a, b))


def is_contiguous(truths: Truths, sizes: Sequence[Any], strides: Sequence[Any]) -> bool:
    """torch's ``is_contiguous`` (``check_contiguous_sizes_strides``) over size and stride expressions."""
    numel = math.prod(sizes)
    if truths.holds(numel < 2 if type(numel) is int else sp.Lt(numel, 2)):
        return True
    expected: Any = 1
    for size, stride in zip(reversed(sizes), reversed(strides)):
        if truths.eq(size, 1):
            continue
        if not truths.eq(stride, expected):
            return False
        expected = expected * size
    return True


def is_channels_last(truths: Truths, sizes: Sequence[Any], strides: Sequence[Any]) -> bool:
    if len(sizes) != 4:
        if len(sizes) == 5:
            raise Undecided  # channels_last_3d: not needed so far
        return False
    expected: Any = 1
    for index in (1, 3, 2, 0):
        if truths.eq(sizes[index], 1):
            continue
        if not truths.eq(strides[index], expected):
            return False
        expected = expected * sizes[index]
    return True


def physical_order(truths: Truths, shape: Sequence[Any], strides: Sequence[Sequence[Any]]) -> list[int]:
    """torch's ``compute_elementwise_output_logical_to_physical_perm`` for tensors already broadcast to
    ``shape`` (``strides``: each tensor's)."""
    ndim = len(shape)
    if ndim == 0:
        return []
    if ndim == 1:
        return [0]
    contiguous = all(is_contiguous(truths, shape, s) for s in strides)
    channels_last = all(is_channels_last(truths, shape, s) for s in strides)
    if contiguous and not channels_last:
        return list(range(ndim))
    if channels_last and not contiguous:
        return [0, *range(2, ndim), 1]

    def ge(a: Any, b: Any) -> bool:
        if truths.eq(b, 0):
            return True
        if truths.eq(a, 0):
            return False
        return truths.ge(a, b) or truths.divides(b, a)

    def should_swap(a: int, b: int) -> int:
        for tensor_strides in strides:
            stride_a, stride_b = tensor_strides[a], tensor_strides[b]
            if truths.eq(stride_a, 0) or truths.eq(stride_b, 0):
                continue
            if truths.eq(stride_a, stride_b):
                if ge(shape[b], shape[a]):
                    continue
                return 1
            if ge(stride_b, stride_a):
                return -1
            if ge(stride_a, stride_b):
                return 1
        return 0

    perm = list(reversed(range(ndim)))
    for i in range(1, ndim):
        dim1 = i
        for dim0 in reversed(range(i)):
            comparison = should_swap(perm[dim0], perm[dim1])
            if comparison > 0:
                perm[dim0], perm[dim1] = perm[dim1], perm[dim0]
                dim1 = dim0
            elif comparison < 0:
                break
    return list(reversed(perm))


def strides_in_order(sizes: Sequence[Any], order: Sequence[int]) -> tuple[Any, ...]:
    """Contiguous strides of ``sizes`` laid out in ``order`` (outermost first), as torch computes them."""
    physical = make_contiguous_strides_for([sizes[i] for i in order])
    strides: list[Any] = [0] * len(sizes)
    for position, dim in enumerate(order):
        strides[dim] = physical[position]
    return tuple(strides)


def is_dense(truths: Truths, sizes: Sequence[Any], strides: Sequence[Any]) -> bool:
    """Non-overlapping and dense: some permutation of the dimensions is contiguous."""
    if len(sizes) == 1:
        return truths.eq(strides[0], 1)
    kept = [d for d in range(len(sizes)) if not truths.eq(sizes[d], 1)]
    expected: Any = 1
    for dim in sorted(kept, key=lambda d: _Sortable(truths, strides[d])):
        if not truths.eq(strides[dim], expected):
            return False
        expected = expected * sizes[dim]
    return True


class _Sortable:
    """A stride ordered by static comparison."""

    __slots__ = ("truths", "value")

    def __init__(self, truths: Truths, value: Any) -> None:
        self.truths, self.value = truths, value

    def __lt__(self, other: _Sortable) -> bool:
        return not self.truths.ge(self.value, other.value)


def broadcast(truths: Truths, shapes: Sequence[Sequence[Any]], sizes: Sequence[Sequence[Any]]) -> list[Any]:
    """The broadcast shape as the inputs' own size objects (``sizes``, ints or SymInts; ``shapes`` their
    expressions), where every non-1 size of a dimension is one expression and provably not 1."""
    ndim = max(len(shape) for shape in shapes)
    out: list[Any] = []
    for dim in range(ndim):
        chosen: Any = None
        chosen_expr: Any = None
        for shape, size in zip(shapes, sizes):
            offset = dim - (ndim - len(shape))
            if offset < 0:
                continue
            expr = shape[offset]
            if truths.eq(expr, 1):
                if chosen is None:
                    chosen, chosen_expr = size[offset], expr
                continue
            if chosen_expr is not None and not truths.eq(chosen_expr, 1):
                if expr != chosen_expr:
                    raise Undecided
                continue
            chosen, chosen_expr = size[offset], expr
        out.append(chosen)
    return out


def expanded_strides(truths: Truths, shape: Sequence[Any], out_shape: Sequence[Any],
                      strides: Sequence[Any]) -> tuple[Any, ...]:
    """A tensor's strides once expanded to ``out_shape``: 0 for new and broadcast dimensions."""
    lead = len(out_shape) - len(shape)
    expanded: list[Any] = [0] * lead
    for offset, (size, stride) in enumerate(zip(shape, strides)):
        target = out_shape[lead + offset]
        expanded.append(0 if truths.eq(size, 1) and not truths.eq(target, 1) else stride)
    return tuple(expanded)
