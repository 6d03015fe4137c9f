"""Lookup tables: embedding, embedding bags, max-norm renormalisation.

A lookup copies rows: no arithmetic. A bag of ``n`` rows is reduced as ``n − 1`` adds (sum, mean) or compares
(max) per output element; mean adds 1 div per output element; per-sample weights add 1 mul per looked-up
element. Bag sizes are data: from shapes alone the count assumes no bag is empty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from flopcalc.formula import Number, OpKind
from flopcalc.measure.core import Count, numel, op_rule, shape_of, zero_cost

aten = torch.ops.aten

ADD, MUL, DIV = OpKind.ADD.value, OpKind.MUL.value, OpKind.DIV.value
COMPARE, EXP, SQRT = OpKind.COMPARE.value, OpKind.EXP.value, OpKind.SQRT.value

zero_cost("embedding lookup: rows are copied from the table, no arithmetic", [aten.embedding])
zero_cost(
    "sparse tensor built from given indices and values, no arithmetic (a sparse Embedding's gradient: the output"
    " gradient's rows, one per lookup, unsummed until the tensor is coalesced)",
    [aten._sparse_coo_tensor_with_dims_and_tensors],
)

_BAG_MAX = 2  # `mode` argument of _embedding_bag: 0 sum, 1 mean, 2 max
_BAG_MEAN = 1


def _arg(args: Sequence[Any], kwargs: Mapping[str, Any], index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


@op_rule(aten.embedding_renorm_)
def count_embedding_renorm(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``max_norm``: each looked-up row is rescaled to norm ``max_norm`` where its p-norm exceeds it.

    Which indices are distinct and which rows exceed the bound is data, so every lookup is counted as a distinct
    row (at most the table's row count) that is rescaled. Per row of ``E`` elements: the 2-norm is ``E`` muls,
    ``E − 1`` adds and 1 sqrt; any other p-norm is ``|x|`` (1 compare), ``|x|^p = exp(p·log|x|)`` (2 exp, 1 mul)
    per element, ``E − 1`` adds and the root as another power (2 exp, 1 mul). The rescale is 1 compare with
    ``max_norm``, 1 add (the 1e-7 guard), 1 div and ``E`` muls.
    """
    rows_in_table, dim = shape_of(args[0])
    rows = min(numel(shape_of(args[1])), rows_in_table)
    ops: dict[str, Number] = {ADD: rows * (dim - 1) + rows, MUL: rows * dim, COMPARE: rows, DIV: rows}
    if float(args[3]) == 2.0:
        ops[MUL] += rows * dim
        ops[SQRT] = rows
    else:
        ops[COMPARE] += rows * dim
        ops[EXP] = rows * (2 * dim + 2)
        ops[MUL] += rows * (dim + 1)
    return Count(0, ops)


@op_rule(aten._embedding_bag, aten._embedding_bag_forward_only)
def count_embedding_bag(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(weight, indices, offsets, scale_grad_by_freq, mode, sparse, per_sample_weights, …)`` → ``(B, E)``."""
    bags, dim = shape_of(out[0])
    lookups = numel(shape_of(args[1]))
    terms = max(lookups - bags, 0) * dim  # n_b − 1 per bag and output element, summed over the bags
    mode = _arg(args, kwargs, 4, "mode", 0)
    ops: dict[str, Number] = {COMPARE: terms} if mode == _BAG_MAX else {ADD: terms}
    if mode == _BAG_MEAN:
        ops[DIV] = bags * dim
    if _arg(args, kwargs, 6, "per_sample_weights", None) is not None:
        ops[MUL] = lookups * dim
    return Count(0, ops)
