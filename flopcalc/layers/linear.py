"""Fully connected layers and matrix products: nn.Linear and ``F.linear`` (any number of leading dimensions),
nn.Bilinear, and the product of two tensors (``torch.matmul``, ``@``, ``mm``, ``bmm``, ``addmm``, ``baddbmm``,
``einsum`` contracting two operands).

Symbols: ``N`` rows, the product of all leading dimensions of the input (``N_1, N_2, …`` when there are
several: the formulas keep ``N``, the output shape has the input's rank); ``C_in``/``C_out`` features;
``C_in1``, ``C_in2`` the features of Bilinear's two inputs; ``B`` 1 if the layer has a bias. A matrix product
``(…, M, K)·(…, K, P)`` has ``N`` the product of the (broadcast) batch dimensions, and ``B`` 1 when a third
tensor is added to the product (``addmm``, ``baddbmm`` with ``beta ≠ 0``).

Conventions (docs/conventions.md, "Linear"): Linear is ``N·C_in·C_out`` MACs and ``N·C_out`` bias adds.
Backward (docs/conventions.md, "Backward"): grad-input ``dX = dY·W`` and grad-weight ``dW = dYᵀ·X`` each cost
the forward's ``N·C_in·C_out`` MACs, the bias gradient sums ``dY`` over the rows: ``(N − 1)·C_out`` adds.
Bilinear computes ``y_k = x1ᵀA_k x2 + b_k`` as ``(x1ᵀA_k)·x2``: ``C_in1·C_in2`` MACs for the row vector
``x1ᵀA_k``, then ``C_in2`` for its dot product with ``x2``; its gradients are contracted in the same order
(flags ``g_x1``, ``g_x2`` for each input). Its bias is a ``bias_add`` (torch adds it with a
broadcast ``aten.add``, which the operator counter reads as a bias add); for an unbatched input it is a plain
vector + vector ``add``, which no count can tell from any other (flag ``U``); ``S`` is 1 when both inputs are
one tensor. A matrix product is ``N·M·K·P`` MACs, the added tensor one ``bias_add`` per output element. Its
backward: ``dA = dY·Bᵀ`` and ``dB = Aᵀ·dY``, each the forward's MACs, plus ``(N − N_a)·M·K`` adds to sum the
gradient of an operand broadcast over the batch (``N_a`` its own batch elements; ``N`` where torch folds the
product into one ``mm``); ``addmm``/``baddbmm`` sum the added tensor's gradient back to its ``A_n`` elements.

>>> LINEAR.substituted("params", {"C_in": 9216, "C_out": 4096, "B": 1})
'9216·4096 + 4096 = 37,752,832'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

import sympy as sp

from flopcalc.formula import Gradient, LayerFormula, OpKind, dims, flag, g_b, g_W, g_x, g_x1, g_x2
from flopcalc.registry import REGISTRY, Bound, argument

if TYPE_CHECKING:
    from torch import nn

N, C_in, C_out, C_in1, C_in2 = dims("N C_in C_out C_in1 C_in2")
M, K, P, N_a, N_b, A_n = dims("M K P N_a N_b A_n")
B = flag("B")
g_x3 = flag("g_x3")
U = flag("U")
S = flag("S")


def numbered(prefix: str, count: int) -> tuple[sp.Symbol, ...]:
    """``prefix_1 … prefix_count`` as positive integer symbols (``N_1, N_2`` for the leading dims of an input)."""
    return tuple(sp.Symbol(f"{prefix}_{i}", integer=True, positive=True) for i in range(1, count + 1))


def split_size(formula: LayerFormula, size: sp.Symbol, parts: Sequence[sp.Symbol]) -> LayerFormula:
    """``formula`` with the output-shape entry ``size`` spelled out as the dimensions ``parts``.

    A layer that treats several dimensions as one count (Linear's rows ``N = N_1·N_2·…``) keeps that count in
    its costs; this variant defines ``size`` as the product of ``parts`` (no parts: ``size = 1``, as for an
    unbatched input) so that the output shape has the input's rank. Costs and parameters are unchanged.
    """
    if tuple(parts) == (size,):
        return formula
    shape: list[sp.Expr] = []
    for entry in formula.output_shape:
        shape.extend(parts if entry == size else (entry,))
    return dataclasses.replace(
        formula, output_shape=tuple(shape), intermediates={size: sp.Mul(*parts), **formula.intermediates}
    )


def split_values(name: str, sizes: Sequence[Any]) -> dict[str, Any]:
    """Values for :func:`split_size`'s parts: ``{name: n}`` for one dimension, else ``{name_1: …, name_2: …}``."""
    if len(sizes) == 1:
        return {name: sizes[0]}
    return {s.name: v for s, v in zip(numbered(name, len(sizes)), sizes)}


def split_parts(size: sp.Symbol, count: int) -> tuple[sp.Symbol, ...]:
    """The parts :func:`split_values` names: ``(size,)`` for one dimension, else ``size_1 … size_count``."""
    return (size,) if count == 1 else numbered(size.name, count)


LINEAR = LayerFormula(
    name="linear",
    description="Fully connected layer (nn.Linear): y = x·Wᵀ + b over the last dimension",
    params=C_in * C_out + B * C_out,
    macs=N * C_in * C_out,
    ops={OpKind.BIAS_ADD: B * N * C_out},
    output_shape=(N, C_out),
    # dX = dY·W and dW = dYᵀ·X are each the forward's product; db sums dY over the N rows.
    grad_input=Gradient(macs=g_x * N * C_in * C_out),
    grad_weight=Gradient(macs=g_W * N * C_in * C_out, ops={OpKind.ADD: g_b * (N - 1) * C_out}),
    defaults={N: 1, B: 1},  # one sample; nn.Linear has a bias unless bias=False
)

BILINEAR = LayerFormula(
    name="bilinear",
    description="Bilinear layer (nn.Bilinear): y_k = (x1ᵀ·A_k)·x2 + b_k for k < C_out",
    params=C_out * C_in1 * C_in2 + B * C_out,
    macs=N * C_out * (C_in1 * C_in2 + C_in2),
    # An unbatched (1-d) output gets its bias as a vector + vector add, indistinguishable from any other add.
    ops={OpKind.BIAS_ADD: B * (1 - U) * N * C_out, OpKind.ADD: B * U * N * C_out},
    output_shape=(N, C_out),
    # dx1 = (g·A)·x2 and dx2 = (g·(x1ᵀA)), each contracted in the forward's order; dA = Σ_n (g ⊗ x1) ⊗ x2,
    # the outer product g_k·x1_i a mul (nothing is summed yet), then a MAC per x2_j; db sums g over rows.
    # Both inputs the same tensor (S = 1): autograd adds its two gradients.
    grad_input=Gradient(macs=g_x1 * N * C_in1 * C_in2 * (C_out + 1) + g_x2 * N * C_out * C_in2 * (C_in1 + 1),
                        ops={OpKind.ADD: g_x * S * N * C_in1}),
    grad_weight=Gradient(macs=g_W * N * C_out * C_in1 * C_in2,
                         ops={OpKind.MUL: g_W * N * C_out * C_in1, OpKind.ADD: g_b * (N - 1) * C_out}),
    defaults={N: 1, B: 1, U: 0},
)

MATMUL = LayerFormula(
    name="matmul",
    description="Matrix product (…, M, K)·(…, K, P) of two tensors (torch.matmul, @, bmm, einsum)",
    params=sp.Integer(0),
    macs=N * M * K * P,
    ops={OpKind.BIAS_ADD: B * N * M * P},
    output_shape=(N, M, P),
    # dA = dY·Bᵀ and dB = Aᵀ·dY are each the forward's product, for the operands that need a gradient. An
    # operand broadcast over the batch (N_a or N_b of its own batch elements) gets the sum of its copies'
    # gradients, (N − N_a)·M·K adds; torch folds a broadcast of a matrix into one product, where N_a = N.
    grad_input=Gradient(macs=g_x * N * M * K * P, ops={OpKind.ADD: g_x * (N - N_a) * M * K}),
    grad_weight=Gradient(macs=g_W * N * M * K * P, ops={OpKind.ADD: g_W * (N - N_b) * K * P}),
    # each of an operand's batch dimensions is 1 or the product's, so its N_a (N_b) elements divide N
    defaults={N_a: N, N_b: N},
    constraints={"N divisible by N_a": sp.Eq(sp.Mod(N, N_a), 0), "N divisible by N_b": sp.Eq(sp.Mod(N, N_b), 0)},
)
MATMUL_ADDED = dataclasses.replace(
    MATMUL,
    # addmm(input, A, B): its operands are the 2nd and 3rd tensors (flags g_x2, g_x3) and never broadcast over
    # the batch (bmm's rule); the added tensor's gradient is dY summed back to its A_n elements, N·M·P − A_n
    # adds, after autograd multiplies dY by beta = 0 when the product ignores it (B = 0): N·M·P muls.
    grad_input=Gradient(macs=g_x2 * N * M * K * P),
    grad_weight=Gradient(macs=g_x3 * N * M * K * P,
                         ops={OpKind.ADD: g_x1 * (N * M * P - A_n), OpKind.MUL: g_x1 * (1 - B) * N * M * P}),
    defaults={}, constraints={},  # no N_a, N_b: nothing is broadcast
)
"""``addmm``/``baddbmm`` (also transformers' Conv1D): the product plus an added tensor of ``A_n`` elements, the
first argument; grad-input is the first operand's gradient, grad-weight the second's and the added tensor's."""

REGISTRY.add_formula(LINEAR, BILINEAR, MATMUL)


@cache
def _with_leading(formula_name: str, leading: int) -> LayerFormula:
    """The Linear, Bilinear or matrix-product formula for ``leading`` dimensions before the last one(s)."""
    formula = {"linear": LINEAR, "bilinear": BILINEAR, "matmul": MATMUL, "matmul_added": MATMUL_ADDED}[formula_name]
    return split_size(formula, N, split_parts(N, leading))


def _bound(formula_name: str, leading: Sequence[Any], values: Mapping[str, Any]) -> Bound:
    """The formula ``formula_name`` bound to ``values`` and to ``N``'s ``leading`` dimensions."""
    return Bound(_with_leading(formula_name, len(leading)), {**values, **split_values("N", leading)})


def bind_linear(module: nn.Linear, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    leading = tuple(args[0].shape[:-1])
    values = {"C_in": module.in_features, "C_out": module.out_features, "B": int(module.bias is not None)}
    return _bound("linear", leading, values)


def bind_bilinear(module: nn.Bilinear, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    leading = tuple(args[0].shape[:-1])
    values = {
        "C_in1": module.in1_features, "C_in2": module.in2_features, "C_out": module.out_features,
        "B": int(module.bias is not None), "U": int(not leading), "S": int(args[0] is args[1]),
    }
    return _bound("bilinear", leading, values)


def bind_f_linear(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound | None:
    """``F.linear(input, weight, bias)`` with a 2-d weight: the Linear formula, read from the weight's shape."""
    x, weight, bias = (argument(args, kwargs, i, name) for i, name in enumerate(("input", "weight", "bias")))
    if weight.dim() != 2 or x.dim() < 1:
        return None
    leading = tuple(x.shape[:-1])
    values = {"C_in": weight.shape[1], "C_out": weight.shape[0], "B": int(bias is not None)}
    return _bound("linear", leading, values)


def _batch_elements(shape: Sequence[Any]) -> tuple[Any, ...]:
    """An operand's batch dimensions as torch.matmul sees them: leading 1s are squeezed away."""
    batch = tuple(shape[:-2])
    while batch and batch[0] == 1:
        batch = batch[1:]
    return batch


def _summed(a: Any, b: Any, batch: Sequence[Any]) -> tuple[Any, Any]:
    """``N_a``, ``N_b``: torch.matmul folds a product with a matrix (an operand without batch dimensions) into
    one ``mm``, so no gradient is summed (``N``); two batched operands run as ``bmm`` on copies broadcast to the
    common batch, whose gradients are then summed back to each operand's own batch elements."""
    import math

    total = math.prod(batch)
    batch_a, batch_b = _batch_elements(a.shape), _batch_elements(b.shape)
    if not batch_a or not batch_b:
        return total, total
    return math.prod(batch_a), math.prod(batch_b)


def _product(a: Any, b: Any) -> Bound | None:
    if a.dim() < 2 or b.dim() < 2:  # vector forms drop a dimension; they stay with the caller, measured
        return None
    import torch

    batch = tuple(torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    summed = _summed(a, b, batch)
    values = {"M": a.shape[-2], "K": a.shape[-1], "P": b.shape[-1], "B": 0, "N_a": summed[0], "N_b": summed[1]}
    return _bound("matmul", batch, values)


def bind_f_matmul(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound | None:
    """``torch.matmul(a, b)``, ``a @ b``, ``mm``, ``bmm`` on operands of two or more dimensions."""
    first = argument(args, kwargs, 0, "input")
    second = args[1] if len(args) > 1 else kwargs.get("other", kwargs.get("mat2"))
    return _product(first, second)


def bind_f_addmm(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound | None:
    """``addmm``/``baddbmm(input, a, b, beta=, alpha=)``: the product plus ``input`` unless ``beta`` is 0."""
    added = argument(args, kwargs, 0, "input")
    first = args[1] if len(args) > 1 else kwargs.get("mat1", kwargs.get("batch1"))
    second = args[2] if len(args) > 2 else kwargs.get("mat2", kwargs.get("batch2"))
    batch = tuple(first.shape[:-2])
    values = {"M": first.shape[-2], "K": first.shape[-1], "P": second.shape[-1],
              "B": int(kwargs.get("beta", 1) != 0), "A_n": added.numel()}
    return _bound("matmul_added", batch, values)


@cache
def _einsum_formula(first: str, second: str, output: str) -> LayerFormula | None:
    """The matrix-product formula of a two-operand contraction ``first,second->output``, its sizes the index
    sizes ``n_x``: ``N`` the batch indices (in both operands and the output), ``M`` and ``P`` the free indices of
    each operand, ``K`` the contracted ones. ``None`` for a form that is no single product (a repeated index
    within an operand, an index summed out of one operand alone, nothing contracted)."""
    if any(len(set(term)) != len(term) for term in (first, second, output)):
        return None
    size = {x: sp.Symbol(f"n_{x}", integer=True, positive=True) for x in first + second}
    shared, out = set(first) & set(second), set(output)
    groups = {
        N: [x for x in output if x in shared], M: [x for x in output if x not in shared and x in first],
        P: [x for x in output if x not in shared and x in second], K: [x for x in first if x in shared - out],
    }
    if not groups[K] or set(first + second) - shared - out:
        return None
    unbroadcast = {N_a: N, N_b: N}  # every index has one size: no operand is broadcast
    return dataclasses.replace(
        MATMUL, output_shape=tuple(size[x] for x in output),
        intermediates={symbol: sp.Mul(*(size[x] for x in letters)) for symbol, letters in groups.items()},
        grad_input=MATMUL.grad_input.substituted(unbroadcast),  # type: ignore[union-attr]
        grad_weight=MATMUL.grad_weight.substituted(unbroadcast),  # type: ignore[union-attr]
        defaults={}, constraints={},
    )


def bind_f_einsum(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound | None:
    """``torch.einsum(equation, a, b)`` (or ``[a, b]``) contracting two operands without ellipses."""
    equation, *operands = args
    if len(operands) == 1 and isinstance(operands[0], list | tuple):
        operands = list(operands[0])
    equation = "".join(equation.split())
    inputs, _, output = equation.partition("->")
    terms = inputs.split(",")
    if len(operands) != 2 or len(terms) != 2 or "." in equation:
        return None
    if "->" not in equation:  # implicit output: the indices that occur once, in alphabetical order
        output = "".join(sorted(x for x in set(inputs) - {","} if inputs.count(x) == 1))
    formula = _einsum_formula(terms[0], terms[1], output)
    if formula is None:
        return None
    sizes = {f"n_{x}": n for term, operand in zip(terms, operands) for x, n in zip(term, operand.shape)}
    return Bound(formula, {**sizes, "B": 0})


@REGISTRY.on_first_lookup
def _bind() -> None:
    import torch
    import torch.nn.functional as F
    from torch import nn

    REGISTRY.bind(nn.Linear, bind_linear)
    REGISTRY.bind(nn.Bilinear, bind_bilinear)
    REGISTRY.bind_functions({F.linear: "F.linear"}, bind_f_linear)
    REGISTRY.bind_functions(
        # x @ w reaches the tracer as Tensor.matmul too: the call site relabels it "@" (trace.call_site_label)
        {torch.matmul: "torch.matmul", torch.Tensor.matmul: "Tensor.matmul", torch.mm: "torch.mm",
         torch.Tensor.mm: "Tensor.mm", torch.bmm: "torch.bmm", torch.Tensor.bmm: "Tensor.bmm"},
        bind_f_matmul,
    )
    REGISTRY.bind_functions(
        {torch.addmm: "torch.addmm", torch.baddbmm: "torch.baddbmm", torch.Tensor.addmm: "Tensor.addmm",
         torch.Tensor.baddbmm: "Tensor.baddbmm"},
        bind_f_addmm,
    )
    REGISTRY.bind_functions({torch.einsum: "torch.einsum"}, bind_f_einsum)
