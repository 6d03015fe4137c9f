"""Elementwise arithmetic, activations and reductions: per-element costs by kind (docs/conventions.md).

Costs are per element of the (broadcast) result unless a rule says otherwise. A reduction of ``n`` terms is
``n − 1`` operations per output element.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from flopcalc.formula import OpKind
from flopcalc.measure.core import Count, numel, op_rule, per_element, shape_of

aten = torch.ops.aten

_PER_ELEMENT: dict[str, dict[str, int]] = {
    # arithmetic
    "sub": {"add": 1}, "rsub": {"add": 1}, "neg": {"add": 1},
    "mul": {"mul": 1}, "div": {"div": 1}, "reciprocal": {"div": 1},
    "exp": {"exp": 1}, "log": {"exp": 1}, "log1p": {"exp": 1}, "expm1": {"exp": 1}, "tanh": {"exp": 1},
    "erf": {"exp": 1}, "sin": {"exp": 1}, "cos": {"exp": 1},
    "sqrt": {"sqrt": 1}, "rsqrt": {"sqrt": 1, "div": 1},
    "abs": {"compare": 1}, "sgn": {"compare": 1}, "sign": {"compare": 1}, "maximum": {"compare": 1}, "minimum": {"compare": 1},
    # activations: the cost of their mathematical definition
    "relu": {"compare": 1},
    "leaky_relu": {"compare": 1, "mul": 1},
    "_prelu_kernel": {"compare": 1, "mul": 1},
    "rrelu_with_noise": {"compare": 1, "mul": 1},  # eval: leaky_relu with slope (lower + upper) / 2
    "threshold": {"compare": 1},  # x if x > threshold else value
    "hardshrink": {"compare": 2},  # 0 if -λ ≤ x ≤ λ else x
    "softshrink": {"compare": 2, "add": 1},  # x - λ if x > λ, x + λ if x < -λ, else 0
    "sigmoid": {"exp": 1, "add": 1, "div": 1},  # 1 / (1 + e^-x)
    "silu": {"exp": 1, "add": 1, "div": 1, "mul": 1},  # x · sigmoid(x)
    "hardsigmoid": {"add": 1, "compare": 2, "div": 1},  # clamp(x + 3, 0, 6) / 6
    "hardswish": {"add": 1, "compare": 2, "div": 1, "mul": 1},  # x · hardsigmoid(x)
    "mish": {"exp": 3, "add": 1, "mul": 1},  # x · tanh(log(1 + e^x))
    "glu": {"exp": 1, "add": 1, "div": 1, "mul": 1},  # a · sigmoid(b), per output element
}


def _elementwise(name: str) -> None:
    costs = _PER_ELEMENT[name]
    packets = [getattr(aten, name)]
    if hasattr(aten, name + "_"):
        packets.append(getattr(aten, name + "_"))
    op_rule(*packets)(lambda args, kwargs, out: per_element(out, **costs))


for _name in _PER_ELEMENT:
    _elementwise(_name)


@op_rule(aten.add, aten.add_)
def count_add(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """One add per element; a 1-d operand added along the last dimension of a ≥2-d result is a bias add.

    ``F.linear`` on a non-contiguous input runs ``mm`` then adds its bias as a broadcast ``add`` instead of
    folding it into ``addmm``; both must read as bias adds, or the count would depend on memory layout.
    """
    out_shape = shape_of(out)
    for operand in args[:2]:
        shape = shape_of(operand)
        if len(shape) == 1 and len(out_shape) >= 2 and shape[0] == out_shape[-1]:
            return per_element(out, bias_add=1)
    return per_element(out, add=1)


@op_rule(aten.hardtanh, aten.hardtanh_)
def count_hardtanh(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """ReLU6 and Hardtanh: a comparison with each bound."""
    return per_element(out, compare=2)


@op_rule(aten.clamp, aten.clamp_, aten.clamp_min, aten.clamp_min_, aten.clamp_max, aten.clamp_max_)
def count_clamp(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    bounds = [a for a in list(args[1:3]) + [kwargs.get("min"), kwargs.get("max")] if a is not None]
    return per_element(out, compare=len(bounds))


@op_rule(aten.gelu, aten.gelu_)
def count_gelu(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """erf form ``0.5·x·(1 + erf(x/√2))``; tanh form ``0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))``."""
    if kwargs.get("approximate", args[1] if len(args) > 1 else "none") == "tanh":
        return per_element(out, exp=1, mul=6, add=2)
    return per_element(out, exp=1, mul=3, add=1)


@op_rule(aten.elu, aten.elu_)
def count_elu(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``scale · (x if x > 0 else α·(e^{x·input_scale} − 1))``: SELU and CELU are ELU with scales."""
    scale = args[2] if len(args) > 2 else kwargs.get("scale", 1)
    input_scale = args[3] if len(args) > 3 else kwargs.get("input_scale", 1)
    return per_element(out, compare=1, exp=1, add=1, mul=1 + (scale != 1) + (input_scale != 1))


@op_rule(aten.celu, aten.celu_)
def count_celu(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``max(0, x) + min(0, α·(e^{x/α} − 1))``: ELU with ``input_scale = 1/α``, so one more mul when α ≠ 1."""
    alpha = args[1] if len(args) > 1 else kwargs.get("alpha", 1)
    return per_element(out, compare=1, exp=1, add=1, mul=1 + (alpha != 1))


@op_rule(aten.softplus)
def count_softplus(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``log(1 + e^{βx}) / β``: exp, log and one add; β ≠ 1 adds the multiply and the divide.

    The kernel's switch to ``x`` above ``threshold`` is numerical stability, not part of the definition.
    """
    beta = args[1] if len(args) > 1 else kwargs.get("beta", 1)
    scaled = int(beta != 1)
    return per_element(out, exp=2, add=1, mul=scaled, div=scaled)


@op_rule(aten.log_sigmoid_forward)
def count_log_sigmoid(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``−log(1 + e^{−x})``: exp, log and one add; the op also returns a buffer for backward (not counted)."""
    return per_element(out[0], exp=2, add=1)


@op_rule(aten.eq, aten.ne, aten.lt, aten.le, aten.gt, aten.ge, aten.eq_, aten.ne_, aten.lt_, aten.le_, aten.gt_,
         aten.ge_, aten.bitwise_and, aten.bitwise_or, aten.bitwise_and_, aten.bitwise_or_, aten.logical_and,
         aten.logical_or)
def count_comparison(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """Elementwise comparisons and the logical and/or that combine them (masks built in forward, e.g. Swin's
    shifted windows, transformers' causal and padding masks): one compare each."""
    return per_element(out, compare=1)


@op_rule(aten.linalg_vector_norm)
def count_vector_norm(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """Per reduced group of n: the 2-norm squares (n mul), sums (n − 1 add) and takes a root (1 sqrt); the
    1-norm takes n absolute values (compare) and sums; the ∞-norm n abs and n − 1 compares; any other p
    raises each |x| to p (compare, 2 exp, 1 mul), sums, and takes the p-th root (2 exp, 1 mul)."""
    order = args[1] if len(args) > 1 else kwargs.get("ord", 2)
    terms, outputs = _reduced(args, out)
    if order == 2:
        per_group = {"mul": terms, "add": terms - 1, "sqrt": 1}
    elif order == 1:
        per_group = {"compare": terms, "add": terms - 1}
    elif order == float("inf"):
        per_group = {"compare": 2 * terms - 1}
    else:
        per_group = {"compare": terms, "exp": 2 * terms + 2, "mul": terms + 1, "add": terms - 1}
    return Count(0, {kind: n * outputs for kind, n in per_group.items()})


@op_rule(aten.pow)
def count_pow(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """x² is one multiply, xⁿ is n − 1; √x is a square root; any other power, and a tensor exponent (``x ** x``,
    ``2 ** x``), is ``exp(b·log a)``."""
    exponent = args[1]
    if isinstance(exponent, int | float) and not isinstance(exponent, bool):
        if float(exponent).is_integer() and 1 <= exponent <= 8:
            return per_element(out, mul=int(exponent) - 1)
        if exponent == 0.5:
            return per_element(out, sqrt=1)
    return per_element(out, exp=2, mul=1)


def _reduced(args: Sequence[Any], out: Any) -> tuple[int, int]:
    """(terms per output element, output elements) of a reduction."""
    outputs = numel(shape_of(out))
    return numel(shape_of(args[0])) // max(outputs, 1), outputs


@op_rule(aten.sum)
def count_sum(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    terms, outputs = _reduced(args, out)
    return Count(0, {OpKind.ADD.value: (terms - 1) * outputs})


@op_rule(aten.mean)
def count_mean(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    terms, outputs = _reduced(args, out)
    return Count(0, {OpKind.ADD.value: (terms - 1) * outputs, OpKind.DIV.value: outputs})


@op_rule(aten.amax, aten.amin, aten.max, aten.min)
def count_extremum(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    values = out[0] if isinstance(out, tuple) else out
    terms, outputs = _reduced(args, values)
    return Count(0, {OpKind.COMPARE.value: (terms - 1) * outputs})


@op_rule(aten.topk)
def count_topk(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """The k largest (or smallest) of each row of n as k successive extrema over what remains:
    (n − 1) + (n − 2) + … + (n − k) = k·n − k·(k + 1)/2 compares per row (MoE routers pick experts so)."""
    shape = shape_of(args[0])
    k = args[1] if len(args) > 1 else kwargs["k"]
    dim = args[2] if len(args) > 2 else kwargs.get("dim", -1)
    n = shape[dim % len(shape)] if shape else 1
    rows = numel(shape) // n if shape else 1
    return Count(0, {OpKind.COMPARE.value: (k * n - k * (k + 1) // 2) * rows})


def _softmax_rows(args: Sequence[Any]) -> tuple[int, int]:
    """(row length, number of rows) of a softmax over ``dim``."""
    shape = shape_of(args[0])
    if not shape:
        return 1, 1
    d = shape[args[1] % len(shape)]
    return d, numel(shape) // d


@op_rule(aten._softmax)
def count_softmax(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """Per row of length d: d exps, d − 1 adds for the sum, d divisions."""
    d, rows = _softmax_rows(args)
    return Count(0, {OpKind.EXP.value: d * rows, OpKind.ADD.value: (d - 1) * rows, OpKind.DIV.value: d * rows})


@op_rule(aten._log_softmax)
def count_log_softmax(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """Per row: d exps and d − 1 adds for the sum, one log, d subtractions."""
    d, rows = _softmax_rows(args)
    return Count(0, {OpKind.EXP.value: (d + 1) * rows, OpKind.ADD.value: (2 * d - 1) * rows})
