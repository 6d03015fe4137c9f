"""Indexed writes that do arithmetic: scatter with a reduction, ``scatter_add``, ``scatter_reduce``,
``index_add`` and ``index_put(accumulate=True)``.

Each combines one incoming value with the value already at its destination: one operation of the reduction's
kind per incoming element (``add`` for sums, ``mul`` for products, ``compare`` for max/min). A mean reduction
adds one division per element of the result. Plain scatter and ``index_put`` without accumulation only move data
(declared free in :mod:`ops_data` when they write no arithmetic).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from flopcalc.formula import Number, OpKind
from flopcalc.measure.core import Count, numel, op_rule, shape_of

aten = torch.ops.aten

_KIND = {
    "add": OpKind.ADD, "sum": OpKind.ADD, "mean": OpKind.ADD,
    "multiply": OpKind.MUL, "prod": OpKind.MUL,
    "amax": OpKind.COMPARE, "amin": OpKind.COMPARE,
}


def _combine(reduce: str | None, incoming: Number, out: Any) -> Count:
    if reduce is None:
        return Count()
    ops = {_KIND[reduce].value: incoming}
    if reduce == "mean":
        ops[OpKind.DIV.value] = numel(shape_of(out))
    return Count(0, ops)


@op_rule(aten.scatter, aten.scatter_)
def count_scatter(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``scatter(self, dim, index, src|value, reduce=None)``: one op per index element with ``reduce``."""
    reduce = args[4] if len(args) > 4 else kwargs.get("reduce")
    return _combine(reduce, numel(shape_of(args[2])), out)


@op_rule(aten.scatter_add, aten.scatter_add_)
def count_scatter_add(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    return _combine("sum", numel(shape_of(args[2])), out)


@op_rule(aten.scatter_reduce, aten.scatter_reduce_)
def count_scatter_reduce(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``scatter_reduce(self, dim, index, src, reduce, include_self=True)``."""
    reduce = args[4] if len(args) > 4 else kwargs["reduce"]
    return _combine(reduce, numel(shape_of(args[2])), out)


@op_rule(aten.index_add, aten.index_add_)
def count_index_add(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``self.index_add(dim, index, source, alpha=1)``: one add per source element, one mul more if alpha ≠ 1."""
    alpha = args[4] if len(args) > 4 else kwargs.get("alpha", 1)
    incoming = numel(shape_of(args[3]))
    return Count(0, {OpKind.ADD.value: incoming, OpKind.MUL.value: incoming if alpha != 1 else 0})


@op_rule(aten.index_put, aten.index_put_)
def count_index_put(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``self.index_put(indices, values, accumulate=False)``: with accumulation one add per indexed element,
    i.e. (positions the index tensors select) × (elements of the dimensions they leave whole).

    A boolean mask selects as many positions as it has true values, which only the real data knows.
    """
    accumulate = args[3] if len(args) > 3 else kwargs.get("accumulate", False)
    if not accumulate:
        return Count()
    self_shape = shape_of(args[0])
    positions: Number = 1
    whole: list[Number] = []
    index_shapes = []
    dim = 0
    for index in args[1]:
        if index is None:
            whole.append(self_shape[dim])
            dim += 1
        elif index.dtype in (torch.bool, torch.uint8):
            positions *= int(index.count_nonzero())
            dim += index.dim()
        else:
            index_shapes.append(shape_of(index))
            dim += 1
    if index_shapes:
        positions *= numel(torch.broadcast_shapes(*index_shapes))
    whole.extend(self_shape[dim:])
    return Count(0, {OpKind.ADD.value: positions * numel(whole)})
