"""Attention: scaled dot-product attention (plain, causal, masked, grouped-query) and nn.MultiheadAttention.

``ATTENTION`` is the core ``softmax(Q·Kᵀ·scale + mask)·V`` with the scale applied to Q, as
nn.MultiheadAttention computes it when it returns its weights (``need_weights=True``); ``SDPA`` adds the scale
applied to K as well, which is how torch's math kernel computes ``F.scaled_dot_product_attention`` (and the
operator rules count every fused kernel as the math kernel, see flopcalc/measure/ops_attention.py).
``MULTIHEAD_ATTENTION`` composes four ``LINEAR`` projections with ``ATTENTION`` when it returns its weights and
with ``SDPA`` when it does not.

Symbols: ``N`` batch (all leading dimensions), ``H_q`` query heads, ``L`` query length, ``S`` key length,
``E_k`` query/key head dimension, ``E_v`` value head dimension, ``M`` 1 if a mask is added to the scores
(``attn_mask``, ``is_causal`` or a key padding mask). MultiheadAttention: ``E`` embed_dim, ``H`` num_heads,
``D_k``/``D_v`` the key/value input features (kdim/vdim), ``B`` 1 with bias, ``b_kv`` 1 with add_bias_kv, ``Z`` 1
with add_zero_attn (each appends one key position: ``S_a = S + b_kv + Z``), ``W`` need_weights, ``A``
average_attn_weights, ``M_2`` 1 if both attn_mask and key_padding_mask are given (merged by one add);
``U_qk``, ``U_qv``, ``U_kv`` 1 if that pair is one tensor fed to two separate projections (its two gradients
are summed in the backward).

Conventions (docs/conventions.md): Q·Kᵀ and (attention weights)·V are MACs; the scaling is one mul per scaled
element, the mask one add per score, softmax per row of length S: S exp, S − 1 add, S div (the activation
formula). NB: a causal mask counts the full L×S square of scores, as torch's math kernel executes it; fused
kernels may skip fully masked blocks (up to about half the work), and counting the square keeps counts the
same on every device and backend. NB: grouped-query attention (``H_kv < H_q`` key/value heads) costs as much
as ``H_q`` full heads, and ``H_kv`` does not enter the counts: the math kernel expands K and V to ``H_q``
heads (a copy) before the products and scales the expanded K. Not counted: dropout (inference), the check of
fully masked rows in torch's ``_safe_softmax``, the conversion of boolean masks to additive ones (a select).

Backward (docs/conventions.md, "Backward"): dV = Pᵀ·dY, dP = dY·Vᵀ, softmax's backward, dQ = dS·K and
dK = dSᵀ·Q, each product the forward's MACs, plus one mul per element of dQ and dK for their √scale and, with
``H_kv < H_q`` key/value heads, ``(H_q − H_kv)`` adds per key/value element to sum the expanded heads'
gradients. MultiheadAttention adds its projections' backward (Linear's).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sympy as sp

from flopcalc.formula import Gradient, LayerFormula, OpKind, dims, flag, g_aw, g_b, g_W, g_x, g_x1, g_x2
from flopcalc.layers import activation, linear
from flopcalc.layers.activation import SOFTMAX
from flopcalc.registry import REGISTRY, Bound, argument

if TYPE_CHECKING:
    from torch import nn

N, H_q, L, S, E_k, E_v, H_kv = dims("N H_q L S E_k E_v H_kv")
E, H, D_k, D_v, S_a = dims("E H D_k D_v S_a")
M, B, b_kv, Z, W, A, M_2 = (flag(name) for name in ("M", "B", "b_kv", "Z", "W", "A", "M_2"))
U_qk, U_qv, U_kv = flag("U_qk"), flag("U_qv"), flag("U_kv")
g_x3 = flag("g_x3")
"""The third input (the value) needs a gradient; ``g_x1`` the query, ``g_x2`` the key."""
# MultiheadAttention's backward flags, one per parameter (named as backward.py reads them): each is 0 for a
# parameter the module does not have (the packed in_proj_weight, or the separate q/k/v_proj_weight).
g_in_W, g_q_W, g_k_W, g_v_W, g_in_b, g_out_W, g_out_b, g_bias_k, g_bias_v = (flag(f"g_{name}") for name in (
    "in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight", "in_proj_bias", "out_proj_weight",
    "out_proj_bias", "bias_k", "bias_v"))

_SCORES = N * H_q * L * S
_SOFTMAX_OPS = {kind: sp.sympify(expr).xreplace({activation.E: _SCORES, activation.D: S})
                for kind, expr in SOFTMAX.ops.items()}
_SOFTMAX_BACKWARD = {kind: sp.sympify(expr).xreplace({activation.E: _SCORES, activation.D: S})
                     for kind, expr in SOFTMAX.grad_input.ops.items()}  # type: ignore[union-attr]


def _add_ops(*parts: Mapping[str, sp.Expr]) -> dict[str, sp.Expr]:
    total: dict[str, sp.Expr] = {}
    for part in parts:
        for kind, expr in part.items():
            total[kind] = total.get(kind, sp.Integer(0)) + expr
    return total


def _any_needed(*needed: sp.Expr) -> sp.Expr:
    """1 if any of the 0/1 flags is set."""
    none = sp.Integer(1)
    for each in needed:
        none *= 1 - each
    return 1 - none


def _core_backward(q: sp.Expr, k: sp.Expr, v: sp.Expr, scale_k: bool) -> Gradient:
    """The attention core's backward for 0/1 flags ``q``, ``k``, ``v`` (the queries, keys, values need a
    gradient): dV = Pᵀ·dY (``v``); dP = dY·Vᵀ, then softmax's backward dS (whenever Q or K needs a gradient);
    dQ = dS·K and dK = dSᵀ·Q, each times the √scale it was multiplied by (K's only if ``scale_k``). With
    grouped-query attention the gradients of the ``H_q`` expanded heads are summed into ``H_kv``:
    ``(H_q − H_kv)`` adds per key/value element that needs a gradient."""
    scores = _any_needed(q, k)
    softmax = {kind: scores * sp.sympify(expr).xreplace({g_x: 1}) for kind, expr in _SOFTMAX_BACKWARD.items()}
    ops = _add_ops(softmax, {OpKind.MUL.value: q * N * H_q * L * E_k + (k * N * H_q * S * E_k if scale_k else 0)},
                   {OpKind.ADD.value: N * (H_q - H_kv) * S * (k * E_k + v * E_v)})
    macs = v * _SCORES * E_v + scores * _SCORES * E_v + q * _SCORES * E_k + k * _SCORES * E_k
    return Gradient(macs=macs, ops=ops)


ATTENTION = LayerFormula(
    name="attention",
    description="Dot-product attention softmax(Q·Kᵀ·scale + mask)·V, scale applied to Q",
    params=sp.Integer(0),
    macs=_SCORES * E_k + _SCORES * E_v,  # Q·Kᵀ, then the weights times V
    ops=_add_ops(
        {OpKind.MUL.value: N * H_q * L * E_k},  # Q·scale
        {OpKind.ADD.value: M * _SCORES},  # + mask
        _SOFTMAX_OPS,
    ),
    output_shape=(N, H_q, L, E_v),
    # Within nn.MultiheadAttention (H_kv = H_q), which substitutes its own flags for the three.
    grad_input=_core_backward(g_x1, g_x2, g_x3, scale_k=False),
    # Grouped-query attention shares each key/value head among H_q/H_kv query heads (torch refuses other
    # counts); the backward's (H_q − H_kv) adds per key/value element count on it.
    defaults={H_kv: H_q},
    constraints={"H_q divisible by H_kv": sp.Eq(sp.Mod(H_q, H_kv), 0)},
)

SDPA = dataclasses.replace(
    ATTENTION,
    name="sdpa",
    description="F.scaled_dot_product_attention, as torch's math kernel computes it: √scale applied to Q and to K",
    ops=_add_ops(ATTENTION.ops, {OpKind.MUL.value: N * H_q * S * E_k}),  # K·√scale, on the expanded K
    # A functional call's flags: g_x1, g_x2, g_x3 its query, key and value.
    grad_input=_core_backward(g_x1, g_x2, g_x3, scale_k=True),
)
SDPA_CAUSAL = SDPA.specialize(
    "sdpa_causal", "Causal scaled dot-product attention (is_causal=True): the full L×S square plus the mask", {M: 1}
)

REGISTRY.add_formula(ATTENTION, SDPA, SDPA_CAUSAL)


def _projection(rows: sp.Expr, features: sp.Expr) -> LayerFormula:
    """One of MultiheadAttention's projections: ``LINEAR`` on ``rows`` vectors of ``features`` to ``E``."""
    return linear.LINEAR.specialize("projection", "", {linear.N: rows, linear.C_in: features, linear.C_out: E,
                                                      linear.B: B})


def _either(flag_symbol: sp.Symbol, if_set: Mapping[str, sp.Expr],
            if_unset: Mapping[str, sp.Expr]) -> dict[str, sp.Expr]:
    """Ops by kind of two alternatives chosen by a 0/1 flag; a kind costing the same in both is kept as is."""
    ops: dict[str, sp.Expr] = {}
    for kind in {**if_set, **if_unset}:
        a, b = sp.sympify(if_set.get(kind, 0)), sp.sympify(if_unset.get(kind, 0))
        ops[kind] = a if a == b else flag_symbol * a + (1 - flag_symbol) * b
    return ops


def _multihead() -> LayerFormula:
    head_dim = E / H
    projections = [_projection(N * L, E), _projection(N * S, D_k), _projection(N * S, D_v), _projection(N * L, E)]
    # need_weights (W = 1): Q alone is scaled, and the mask enters as baddbmm's input (a bias add per score);
    # otherwise MultiheadAttention calls scaled_dot_product_attention (SDPA: K scaled too, the mask an add).
    core = {N: N, H_q: H, E_k: head_dim, E_v: head_dim, S: S_a, H_kv: H}
    with_weights = ATTENTION.specialize("attention", "", {**core, M: 0})
    without_weights = SDPA.specialize("sdpa", "", core)
    scores = N * H * L * S_a
    extra = {
        OpKind.BIAS_ADD.value: W * M * scores,
        OpKind.ADD.value: M_2 * scores + W * A * N * L * S_a * (H - 1),  # mask merge; mean over H heads: H − 1
        OpKind.DIV.value: W * A * N * L * S_a,  # adds and 1 div per averaged weight
    }
    attention = _either(W, with_weights.ops, without_weights.ops)
    grad_input, grad_weight = _multihead_backward(projections, with_weights, without_weights)
    return LayerFormula(
        name="multihead_attention",
        description="nn.MultiheadAttention: Q, K, V projections, H-head attention, output projection",
        params=sum((p.params for p in projections), sp.Integer(0)) + 2 * b_kv * E,  # + bias_k, bias_v
        macs=sum((p.macs for p in projections), without_weights.macs),
        ops=_add_ops(*(p.ops for p in projections), attention, extra),
        output_shape=(L, N, E),
        intermediates={S_a: S + b_kv + Z},
        grad_input=grad_input,
        grad_weight=grad_weight,
    )


def _multihead_backward(projections: list[LayerFormula], with_weights: LayerFormula,
                        without_weights: LayerFormula) -> tuple[Gradient, Gradient]:
    """MultiheadAttention's backward: each projection's, and the core's for the path the forward took.

    The flags are per input (``g_x1`` query, ``g_x2`` key, ``g_x3`` value) and per parameter (``g_in_proj_weight``
    or ``g_q/k/v_proj_weight``, ``g_in_proj_bias``, ``g_out_proj_weight``, ``g_out_proj_bias``, ``g_bias_k``,
    ``g_bias_v``): autograd runs a product only for an operand whose gradient leads to a trainable parameter
    or an input that needs one. Q needs a gradient when the query, Q's weights or the in-projection bias
    does; K and V likewise, or when ``bias_k``/``bias_v`` (appended to them) trains; the output projection's
    input when any of Q, K, V does. ``bias_k``/``bias_v`` are repeated over the batch, so their gradients sum
    ``N`` copies.
    """
    bias = B * g_in_b
    weights = [g_in_W + g_q_W, g_in_W + g_k_W, g_in_W + g_v_W]
    needs_q = _any_needed(g_x1, weights[0], bias)
    needs_k = _any_needed(g_x2, weights[1], bias, b_kv * g_bias_k)
    needs_v = _any_needed(g_x3, weights[2], bias, b_kv * g_bias_v)
    upstream, scores = _any_needed(needs_q, needs_k, needs_v), _any_needed(needs_q, needs_k)
    reaches = {g_x1: needs_q, g_x2: needs_k, g_x3: needs_v}
    cores = [f.grad_input.substituted(reaches) for f in (with_weights, without_weights)]  # type: ignore[union-attr]
    # Returned weights that get a gradient (g_aw: the model uses them) averaged over the heads: the mean's
    # backward divides their gradient by H for each head.
    averaged = {OpKind.DIV.value: W * g_aw * A * scores * N * H * L * S_a}
    # Gradients the engine sums within the module: returned weights that get a gradient also multiply V (one
    # add per score), and one tensor given as two of query, key, value to separate projections gets two.
    # Q, K, V selected from one packed projection are disjoint slices of it: assembling their gradients is
    # data movement (docs/conventions.md, "Gradient sums").
    shared = g_x1 * (U_qk + U_qv) * N * L * E + g_x2 * U_kv * N * S * D_k
    summed = {OpKind.ADD.value: W * g_aw * N * H * L * S_a * scores + shared}
    core = Gradient(macs=W * cores[0].macs + (1 - W) * cores[1].macs,
                    ops=_add_ops(_either(W, cores[0].ops, cores[1].ops), averaged, summed))
    *inputs, output = projections
    inputs = [p.specialize(p.name, "", {g_x: x, g_W: w, g_b: bias})
              for p, x, w in zip(inputs, (g_x1, g_x2, g_x3), weights)]
    output = output.specialize(output.name, "", {g_x: upstream, g_W: g_out_W, g_b: B * g_out_b})
    parts_in = [p.grad_input for p in (*inputs, output)] + [core]
    parts_w = [p.grad_weight for p in (*inputs, output)]
    parts_w.append(Gradient(ops={OpKind.ADD.value: b_kv * (g_bias_k + g_bias_v) * (N - 1) * E}))
    return _sum_gradients(parts_in), _sum_gradients(parts_w)  # type: ignore[arg-type]


def _sum_gradients(parts: list[Gradient]) -> Gradient:
    return Gradient(macs=sum((sp.sympify(p.macs) for p in parts), sp.Integer(0)), ops=_add_ops(*(p.ops for p in parts)))


MULTIHEAD_ATTENTION = _multihead()
REGISTRY.add_formula(MULTIHEAD_ATTENTION)
# One formula object per output layout, built once, so each is compiled once rather than on every call.
_BY_LAYOUT = {
    layout: dataclasses.replace(MULTIHEAD_ATTENTION, output_shape=layout) for layout in ((L, E), (N, L, E), (L, N, E))
}


def bind_multihead_attention(module: nn.MultiheadAttention, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    """``forward(query, key, value, key_padding_mask, need_weights, attn_mask, average_attn_weights, is_causal)``."""
    query, key = argument(args, kwargs, 0, "query"), argument(args, kwargs, 1, "key")
    key_padding_mask = argument(args, kwargs, 3, "key_padding_mask")
    need_weights = bool(argument(args, kwargs, 4, "need_weights", True))
    attn_mask = argument(args, kwargs, 5, "attn_mask")
    average = bool(argument(args, kwargs, 6, "average_attn_weights", True))
    value = argument(args, kwargs, 2, "value")
    packed = module._qkv_same_embed_dim
    if query.dim() == 2:
        batch, target, source = 1, query.shape[0], key.shape[0]
        layout: tuple[sp.Expr, ...] = (L, E)
    elif module.batch_first:
        batch, target, source = query.shape[0], query.shape[1], key.shape[1]
        layout = (N, L, E)
    else:
        batch, target, source = query.shape[1], query.shape[0], key.shape[0]
        layout = (L, N, E)
    values = {
        "N": batch, "L": target, "S": source, "E": module.embed_dim, "H": module.num_heads, "D_k": module.kdim,
        "D_v": module.vdim, "B": int(module.in_proj_bias is not None), "b_kv": int(module.bias_k is not None),
        "Z": int(module.add_zero_attn), "W": int(need_weights), "A": int(average),
        "M": int(attn_mask is not None or key_padding_mask is not None),
        "M_2": int(attn_mask is not None and key_padding_mask is not None),
        # One tensor given to two separate projections (a packed projection selects disjoint slices instead).
        "U_qk": int(query is key and key is not value),
        "U_qv": int(query is value and key is not value),
        "U_kv": int(key is value and not packed),
    }
    return Bound(_BY_LAYOUT[layout], values)


def bind_f_sdpa(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound | None:
    """``F.scaled_dot_product_attention(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)``
    on ``(N, H_q, L, E_k)`` queries; a scale changes no count (it is one mul per scaled element either way)."""
    query, key, value = (argument(args, kwargs, i, name) for i, name in enumerate(("query", "key", "value")))
    mask, dropout = argument(args, kwargs, 3, "attn_mask"), argument(args, kwargs, 4, "dropout_p", 0.0)
    causal = bool(argument(args, kwargs, 5, "is_causal", False))
    if query.dim() != 4 or dropout:  # other layouts, and dropout's masks, stay with the caller, measured
        return None
    values = {
        "N": query.shape[0], "H_q": query.shape[1], "L": query.shape[2], "E_k": query.shape[3],
        "S": key.shape[-2], "E_v": value.shape[-1], "H_kv": key.shape[-3] if key.dim() > 2 else query.shape[1],
    }
    if causal:
        return Bound(SDPA_CAUSAL, values)
    return Bound(SDPA, {**values, "M": int(mask is not None)})


@REGISTRY.on_first_lookup
def _bind() -> None:
    import torch.nn.functional as F
    from torch import nn

    REGISTRY.bind(nn.MultiheadAttention, bind_multihead_attention)
    REGISTRY.bind_functions({F.scaled_dot_product_attention: "F.scaled_dot_product_attention"}, bind_f_sdpa)
