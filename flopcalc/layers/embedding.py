"""Lookup tables: nn.Embedding and nn.EmbeddingBag (sum, mean and max bags), with optional max-norm renormalisation.

Symbols: ``V`` rows of the table (``num_embeddings``), ``E`` its width (``embedding_dim``), ``N`` indices looked
up (``N_1, N_2, …`` for the dimensions of a multi-dimensional index tensor), ``B`` bags, ``W`` 1 with
per-sample weights, ``P`` 1 when a max-norm layer's ``norm_type`` is not 2; for the backward, ``Z`` 1 for an
Embedding with ``sparse=True`` and ``Q`` 1 when it has a ``padding_idx``.

Conventions (docs/conventions.md, "Embedding"): a lookup copies a row, so an embedding costs no MACs and no
operations; its parameters are the ``V·E`` table. A bag of ``n`` rows is reduced like any reduction: ``n − 1``
adds (sum, mean) or compares (max) per output element, plus one div per output element for the mean and one
mul per looked-up element for per-sample weights. Bag sizes are data, so the count assumes no bag is empty
(``N − B`` reduction terms per column), and indices equal to ``padding_idx`` are counted like the others.
With ``max_norm`` every lookup is counted as a distinct row that is renormalised (at most ``V`` rows), since
which rows repeat or exceed the bound is also data.

Backward (docs/conventions.md, "Backward"): each looked-up row's gradient is added into the table's (1 add per
looked-up element; a bag's per-sample weight multiplies it first, and gets its own gradient as a dot product,
``E`` MACs per lookup); a mean bag divides its gradient once per output element, a max bag adds it at the argmax.
A sparse Embedding's gradient is the output gradient's rows themselves, one per lookup, with their indices: no
arithmetic (rows looked up twice are summed when the gradient is coalesced, by the optimizer, outside the
backward pass); with a ``padding_idx`` the lookups of that row are dropped first, 1 compare per index.

>>> EMBEDDING.substituted("params", {"V": 30522, "E": 768})
'768·30522 = 23,440,896'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

import sympy as sp

from flopcalc.formula import Gradient, LayerFormula, OpKind, dims, flag, g_W, g_x
from flopcalc.layers.linear import split_parts, split_size, split_values
from flopcalc.registry import REGISTRY, Bound, argument

if TYPE_CHECKING:
    from torch import nn

V, E, N, B = dims("V E N B")
W, P, Z, Q = flag("W"), flag("P"), flag("Z"), flag("Q")


def _renorm_ops() -> dict[OpKind, sp.Expr]:
    """Renormalising ``min(N, V)`` rows of ``E`` elements to norm ``max_norm``.

    The 2-norm is ``E`` muls, ``E − 1`` adds and a sqrt; another p-norm (``P = 1``) is ``|x|`` (1 compare) and
    ``|x|^p = exp(p·log|x|)`` (2 exp, 1 mul) per element, ``E − 1`` adds and the ``1/p`` root as another power
    (2 exp, 1 mul). The rescale is 1 compare with ``max_norm``, 1 add (the 1e-7 guard), 1 div, ``E`` muls.
    """
    rows = sp.Min(N, V)
    per_row = {
        OpKind.ADD: (E - 1) + 1,  # the norm's sum; the 1e-7 guard
        OpKind.MUL: (1 - P) * E + P * (E + 1) + E,  # squares (2-norm) or the powers' muls; the rescale
        OpKind.COMPARE: P * E + 1,  # |x| (p-norm); norm > max_norm
        OpKind.DIV: sp.Integer(1),  # max_norm / (norm + 1e-7)
        OpKind.SQRT: 1 - P,  # the 2-norm's root
        OpKind.EXP: P * (2 * E + 2),  # exp and log of each power and of the 1/p root
    }
    return {kind: rows * sp.expand(cost) for kind, cost in per_row.items()}


def with_max_norm(formula: LayerFormula) -> LayerFormula:
    """``formula`` plus the renormalisation of the looked-up rows that ``max_norm`` performs before the lookup."""
    ops = dict(formula.ops)
    for kind, expr in _renorm_ops().items():
        ops[kind] = ops.get(kind, 0) + expr
    return dataclasses.replace(
        formula, name=f"{formula.name}_max_norm", description=f"{formula.description}, rows renormalised to max_norm",
        ops=ops,
    )


EMBEDDING = LayerFormula(
    name="embedding",
    description="Embedding lookup (nn.Embedding): each index copies one row of the V×E table, no arithmetic",
    params=V * E,
    macs=sp.Integer(0),
    ops={},
    output_shape=(N, E),
    # No gradient flows to the indices; each looked-up row's gradient is added into the table's gradient
    # (dense), or kept as it is, with its index, after dropping the padding row's lookups (sparse, Z = 1).
    grad_input=Gradient(),
    grad_weight=Gradient(ops={OpKind.ADD: g_W * (1 - Z) * N * E, OpKind.COMPARE: g_W * Z * Q * N}),
)

_terms = sp.Max(N - B, 0) * E  # n_b − 1 reduction terms per bag and column, summed over the B bags


def _bag(mode: str, ops: Mapping[OpKind, sp.Expr], grad_input: Gradient, grad_weight: Gradient) -> LayerFormula:
    return LayerFormula(
        name=f"embedding_bag_{mode}",
        description=f"Embedding bag (nn.EmbeddingBag, mode='{mode}'): B bags of looked-up rows, each reduced to one",
        params=V * E,
        macs=sp.Integer(0),
        ops=ops,
        output_shape=(B, E),
        grad_input=grad_input,
        grad_weight=grad_weight,
    )


# Backward: sum adds each bag's gradient into its looked-up rows (times the per-sample weight first), and the
# per-sample weights' gradient (their only float input, g_x) is the bag gradient · the row, E MACs per lookup;
# mean divides each bag's gradient by its size once, then adds it likewise; max adds it at each argmax row.
EMBEDDING_BAG_SUM = _bag("sum", {OpKind.ADD: _terms, OpKind.MUL: W * N * E}, Gradient(macs=g_x * N * E),
                         Gradient(ops={OpKind.ADD: g_W * N * E, OpKind.MUL: g_W * W * N * E}))
EMBEDDING_BAG_MEAN = _bag("mean", {OpKind.ADD: _terms, OpKind.DIV: B * E}, Gradient(),
                          Gradient(ops={OpKind.ADD: g_W * N * E, OpKind.DIV: g_W * B * E}))
EMBEDDING_BAG_MAX = _bag("max", {OpKind.COMPARE: _terms}, Gradient(), Gradient(ops={OpKind.ADD: g_W * B * E}))
_BAGS = {"sum": EMBEDDING_BAG_SUM, "mean": EMBEDDING_BAG_MEAN, "max": EMBEDDING_BAG_MAX}
_MAX_NORM = {f.name: with_max_norm(f) for f in (EMBEDDING, *_BAGS.values())}

REGISTRY.add_formula(EMBEDDING, *_BAGS.values(), *_MAX_NORM.values())


@cache
def _embedding_formula(max_norm: bool, index_dims: int) -> LayerFormula:
    formula = _MAX_NORM["embedding"] if max_norm else EMBEDDING
    return split_size(formula, N, split_parts(N, index_dims))


def _table_values(module: nn.Embedding | nn.EmbeddingBag) -> dict[str, int]:
    return {"V": module.num_embeddings, "E": module.embedding_dim, "P": int(float(module.norm_type) != 2.0)}


def bind_embedding(module: nn.Embedding, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    index_shape = tuple(args[0].shape)
    formula = _embedding_formula(module.max_norm is not None, len(index_shape))
    sparse = {"Z": int(module.sparse), "Q": int(module.padding_idx is not None)}
    return Bound(formula, {**_table_values(module), **split_values("N", index_shape), **sparse})


def bind_embedding_bag(module: nn.EmbeddingBag, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    """2-d input: one bag per row; 1-d input: bags start at ``offsets`` (the last one only closes a bag when
    ``include_last_offset``)."""
    indices = args[0]
    offsets = args[1] if len(args) > 1 else kwargs.get("offsets")
    weights = args[2] if len(args) > 2 else kwargs.get("per_sample_weights")
    if indices.dim() == 2:
        bags = indices.shape[0]
    else:
        bags = offsets.shape[0] - int(module.include_last_offset)
    formula = _BAGS[module.mode]
    if module.max_norm is not None:
        formula = _MAX_NORM[formula.name]
    values = {**_table_values(module), "N": indices.numel(), "B": bags, "W": int(weights is not None)}
    return Bound(formula, values)


def bind_f_embedding(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    """``F.embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse)``: the
    Embedding formula."""
    index_shape = tuple(argument(args, kwargs, 0, "input").shape)
    weight, max_norm = argument(args, kwargs, 1, "weight"), argument(args, kwargs, 3, "max_norm")
    norm_type = argument(args, kwargs, 4, "norm_type", 2.0)
    values = {"V": weight.shape[0], "E": weight.shape[1], "P": int(float(norm_type) != 2.0),
              "Z": int(bool(argument(args, kwargs, 6, "sparse", False))),
              "Q": int(argument(args, kwargs, 2, "padding_idx") is not None)}
    formula = _embedding_formula(max_norm is not None, len(index_shape))
    return Bound(formula, {**values, **split_values("N", index_shape)})


@REGISTRY.on_first_lookup
def _bind() -> None:
    import torch.nn.functional as F
    from torch import nn

    REGISTRY.bind(nn.Embedding, bind_embedding)
    REGISTRY.bind(nn.EmbeddingBag, bind_embedding_bag)
    REGISTRY.bind_functions({F.embedding: "F.embedding"}, bind_f_embedding)
