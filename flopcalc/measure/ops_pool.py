"""Pooling and upsampling ops: window reductions and interpolation, counted from the op's arguments and shapes.

Conventions (docs/conventions.md): reducing a window of ``taps`` values is ``taps − 1`` comparisons (max) or
``taps − 1`` adds and 1 division (average) per output. Fixed-kernel pools count the whole kernel window,
padding and ceil-mode overhang included; adaptive pools count their exact windows
``[floor(i·I/O), ceil((i+1)·I/O))``. Interpolation is a weighted sum of ``2^n`` (n-linear) or ``4^2``
(bicubic) neighbours per output element: that many muls and one add fewer; nearest modes are copies.
An output size 1 adaptive average pool reaches the dispatcher as ``mean`` (counted in ops_elementwise).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.fx.experimental.symbolic_shapes import statically_known_true

from flopcalc.formula import Number, OpKind
from flopcalc.measure.core import Count, OpRule, numel, op_rule, per_element, shape_of, zero_cost

aten = torch.ops.aten


def _values(out: Any) -> Any:
    """The pooled values of an op that may also return indices."""
    return out[0] if isinstance(out, tuple) else out


def _kernel_volume(kernel: Sequence[int] | int, ndim: int) -> int:
    """Taps of a kernel given as ``ndim`` sizes or one size for every dimension."""
    sizes = [kernel] if isinstance(kernel, int) else list(kernel)
    return math.prod(sizes * ndim if len(sizes) == 1 else sizes)


def _reduction(reduction: str, results: int, merges: int) -> Count:
    if reduction == "max":
        return Count(0, {OpKind.COMPARE.value: merges})
    return Count(0, {OpKind.ADD.value: merges, OpKind.DIV.value: results})


def _pool_rule(ndim: int, reduction: str) -> OpRule:
    """``max_poolNd(self, kernel_size, …)`` / ``avg_poolNd(self, kernel_size, …)``: prod(kernel) taps per output."""

    def count(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
        results = numel(shape_of(_values(out)))
        kernel = args[1] if len(args) > 1 else kwargs["kernel_size"]
        return _reduction(reduction, results, results * (_kernel_volume(kernel, ndim) - 1))

    return count


def adaptive_window_total(size: Number, out: Number) -> Number:
    """Window lengths of an adaptive pool along one dimension, summed over its ``out`` outputs.

    A symbolic ``out`` (``output_size`` ``None``: the input size kept) has windows of 1; looping over it would
    pin the size to its hint.
    """
    if isinstance(out, torch.SymInt) and statically_known_true(out == size):
        return size
    return sum(-(-(j + 1) * size // out) - (j * size // out) for j in range(out))


def _adaptive_rule(ndim: int, reduction: str) -> OpRule:
    """Windows are products over dimensions, so the taps per (batch, channel) are the product of the totals."""

    def count(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
        in_shape, out_shape = shape_of(args[0]), shape_of(_values(out))
        spatial, planes = numel(out_shape[-ndim:]), numel(out_shape[:-ndim])
        taps = math.prod(adaptive_window_total(i, o) for i, o in zip(in_shape[-ndim:], out_shape[-ndim:]))
        return _reduction(reduction, planes * spatial, planes * (taps - spatial))

    return count


def _register(rule: Callable[[int, str], OpRule], reduction: str, ops: Mapping[int, Sequence[Any]]) -> None:
    for ndim, packets in ops.items():
        op_rule(*packets)(rule(ndim, reduction))


_register(_pool_rule, "max", {
    1: [aten.max_pool1d, aten.max_pool1d_with_indices], 2: [aten.max_pool2d, aten.max_pool2d_with_indices],
    3: [aten.max_pool3d, aten.max_pool3d_with_indices],
})
_register(_pool_rule, "avg", {1: [aten.avg_pool1d], 2: [aten.avg_pool2d], 3: [aten.avg_pool3d]})
_register(_adaptive_rule, "max", {
    1: [aten.adaptive_max_pool1d], 2: [aten.adaptive_max_pool2d], 3: [aten.adaptive_max_pool3d],
})
_register(_adaptive_rule, "avg", {
    1: [aten.adaptive_avg_pool1d], 2: [aten.adaptive_avg_pool2d, aten._adaptive_avg_pool2d],
    3: [aten.adaptive_avg_pool3d, aten._adaptive_avg_pool3d],
})


def _interpolation_rule(taps: int) -> OpRule:
    def count(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
        return per_element(out, mul=taps, add=taps - 1)

    return count


op_rule(aten.upsample_linear1d)(_interpolation_rule(2))
op_rule(aten.upsample_bilinear2d)(_interpolation_rule(2 * 2))
op_rule(aten.upsample_trilinear3d)(_interpolation_rule(2 * 2 * 2))
op_rule(aten.upsample_bicubic2d)(_interpolation_rule(4 * 4))

zero_cost(
    "nearest-neighbour upsampling copies one input element per output (index arithmetic only)",
    [aten.upsample_nearest1d, aten.upsample_nearest2d, aten.upsample_nearest3d, aten._upsample_nearest_exact1d,
     aten._upsample_nearest_exact2d, aten._upsample_nearest_exact3d],
)
