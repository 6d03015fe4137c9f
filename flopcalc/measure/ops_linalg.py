"""Matrix products and convolutions: the ops that carry multiply-accumulates.

``matmul``, ``@``, ``einsum`` and ``linear`` reach the dispatcher as ``mm``/``addmm``/``bmm``/``baddbmm`` (plus
views), so these rules cover them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from flopcalc.formula import OpKind
from flopcalc.measure.core import Count, numel, op_rule, shape_of

aten = torch.ops.aten


def _matmul_macs(a_shape: Sequence[int], b_shape: Sequence[int]) -> int:
    """(…, m, k) @ (…, k, n): one MAC per (…, m, n, k)."""
    *batch, m, k = a_shape
    n = b_shape[-1]
    return numel(batch) * m * k * n


@op_rule(aten.mm, aten.bmm)
def count_mm(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    return Count(_matmul_macs(shape_of(args[0]), shape_of(args[1])))


@op_rule(aten.addmm, aten.baddbmm)
def count_addmm(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``beta·self + alpha·(a @ b)``: the ``self`` term is a bias add per output element (``beta = 0`` skips it)."""
    beta = kwargs.get("beta", 1)
    bias_adds = numel(shape_of(out)) if beta != 0 else 0
    return Count(_matmul_macs(shape_of(args[1]), shape_of(args[2])), {OpKind.BIAS_ADD.value: bias_adds})


@op_rule(aten.linear)
def count_linear(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``F.linear`` reaches the dispatcher undecomposed under ``torch.inference_mode()``: ``x @ wᵀ`` plus a bias
    add per output element, as ``addmm`` counts it."""
    bias = args[2] if len(args) > 2 else kwargs.get("bias")
    weight_shape = shape_of(args[1])
    macs = numel(shape_of(args[0])) * (weight_shape[0] if len(weight_shape) == 2 else 1)
    bias_adds = numel(shape_of(out)) if bias is not None else 0
    return Count(macs, {OpKind.BIAS_ADD.value: bias_adds})


@op_rule(aten.dot, aten.vdot)
def count_dot(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    return Count(numel(shape_of(args[0])))


@op_rule(aten.mv)
def count_mv(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    return Count(numel(shape_of(args[0])))


@op_rule(aten.convolution, aten._convolution)
def count_convolution(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """Weight (C_out, C_in/G, *K) for a conv, (C_in, C_out/G, *K) for a transposed one.

    A conv does ``prod(weight)`` MACs per output position and batch item; a transposed conv does the same per
    *input* position, since it scatters each input through the kernel.
    """
    x_shape, w_shape, out_shape = shape_of(args[0]), shape_of(args[1]), shape_of(out)
    transposed = bool(args[6]) if len(args) > 6 else bool(kwargs.get("transposed", False))
    spatial = len(w_shape) - 2
    batch = x_shape[0] if len(x_shape) == spatial + 2 else 1
    positions = numel(x_shape[-spatial:]) if transposed else numel(out_shape[-spatial:])
    has_bias = len(args) > 2 and args[2] is not None
    bias_adds = numel(out_shape) if has_bias else 0
    return Count(batch * positions * numel(w_shape), {OpKind.BIAS_ADD.value: bias_adds})


def _expanded_dims(rank: int, expand: Sequence[int]) -> set[int]:
    """Dimensions of the full ``_trilinear`` index space that an operand carries (all but its unsqueezed ones)."""
    return set(range(rank)) - set(expand)


@op_rule(aten._trilinear)
def count_trilinear(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``Σ_sumdim i1·i2·i3`` (each operand unsqueezed at its ``expand`` dims), contracted as ``(i1·i2)·i3``.

    First ``i1`` with ``i2``, summing the ``sumdim`` dimensions that ``i3`` does not carry, then the result with
    ``i3`` over the remaining ``sumdim``. A product that feeds a sum is a MAC; one with nothing to sum is a mul.
    For ``nn.Bilinear`` (``i1 = x1``, ``i2`` the weight) this is ``(x1ᵀA_k)·x2``: ``N·C_out·C_in1·C_in2`` then
    ``N·C_out·C_in2`` MACs.
    """
    operands = args[:3]
    expands = [list(e) for e in args[3:6]]
    sumdim = set(args[6])
    rank = len(shape_of(operands[0])) + len(expands[0])
    sizes = [1] * rank
    for operand, expand in zip(operands, expands):
        carried = sorted(_expanded_dims(rank, expand))
        for dim, size in zip(carried, shape_of(operand)):
            sizes[dim] = max(sizes[dim], size)
    carried1, carried2, carried3 = (_expanded_dims(rank, e) for e in expands)
    first_space = carried1 | carried2
    first_summed = (sumdim & first_space) - carried3
    second_space = (first_space - first_summed) | carried3
    second_summed = sumdim - first_summed
    count = Count()
    for space, summed in ((first_space, first_summed), (second_space, second_summed)):
        work = math.prod(sizes[d] for d in space)
        count = count + (Count(work) if summed else Count(0, {OpKind.MUL.value: work}))
    return count
