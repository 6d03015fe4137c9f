"""Fused attention kernels, counted as the unfused ops they replace, so that counts do not depend on the device.

``F.scaled_dot_product_attention`` runs as one of several kernels: on the meta device the *math* kernel, which
decomposes into ``mul`` (√scale on Q and on K), ``bmm`` (Q·Kᵀ), ``add`` (a mask), ``_safe_softmax``, ``bmm``
(weights·V); on CPU ``_scaled_dot_product_flash_attention_for_cpu``; on GPUs the flash, memory-efficient, cuDNN
or backend-overridable kernels. Every fused kernel is counted as the math kernel on the same shapes, through
the registered rules of those ops: grouped-query attention (fewer K/V heads) as the math kernel's expansion to
all query heads, a causal or explicit mask as one add per score over the full L×S square, dropout as the math
kernel's mask multiply and rescale (the random draw is not counted).

nn.MultiheadAttention and nn.TransformerEncoderLayer in inference have fast paths,
``_native_multi_head_attention`` and ``_transformer_encoder_layer_fwd``, that hide the projections from module
hooks; they are counted as the ops of the decomposed forward that runs on the meta device or in training, op
by op (projections, bias adds, scaling, softmax, layer norms, feed-forward, activation, residual adds).
Nested (variable-length) inputs, which only the fused kernels accept (e.g. nn.TransformerEncoder with a padding
mask on CPU/GPU), are counted per sequence at its own length: the work done, not the padded batch's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from flopcalc.formula import Number
from flopcalc.measure.core import ZERO, Count, cost_of, numel, op_rule, shape_of, stand_in, zero_cost

aten = torch.ops.aten


@op_rule(aten._safe_softmax)
def count_safe_softmax(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """Softmax that returns zeros for fully masked rows: counted as softmax (the row check is bookkeeping)."""
    return cost_of(aten._softmax.default, args[0], args[1], False, out=out)


def _bmm(batch: Number, m: Number, k: Number, n: Number) -> Count:
    return cost_of(aten.bmm.default, stand_in(batch, m, k), stand_in(batch, k, n), out=stand_in(batch, m, n))


def _mul(*shape: Number) -> Count:
    x = stand_in(*shape)
    return cost_of(aten.mul.Tensor, x, x, out=x)


def attention_count(batch: Sequence[Number], heads: Number, length: Number, keys: Number, e_k: Number,
                    e_v: Number, mask: Sequence[Number] | None, dropout: bool = False, scale_k: bool = True,
                    mask_in_bmm: bool = False) -> Count:
    """The math kernel on ``(*batch, heads, ·, ·)`` inputs: √scale on Q (and on the expanded K if ``scale_k``),
    Q·Kᵀ, the mask (of shape ``mask``, broadcast to the scores; ``None`` without one), softmax, dropout,
    weights·V.

    ``mask_in_bmm`` is MultiheadAttention's ``need_weights`` path, which adds the mask as the input of
    ``baddbmm`` and calls ``_softmax``; the math kernel adds it with ``add`` and calls ``_safe_softmax``.
    """
    n = numel(batch) * heads
    scores = stand_in(*batch, heads, length, keys)
    total = _mul(*batch, heads, length, e_k) + (_mul(*batch, heads, e_k, keys) if scale_k else ZERO)
    if mask is not None and mask_in_bmm:
        q, k_t, s = stand_in(n, length, e_k), stand_in(n, e_k, keys), stand_in(n, length, keys)
        total += cost_of(aten.baddbmm.default, stand_in(1, length, keys), q, k_t, out=s)
    else:
        total += _bmm(n, length, e_k, keys)
        if mask is not None:
            total += cost_of(aten.add.Tensor, scores, stand_in(*mask), out=scores)
    softmax = aten._softmax.default if mask_in_bmm else aten._safe_softmax.default
    total += cost_of(softmax, scores, -1, out=scores)
    if dropout:
        total += cost_of(aten.div_.Scalar, scores, 1.0, out=scores) + _mul(*batch, heads, length, keys)
    return total + _bmm(n, length, keys, e_v)


def _sdpa(query: Any, key: Any, value: Any, mask: Any, causal: bool, dropout_p: float, heads_dim: int = -3) -> Count:
    """A fused SDPA kernel on ``(N, H, L, E)`` inputs (``heads_dim=-3``) or ``(N, L, H, E)`` (``-2``), with an
    explicit ``mask`` tensor or a ``causal`` one (the math kernel's ``(L, S)`` matrix)."""
    q, k, v = shape_of(query), shape_of(key), shape_of(value)
    seq_dim = -2 if heads_dim == -3 else -3
    length, keys = q[seq_dim], k[seq_dim]
    mask_shape = shape_of(mask) if mask is not None else (length, keys) if causal else None
    return attention_count(q[:-3], q[heads_dim], length, keys, q[-1], v[-1], mask_shape, dropout_p > 0)


def _get(args: Sequence[Any], kwargs: Mapping[str, Any], index: int, name: str, default: Any = None) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


@op_rule(aten._scaled_dot_product_flash_attention_for_cpu)
def count_flash_attention_for_cpu(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(query, key, value, dropout_p, is_causal, *, attn_mask, scale)``; GQA is implied by K's head count."""
    causal = bool(_get(args, kwargs, 4, "is_causal", False))
    return _sdpa(args[0], args[1], args[2], kwargs.get("attn_mask"), causal, _get(args, kwargs, 3, "dropout_p", 0.0))


@op_rule(aten._scaled_dot_product_flash_attention)
def count_flash_attention(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(query, key, value, dropout_p, is_causal, ...)``: no explicit mask."""
    causal = bool(_get(args, kwargs, 4, "is_causal", False))
    return _sdpa(args[0], args[1], args[2], None, causal, _get(args, kwargs, 3, "dropout_p", 0.0))


@op_rule(aten._scaled_dot_product_efficient_attention, aten._scaled_dot_product_cudnn_attention)
def count_efficient_attention(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(query, key, value, attn_bias, compute_log_sumexp, dropout_p, is_causal, ...)``."""
    mask, causal = _get(args, kwargs, 3, "attn_bias"), bool(_get(args, kwargs, 6, "is_causal", False))
    return _sdpa(args[0], args[1], args[2], mask, causal, _get(args, kwargs, 5, "dropout_p", 0.0))


@op_rule(aten._scaled_dot_product_fused_attention_overrideable)
def count_overrideable_attention(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(query, key, value, attn_bias, dropout_p, is_causal, ...)``."""
    mask, causal = _get(args, kwargs, 3, "attn_bias"), bool(_get(args, kwargs, 5, "is_causal", False))
    return _sdpa(args[0], args[1], args[2], mask, causal, _get(args, kwargs, 4, "dropout_p", 0.0))


def _varlen(query: Any, value: Any, cu_q: Any, cu_k: Any, causal: bool, dropout_p: float) -> Count:
    """Packed variable-length sequences (nested tensors on GPUs): ``(total, H, E)`` tokens and cumulative
    sequence lengths; each sequence is attention of its own ``L_i × S_i`` (read from the offsets)."""
    q, v = shape_of(query), shape_of(value)
    offsets_q, offsets_k = cu_q.tolist(), cu_k.tolist()
    total = ZERO
    for q_start, q_end, k_start, k_end in zip(offsets_q, offsets_q[1:], offsets_k, offsets_k[1:]):
        length, keys = q_end - q_start, k_end - k_start
        mask = (length, keys) if causal else None
        total += attention_count((1,), q[-2], length, keys, q[-1], v[-1], mask, dropout_p > 0)
    return total


@op_rule(aten._efficient_attention_forward)
def count_efficient_attention_forward(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(query, key, value, bias, cu_seqlens_q, cu_seqlens_k, max_q, max_k, dropout_p, custom_mask_type, ...)``
    on ``(N, L, H, E)`` inputs; ``custom_mask_type`` 1 or 2 is a causal mask."""
    causal = args[9] != 0
    if args[4] is not None:
        return _varlen(args[0], args[2], args[4], args[5], causal, args[8])
    return _sdpa(args[0], args[1], args[2], args[3], causal, args[8], heads_dim=-2)


@op_rule(aten._flash_attention_forward)
def count_flash_attention_forward(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(query, key, value, cum_seq_q, cum_seq_k, max_q, max_k, dropout_p, is_causal, ...)`` on
    ``(N, L, H, E)`` inputs; a sliding window is counted as the full square, like a causal mask."""
    if args[3] is not None:
        return _varlen(args[0], args[2], args[3], args[4], bool(args[8]), args[7])
    return _sdpa(args[0], args[1], args[2], None, bool(args[8]), args[7], heads_dim=-2)


def attention_backward_count(batch: Sequence[Number], heads: Number, kv_heads: Number, length: Number,
                             keys: Number, e_k: Number, e_v: Number, grads: Sequence[bool],
                             dropout: bool = False) -> Count:
    """The math kernel's backward on ``(*batch, heads, ·, ·)`` queries and ``kv_heads`` key/value heads, for the
    gradients ``grads`` = (query, key, value) asked for: dV = Pᵀ·dY; dP = dY·Vᵀ (through dropout's mask and
    rescale), softmax's backward dS, dQ = dS·K and dK = dSᵀ·Q, each times its √scale; the expanded heads'
    key and value gradients summed back into ``kv_heads``."""
    want_q, want_k, want_v = (bool(g) for g in grads)
    n = numel(batch) * heads
    scores = stand_in(*batch, heads, length, keys)
    total = _bmm(n, keys, length, e_v) if want_v else ZERO
    if want_q or want_k:
        total += _bmm(n, length, e_v, keys)
        if dropout:
            total += cost_of(aten.div_.Scalar, scores, 1.0, out=scores) + _mul(*batch, heads, length, keys)
        total += cost_of(aten._softmax_backward_data.default, scores, scores, -1, torch.float32, out=scores)
    if want_q:
        total += _bmm(n, length, keys, e_k) + _mul(*batch, heads, length, e_k)
    if want_k:
        total += _bmm(n, keys, length, e_k) + _mul(*batch, heads, keys, e_k)
    group = heads // kv_heads
    for wanted, features in ((want_k, e_k), (want_v, e_v)):
        if wanted and group > 1:
            expanded = stand_in(*batch, kv_heads, group, keys, features)
            total += cost_of(aten.sum.dim_IntList, expanded, [len(batch) + 1], True,
                             out=stand_in(*batch, kv_heads, 1, keys, features))
    return total


def _sdpa_backward(query: Any, key: Any, value: Any, grads: Sequence[bool], dropout_p: float) -> Count:
    """A fused kernel's backward on ``(N, H, L, E)`` inputs: the math kernel's for the gradients that autograd
    needs (``grads``, and an input that requires one), though a fused kernel may compute all three."""
    grads = [bool(g) and getattr(t, "requires_grad", True) for g, t in zip(grads, (query, key, value))]
    q, k, v = shape_of(query), shape_of(key), shape_of(value)
    return attention_backward_count(q[:-3], q[-3], k[-3], q[-2], k[-2], q[-1], v[-1], grads, dropout_p > 0)


@op_rule(aten._scaled_dot_product_flash_attention_for_cpu_backward)
def count_flash_attention_for_cpu_backward(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(grad_out, query, key, value, out, logsumexp, dropout_p, is_causal, *, attn_mask, scale)``: all three
    gradients, as the math kernel's backward (a mask adds no work to the backward)."""
    return _sdpa_backward(args[1], args[2], args[3], (True, True, True), _get(args, kwargs, 6, "dropout_p", 0.0))


@op_rule(aten._scaled_dot_product_flash_attention_backward)
def count_flash_attention_backward(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(grad_out, query, key, value, out, logsumexp, cum_seq_q, cum_seq_k, max_q, max_k, dropout_p, …)``."""
    return _sdpa_backward(args[1], args[2], args[3], (True, True, True), _get(args, kwargs, 10, "dropout_p", 0.0))


@op_rule(aten._scaled_dot_product_efficient_attention_backward)
def count_efficient_attention_backward(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(grad_out, query, key, value, attn_bias, out, logsumexp, philox_seed, philox_offset, dropout_p,
    grad_input_mask, …)``: the gradients the mask asks for (the bias's is dS itself, no extra work)."""
    mask = _get(args, kwargs, 10, "grad_input_mask", (True, True, True, False))
    return _sdpa_backward(args[1], args[2], args[3], tuple(mask[:3]), _get(args, kwargs, 9, "dropout_p", 0.0))


@op_rule(aten._scaled_dot_product_cudnn_attention_backward)
def count_cudnn_attention_backward(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(grad_out, query, key, value, out, logsumexp, philox_seed, philox_offset, attn_bias, cum_seq_q,
    cum_seq_k, max_q, max_k, dropout_p, …)``."""
    return _sdpa_backward(args[1], args[2], args[3], (True, True, True), _get(args, kwargs, 13, "dropout_p", 0.0))


def _linear(x: Sequence[Number], out_features: Number, contiguous: bool) -> Count:
    """``F.linear`` with a bias on an input of shape ``x``: ``addmm`` on the flattened rows, or, for an input
    it cannot flatten without a copy (a transposed view), ``mm`` then a broadcast ``add`` of the bias."""
    rows, features = numel(x[:-1]), x[-1]
    a, w_t, y = stand_in(rows, features), stand_in(features, out_features), stand_in(rows, out_features)
    if contiguous or len(x) == 2:
        return cost_of(aten.addmm.default, stand_in(out_features), a, w_t, out=y)
    y_nd = stand_in(*x[:-1], out_features)
    return cost_of(aten.mm.default, a, w_t, out=y) + cost_of(aten.add.Tensor, y_nd, stand_in(out_features), out=y_nd)


def _multihead(batch: Number, length: Number, embed_dim: Number, heads: Number, masked: bool,
               need_weights: bool, average: bool, contiguous: bool) -> Count:
    """nn.MultiheadAttention's decomposed forward on batch-first self-attention input of ``(N, L, E)``.

    It transposes the input to ``(L, N, E)`` (``contiguous`` says whether that view still is), projects it to
    Q, K, V with one biased linear, runs attention per head (the math kernel without weights; Q-only scaling,
    ``baddbmm`` and the mean over heads with them) and projects the output with ``addmm``.
    """
    total = _linear((length, batch, embed_dim), 3 * embed_dim, contiguous)
    head_dim = embed_dim // heads
    mask = (length, length) if masked else None
    total += attention_count((batch,), heads, length, length, head_dim, head_dim, mask, scale_k=not need_weights,
                             mask_in_bmm=need_weights)
    total += _linear((length * batch, embed_dim), embed_dim, contiguous=True)
    if need_weights and average:
        weights, averaged = stand_in(batch, heads, length, length), stand_in(batch, length, length)
        total += cost_of(aten.mean.dim, weights, [1], out=averaged)
    return total


def _sequences(x: Any) -> list[tuple[Number, Number, bool]]:
    """``(batch, length, transposed view contiguous)`` of a ``(N, L, E)`` input; a nested input (the fast path's
    padding-free batch) is one sequence of batch 1 per component, each with its own length."""
    if x.is_nested:
        return [(1, int(size[0]), True) for size in x._nested_tensor_size().tolist()]
    return [(shape_of(x)[0], shape_of(x)[1], x.transpose(0, 1).is_contiguous())]


@op_rule(aten._native_multi_head_attention)
def count_native_multi_head_attention(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(query, key, value, embed_dim, num_head, qkv_weight, qkv_bias, proj_weight, proj_bias, mask,
    need_weights, average_attn_weights, mask_type)``, called for batch-first self-attention (query is key is
    value)."""
    if args[0] is not args[1] or args[1] is not args[2]:
        raise NotImplementedError("_native_multi_head_attention is counted for self-attention only")
    masked = _get(args, kwargs, 9, "mask") is not None
    need_weights = bool(_get(args, kwargs, 10, "need_weights", True))
    average = bool(_get(args, kwargs, 11, "average_attn_weights", True))
    return sum((_multihead(n, length, args[3], args[4], masked, need_weights, average, contiguous)
                for n, length, contiguous in _sequences(args[0])), ZERO)


def _encoder_layer(batch: Number, length: Number, embed_dim: Number, heads: Number, hidden: Number,
                   use_gelu: bool, eps: float, masked: bool, contiguous: bool) -> Count:
    x = stand_in(batch, length, embed_dim)
    norm = cost_of(aten.native_layer_norm.default, x, [embed_dim], stand_in(embed_dim), stand_in(embed_dim), eps,
                   out=(x, stand_in(batch, length, 1), stand_in(batch, length, 1)))
    residual = cost_of(aten.add.Tensor, x, x, out=x)
    h = stand_in(batch, length, hidden)
    activation = cost_of(aten.gelu.default, h, out=h) if use_gelu else cost_of(aten.relu.default, h, out=h)
    feed_forward = (_linear((batch, length, embed_dim), hidden, contiguous=True) + activation
                    + _linear((batch, length, hidden), embed_dim, contiguous=True))
    attention = _multihead(batch, length, embed_dim, heads, masked, False, False, contiguous)
    return attention + feed_forward + residual + residual + norm + norm


@op_rule(aten._transformer_encoder_layer_fwd)
def count_transformer_encoder_layer(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(src, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight, proj_bias, use_gelu, norm_first, eps,
    norm_weight_1, norm_bias_1, norm_weight_2, norm_bias_2, ffn_weight_1, ffn_bias_1, ffn_weight_2,
    ffn_bias_2, mask, mask_type)``: self-attention (weights not returned), two residual adds, two layer norms,
    and the feed-forward ``linear2(activation(linear1(x)))``. With norm_first the attention reads norm1's
    fresh output rather than ``src``."""
    src, embed_dim, heads, use_gelu, norm_first, eps = args[0], args[1], args[2], args[7], args[8], args[9]
    masked = _get(args, kwargs, 18, "mask") is not None
    hidden = shape_of(args[14])[0]
    total = ZERO
    for n, length, contiguous in _sequences(src):
        if norm_first:
            contiguous = stand_in(n, length, embed_dim).transpose(0, 1).is_contiguous()
        total += _encoder_layer(n, length, embed_dim, heads, hidden, use_gelu, eps, masked, contiguous)
    return total


zero_cost(
    "nested-tensor packing and unpacking around the transformer fast path: data movement, boolean mask "
    "inversion and a mask check, no arithmetic on activations",
    [aten._nested_tensor_from_mask, aten._nested_tensor_from_mask_left_aligned, aten.to_padded_tensor,
     aten.logical_not],
)
