"""Fully connected layers: nn.Linear (any number of leading dimensions) and nn.Bilinear.

Symbols: ``N`` rows, the product of all leading dimensions of the input (``N_1, N_2, …`` when there are
several: the formulas keep ``N``, the output shape has the input's rank); ``C_in``/``C_out`` features;
``C_in1``, ``C_in2`` the features of Bilinear's two inputs; ``B`` 1 if the layer has a bias.

Conventions (docs/conventions.md, "Linear"): Linear is ``N·C_in·C_out`` MACs and ``N·C_out`` bias adds.
Bilinear computes ``y_k = x1ᵀA_k x2 + b_k`` as ``(x1ᵀA_k)·x2``: ``C_in1·C_in2`` MACs for the row vector
``x1ᵀA_k``, then ``C_in2`` for its dot product with ``x2``. Its bias is a ``bias_add`` (torch adds it with a
broadcast ``aten.add``, which the operator counter reads as a bias add); for an unbatched input it is a plain
vector + vector ``add``, which no count can tell from any other (flag ``U``).

>>> LINEAR.substituted("params", {"C_in": 9216, "C_out": 4096, "B": 1})
'9216·4096 + 4096 = 37,752,832'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

import sympy as sp

from flopcalc.formula import LayerFormula, OpKind, dims, flag
from flopcalc.registry import REGISTRY, Bound

if TYPE_CHECKING:
    from torch import nn

N, C_in, C_out, C_in1, C_in2 = dims("N C_in C_out C_in1 C_in2")
B = flag("B")
U = flag("U")


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
    defaults={N: 1, B: 1, U: 0},
)

REGISTRY.add_formula(LINEAR, BILINEAR)


@cache
def _with_leading(formula_name: str, leading: int) -> LayerFormula:
    """The Linear or Bilinear formula for an input with ``leading`` dimensions before the features."""
    formula = {"linear": LINEAR, "bilinear": BILINEAR}[formula_name]
    return split_size(formula, N, split_parts(N, leading))


def bind_linear(module: nn.Linear, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    leading = tuple(args[0].shape[:-1])
    values = {"C_in": module.in_features, "C_out": module.out_features, "B": int(module.bias is not None)}
    return Bound(_with_leading("linear", len(leading)), {**values, **split_values("N", leading)})


def bind_bilinear(module: nn.Bilinear, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    leading = tuple(args[0].shape[:-1])
    values = {
        "C_in1": module.in1_features, "C_in2": module.in2_features, "C_out": module.out_features,
        "B": int(module.bias is not None), "U": int(not leading),
    }
    return Bound(_with_leading("bilinear", len(leading)), {**values, **split_values("N", leading)})


@REGISTRY.on_first_lookup
def _bind() -> None:
    from torch import nn

    REGISTRY.bind(nn.Linear, bind_linear)
    REGISTRY.bind(nn.Bilinear, bind_bilinear)
