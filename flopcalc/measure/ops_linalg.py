"""Matrix products and convolutions: the ops that carry multiply-accumulates.

``matmul``, ``@``, ``einsum`` and ``linear`` reach the dispatcher as ``mm``/``addmm``/``bmm``/``baddbmm`` (plus
views), so these rules cover them.
"""

from __future__ import annotations

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
