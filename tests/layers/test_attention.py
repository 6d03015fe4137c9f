"""Attention: SDPA (plain, causal, masked, GQA) by hand; every fused kernel == the math kernel; MultiheadAttention
formula == measured on the CPU fast path and on meta; TransformerEncoderLayer fast path == its decomposition."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from support import formula_and_measured, param_count
from torch import nn

from flopcalc.layers.attention import SDPA, SDPA_CAUSAL
from flopcalc.measure import Count, OpCounter, measure
from flopcalc.measure.core import rule_for

aten = torch.ops.aten
DEVICES = ("cpu", "meta")
PROPERTY = settings(max_examples=30, deadline=None, derandomize=True)


def nonzero(ops: Mapping[str, int]) -> dict[str, int]:
    return {str(kind): n for kind, n in ops.items() if n}


def measured(fn: Callable[[], Any]) -> tuple[Count, set[str]]:
    """The count of ``fn()`` and the names of the ops it ran (to see which kernel or path torch took)."""
    names: set[str] = set()
    total = [Count()]

    def sink(func: Any, count: Count | None) -> None:
        assert count is not None, f"uncounted op {func}"
        names.add(str(func.overloadpacket).split(".")[-1])
        total[0] = total[0] + count

    with OpCounter(sink):
        fn()
    return total[0], names


def tensor(*shape: int, device: str) -> torch.Tensor:
    return torch.randn(shape) if device == "cpu" else torch.empty(shape, device=device)


# N = 2 batch, H = 4 heads, L = 6 queries, S = 5 keys, E_k = E_v = 8 (E_v = 3 in one case).
SCORES = 2 * 4 * 6 * 5
SDPA_MACS = 2 * 4 * 6 * 5 * 8 + 2 * 4 * 6 * 5 * 8  # Q·Kᵀ, then weights·V
SDPA_OPS = {
    "mul": 2 * 4 * 6 * 8 + 2 * 4 * 5 * 8,  # √scale on Q (L·E_k per head) and on K (S·E_k per head)
    "exp": SCORES, "div": SCORES, "add": 2 * 4 * 6 * (5 - 1),  # softmax: per row of 5, 5 exp, 4 add, 5 div
}
MASKED_OPS = {**SDPA_OPS, "add": SDPA_OPS["add"] + SCORES}  # plus one mask add per score

SDPA_CASES = [
    ("plain", {}, 4, 8, SDPA_MACS, SDPA_OPS),
    ("causal", {"is_causal": True}, 4, 8, SDPA_MACS, MASKED_OPS),
    ("float-mask", {"attn_mask": "float"}, 4, 8, SDPA_MACS, MASKED_OPS),
    ("bool-mask", {"attn_mask": "bool"}, 4, 8, SDPA_MACS, MASKED_OPS),
    # 2 K/V heads shared by 4 query heads: the same work as 4 full heads (K and V are expanded first)
    ("gqa", {"enable_gqa": True}, 2, 8, SDPA_MACS, SDPA_OPS),
    ("gqa-causal", {"enable_gqa": True, "is_causal": True}, 2, 8, SDPA_MACS, MASKED_OPS),
    # E_v = 3 ≠ E_k: weights·V is 3 MACs per score (the CPU flash kernel declines it: the math kernel runs)
    ("value-dim-3", {}, 4, 3, 2 * 4 * 6 * 5 * 8 + 2 * 4 * 6 * 5 * 3, SDPA_OPS),
]


@pytest.mark.parametrize("kwargs, kv_heads, e_v, macs, ops", [c[1:] for c in SDPA_CASES],
                         ids=[c[0] for c in SDPA_CASES])
@pytest.mark.parametrize("device", DEVICES)
def test_sdpa_by_hand(kwargs: dict[str, Any], kv_heads: int, e_v: int, macs: int, ops: dict[str, int],
                      device: str) -> None:
    q = tensor(2, 4, 6, 8, device=device)
    k, v = tensor(2, kv_heads, 5, 8, device=device), tensor(2, kv_heads, 5, e_v, device=device)
    kwargs = dict(kwargs)
    if kwargs.get("attn_mask") == "float":
        kwargs["attn_mask"] = tensor(6, 5, device=device)
    elif kwargs.get("attn_mask") == "bool":
        kwargs["attn_mask"] = torch.ones(6, 5, dtype=torch.bool, device=device).tril()
    count, names = measured(lambda: F.scaled_dot_product_attention(q, k, v, **kwargs))
    assert (count.macs, nonzero(count.ops)) == (macs, ops)
    fused = "_scaled_dot_product_flash_attention_for_cpu" in names
    assert fused == (device == "cpu" and e_v == 8)
    masked = "is_causal" in kwargs or "attn_mask" in kwargs
    formula = SDPA.evaluate({"N": 2, "H_q": 4, "L": 6, "S": 5, "E_k": 8, "E_v": e_v, "M": int(masked)})
    assert (formula.macs, nonzero(formula.ops), formula.output_shape) == (macs, ops, (2, 4, 6, e_v))


def test_sdpa_causal_by_hand() -> None:
    evaluation = SDPA_CAUSAL.evaluate({"N": 2, "H_q": 4, "L": 6, "S": 5, "E_k": 8, "E_v": 8})
    assert evaluation.macs == 3840  # 2·4·6·5 scores · (8 + 8) = 3,840
    assert nonzero(evaluation.ops) == {
        "mul": 704,  # √scale on Q 2·4·6·8 = 384 and on K 2·4·5·8 = 320
        "add": 432,  # the mask, one per score: 240; softmax 2·4·6 = 48 rows · 4 = 192
        "exp": 240,  # one per score
        "div": 240,
    }
    assert evaluation.output_shape == (2, 4, 6, 8)


def meta(*shape: int) -> torch.Tensor:
    return torch.empty(shape, device="meta")


def heads_first(n: int, h: int, length: int, e: int) -> torch.Tensor:
    return meta(n, h, length, e)


def heads_second(n: int, h: int, length: int, e: int) -> torch.Tensor:
    return meta(n, length, h, e)


# Kernels that need a GPU: their rules are applied to meta stand-ins of their arguments.
FUSED = [
    ("flash", aten._scaled_dot_product_flash_attention.default, heads_first,
     lambda q, k, v, causal: (q, k, v, 0.0, causal)),
    ("efficient", aten._scaled_dot_product_efficient_attention.default, heads_first,
     lambda q, k, v, causal: (q, k, v, None, False, 0.0, causal)),
    ("cudnn", aten._scaled_dot_product_cudnn_attention.default, heads_first,
     lambda q, k, v, causal: (q, k, v, None, False, 0.0, causal)),
    ("overrideable", aten._scaled_dot_product_fused_attention_overrideable.default, heads_first,
     lambda q, k, v, causal: (q, k, v, None, 0.0, causal)),
    ("flash-forward", aten._flash_attention_forward.default, heads_second,
     lambda q, k, v, causal: (q, k, v, None, None, 6, 5, 0.0, causal, False)),
    ("efficient-forward", aten._efficient_attention_forward.default, heads_second,
     lambda q, k, v, causal: (q, k, v, None, None, None, 6, 5, 0.0, int(causal))),
    ("flash-cpu", aten._scaled_dot_product_flash_attention_for_cpu.default, heads_first,
     lambda q, k, v, causal: (q, k, v, 0.0, causal)),
]


@pytest.mark.parametrize("op, layout, make_args", [c[1:] for c in FUSED], ids=[c[0] for c in FUSED])
@pytest.mark.parametrize("causal", [False, True], ids=["plain", "causal"])
@pytest.mark.parametrize("kv_heads", [4, 2], ids=["mha", "gqa"])
def test_fused_kernels_count_as_math(op: Any, layout: Any, make_args: Any, causal: bool, kv_heads: int) -> None:
    q, k, v = layout(2, 4, 6, 8), layout(2, kv_heads, 5, 8), layout(2, kv_heads, 5, 8)
    count = rule_for(op)(make_args(q, k, v, causal), {}, None)
    math = measure(lambda: F.scaled_dot_product_attention(
        meta(2, 4, 6, 8), meta(2, kv_heads, 5, 8), meta(2, kv_heads, 5, 8), is_causal=causal, enable_gqa=True
    ))
    assert (count.macs, nonzero(count.ops)) == (SDPA_MACS, MASKED_OPS if causal else SDPA_OPS)
    assert (count.macs, nonzero(count.ops)) == (math.count.macs, nonzero(math.count.ops))


def test_fused_dropout_is_the_math_kernels_mask() -> None:
    """Dropout on the weights: the math kernel's rescale (div) and mask multiply (mul), one each per score."""
    q, k, v = meta(2, 4, 6, 8), meta(2, 4, 5, 8), meta(2, 4, 5, 8)
    count = rule_for(aten._scaled_dot_product_efficient_attention.default)((q, k, v, None, False, 0.1), {}, None)
    assert nonzero(count.ops) == {**SDPA_OPS, "div": 2 * SCORES, "mul": SDPA_OPS["mul"] + SCORES}


@pytest.mark.parametrize("op, make_args", [
    (aten._flash_attention_forward.default,
     lambda q, k, v, cq, ck, causal: (q, k, v, cq, ck, 6, 5, 0.0, causal, False)),
    (aten._efficient_attention_forward.default,
     lambda q, k, v, cq, ck, causal: (q[None], k[None], v[None], None, cq, ck, 6, 5, 0.0, int(causal))),
], ids=["flash-forward", "efficient-forward"])
@pytest.mark.parametrize("causal", [False, True], ids=["plain", "causal"])
def test_variable_length_kernels_count_each_sequence(op: Any, make_args: Any, causal: bool) -> None:
    """Two packed sequences: 6 queries on 5 keys, then 4 on 4 (cumulative offsets 0, 6, 10 and 0, 5, 9)."""
    q, k, v = meta(10, 4, 8), meta(9, 4, 8), meta(9, 4, 8)
    offsets_q, offsets_k = torch.tensor([0, 6, 10]), torch.tensor([0, 5, 9])
    count = rule_for(op)(make_args(q, k, v, offsets_q, offsets_k, causal), {}, None)
    first = measure(lambda: F.scaled_dot_product_attention(meta(1, 4, 6, 8), meta(1, 4, 5, 8), meta(1, 4, 5, 8),
                                                           is_causal=causal))
    second = measure(lambda: F.scaled_dot_product_attention(meta(1, 4, 4, 8), meta(1, 4, 4, 8), meta(1, 4, 4, 8),
                                                            is_causal=causal))
    expected = first.count + second.count
    assert count.macs == expected.macs == 4 * (6 * 5 + 4 * 4) * (8 + 8)
    assert nonzero(count.ops) == nonzero(expected.ops)


# nn.MultiheadAttention(E = 16, 4 heads) on N = 2, L = S = 6, batch_first, self-attention.
MHA_MACS = 4 * (2 * 6 * 16 * 16) + 2 * (2 * 4 * 6 * 6 * (16 // 4))  # q, k, v, out projections; Q·Kᵀ and A·V
MHA_BIAS = 4 * (2 * 6 * 16)  # one bias add per projected element
SOFTMAX = {"exp": 2 * 4 * 6 * 6, "add": 2 * 4 * 6 * (6 - 1), "div": 2 * 4 * 6 * 6}
MEAN = {"add": 2 * 6 * 6 * (4 - 1), "div": 2 * 6 * 6}  # average of the 4 heads' weights
MHA_CASES = [
    # need_weights=True (default): Q alone is scaled, weights averaged over heads
    ("weights", {}, {"bias_add": MHA_BIAS, "mul": 2 * 6 * 16, "exp": SOFTMAX["exp"],
                     "add": SOFTMAX["add"] + MEAN["add"], "div": SOFTMAX["div"] + MEAN["div"]}),
    ("weights-per-head", {"average_attn_weights": False}, {"bias_add": MHA_BIAS, "mul": 2 * 6 * 16, **SOFTMAX}),
    # need_weights=False: scaled_dot_product_attention, √scale on Q and on K
    ("no-weights", {"need_weights": False}, {"bias_add": MHA_BIAS, "mul": 2 * (2 * 6 * 16), **SOFTMAX}),
    # the mask is baddbmm's input (a bias add per score) when the weights are returned, an add otherwise
    ("weights-mask", {"attn_mask": True}, {"bias_add": MHA_BIAS + 2 * 4 * 6 * 6, "mul": 2 * 6 * 16,
                                           "exp": SOFTMAX["exp"], "add": SOFTMAX["add"] + MEAN["add"],
                                           "div": SOFTMAX["div"] + MEAN["div"]}),
    ("no-weights-mask", {"need_weights": False, "attn_mask": True},
     {"bias_add": MHA_BIAS, "mul": 2 * (2 * 6 * 16), **SOFTMAX, "add": SOFTMAX["add"] + 2 * 4 * 6 * 6}),
]


def mha_inputs(kwargs: dict[str, Any], device: str) -> tuple[torch.Tensor, dict[str, Any]]:
    x = tensor(2, 6, 16, device=device)
    kwargs = dict(kwargs)
    if kwargs.pop("attn_mask", False):
        kwargs["attn_mask"] = torch.ones(6, 6, dtype=torch.bool, device=device).triu(1)
    return x, kwargs


@pytest.mark.parametrize("kwargs, ops", [c[1:] for c in MHA_CASES], ids=[c[0] for c in MHA_CASES])
@pytest.mark.parametrize("device", DEVICES)
def test_multihead_attention_by_hand(kwargs: dict[str, Any], ops: dict[str, int], device: str) -> None:
    module = nn.MultiheadAttention(16, 4, batch_first=True).to(device).eval()
    x, kwargs = mha_inputs(kwargs, device)
    evaluation, count, out = formula_and_measured(module, x, x, x, **kwargs)
    assert (evaluation.macs, nonzero(evaluation.ops)) == (MHA_MACS, ops)
    assert (count.macs, nonzero(count.ops)) == (MHA_MACS, ops)
    assert evaluation.params == param_count(module) == 4 * (16 * 16 + 16)
    assert evaluation.output_shape == tuple(out[0].shape) == (2, 6, 16)
    with torch.no_grad():
        _, names = measured(lambda: module(x, x, x, **kwargs))
    assert ("_native_multi_head_attention" in names) == (device == "cpu")  # the fast path hides the projections


def mha_call(module: nn.MultiheadAttention, shape: tuple[int, ...], source: int, options: dict[str, Any],
             device: str) -> tuple[tuple[torch.Tensor, ...], dict[str, Any]]:
    """query of ``shape`` ((L, E), (L, N, E) or batch-first), key/value of ``source`` positions."""
    batched, first = len(shape) == 3, module.batch_first and len(shape) == 3
    length, batch = (shape[1], shape[0]) if first else (shape[0], shape[1] if batched else 1)
    x = tensor(*shape, device=device)

    def other(features: int) -> torch.Tensor:
        if not batched:
            return tensor(source, features, device=device)
        sizes = (batch, source) if first else (source, batch)
        return tensor(*sizes, features, device=device)

    kwargs = {k: v for k, v in options.items() if k in ("need_weights", "average_attn_weights", "is_causal")}
    if options.get("attn_mask") or options.get("is_causal"):
        kwargs["attn_mask"] = torch.ones(length, source, dtype=torch.bool, device=device).triu(1)
    if options.get("key_padding_mask"):
        kwargs["key_padding_mask"] = torch.zeros(*((batch,) if batched else ()), source, dtype=torch.bool,
                                                 device=device)
    if options.get("self", True) and source == length and module._qkv_same_embed_dim:
        return (x, x, x), kwargs
    return (x, other(module.kdim), other(module.vdim)), kwargs


def assert_mha_agrees(module: nn.MultiheadAttention, shape: tuple[int, ...], source: int,
                      options: dict[str, Any]) -> None:
    for device in DEVICES:
        moved = copy.deepcopy(module).to(device).eval()
        args, kwargs = mha_call(moved, shape, source, options, device)
        evaluation, count, out = formula_and_measured(moved, *args, **kwargs)
        assert evaluation.macs == count.macs, device
        assert nonzero(evaluation.ops) == nonzero(count.ops), device
        assert evaluation.output_shape == tuple(out[0].shape), device
        assert evaluation.params == param_count(moved)


MHA_VARIANTS = [
    ("seq-first", {"embed_dim": 16, "num_heads": 4}, (6, 2, 16), 6, {}),
    ("cross-kdim-vdim", {"embed_dim": 16, "num_heads": 4, "kdim": 5, "vdim": 7}, (6, 2, 16), 4, {}),
    ("bias-kv-zero-attn", {"embed_dim": 16, "num_heads": 4, "add_bias_kv": True, "add_zero_attn": True},
     (6, 2, 16), 6, {}),
    ("no-bias-no-weights", {"embed_dim": 16, "num_heads": 2, "bias": False, "kdim": 3, "vdim": 3}, (6, 2, 16), 5,
     {"need_weights": False}),
    ("unbatched", {"embed_dim": 12, "num_heads": 3}, (6, 12), 6, {}),
    ("unbatched-cross", {"embed_dim": 12, "num_heads": 3, "batch_first": True}, (6, 12), 4, {"self": False}),
    ("key-padding", {"embed_dim": 16, "num_heads": 4, "batch_first": True}, (2, 6, 16), 6,
     {"key_padding_mask": True, "need_weights": False}),
    ("both-masks", {"embed_dim": 16, "num_heads": 4, "batch_first": True}, (2, 6, 16), 6,
     {"key_padding_mask": True, "attn_mask": True}),
    ("both-masks-no-weights", {"embed_dim": 16, "num_heads": 4, "batch_first": True}, (2, 6, 16), 6,
     {"key_padding_mask": True, "attn_mask": True, "need_weights": False}),
    ("causal", {"embed_dim": 16, "num_heads": 4, "batch_first": True}, (2, 6, 16), 6,
     {"is_causal": True, "need_weights": False}),
    ("batch-first-cross", {"embed_dim": 8, "num_heads": 2, "batch_first": True, "kdim": 4, "vdim": 4},
     (3, 5, 8), 7, {}),
]


@pytest.mark.parametrize("kwargs, shape, source, options", [c[1:] for c in MHA_VARIANTS],
                         ids=[c[0] for c in MHA_VARIANTS])
def test_multihead_attention_variants(kwargs: dict[str, Any], shape: tuple[int, ...], source: int,
                                      options: dict[str, Any]) -> None:
    assert_mha_agrees(nn.MultiheadAttention(**kwargs), shape, source, options)


@PROPERTY
@given(
    heads=st.integers(1, 4), head_dim=st.integers(1, 4), batch=st.integers(1, 3), length=st.integers(1, 5),
    source=st.integers(1, 5), kdim=st.sampled_from([None, 3]), bias=st.booleans(), batch_first=st.booleans(),
    bias_kv=st.booleans(), zero_attn=st.booleans(), need_weights=st.booleans(), average=st.booleans(),
)
def test_multihead_attention_property(heads: int, head_dim: int, batch: int, length: int, source: int,
                                      kdim: int | None, bias: bool, batch_first: bool, bias_kv: bool,
                                      zero_attn: bool, need_weights: bool, average: bool) -> None:
    embed = heads * head_dim
    module = nn.MultiheadAttention(embed, heads, bias=bias, add_bias_kv=bias_kv, add_zero_attn=zero_attn,
                                   kdim=kdim, vdim=kdim, batch_first=batch_first)
    shape = (batch, length, embed) if batch_first else (length, batch, embed)
    options = {"need_weights": need_weights, "average_attn_weights": average}
    assert_mha_agrees(module, shape, source, options)


ENCODER_CASES = [
    ("relu", {}, {}),
    ("gelu", {"activation": "gelu"}, {}),
    ("norm-first", {"norm_first": True}, {}),
    ("src-mask", {}, {"src_mask": True}),
    ("padding-mask", {}, {"src_key_padding_mask": True}),
]


@pytest.mark.parametrize("options, call", [c[1:] for c in ENCODER_CASES], ids=[c[0] for c in ENCODER_CASES])
def test_transformer_encoder_layer_fast_path_equals_decomposition(options: dict[str, Any],
                                                                  call: dict[str, Any]) -> None:
    layer = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True, **options).eval()
    counts, kernels = {}, {}
    for device in DEVICES:
        moved = copy.deepcopy(layer).to(device)
        x = tensor(2, 6, 16, device=device)
        kwargs = {}
        if call.get("src_mask"):
            kwargs["src_mask"] = torch.ones(6, 6, dtype=torch.bool, device=device).triu(1)
        if call.get("src_key_padding_mask"):
            kwargs["src_key_padding_mask"] = torch.zeros(2, 6, dtype=torch.bool, device=device)
        with torch.no_grad():
            counts[device], kernels[device] = measured(lambda m=moved, x=x, kw=kwargs: m(x, **kw))
    assert "_transformer_encoder_layer_fwd" in kernels["cpu"]
    assert "_transformer_encoder_layer_fwd" not in kernels["meta"]
    assert counts["cpu"].macs == counts["meta"].macs
    assert nonzero(counts["cpu"].ops) == nonzero(counts["meta"].ops)
    # in-projection 16 → 48, attention, out-projection 16 → 16, feed-forward 16 → 32 → 16; N·L = 12 tokens
    assert counts["cpu"].macs == 12 * 16 * 48 + 2 * (2 * 4 * 6 * 6 * 4) + 12 * 16 * 16 + 2 * (12 * 16 * 32)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype stage")
def test_nested_encoder_counts_each_sequence() -> None:
    """With a padding mask on CPU, nn.TransformerEncoder runs its layers on a nested tensor of the unpadded
    sequences (lengths 6 and 4): the count is the layer's dense count at each length, per layer."""
    layer = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True).eval()
    encoder = nn.TransformerEncoder(layer, 2).eval()
    padding = torch.zeros(2, 6, dtype=torch.bool)
    padding[1, 4:] = True
    x = torch.randn(2, 6, 16)
    with torch.no_grad():
        nested, kernels = measured(lambda: encoder(x, src_key_padding_mask=padding))
        dense = [measured(lambda n=n: encoder.layers[0](x[:1, :n]))[0] for n in (6, 4)]
    assert "_nested_tensor_from_mask" in kernels
    expected = dense[0] + dense[1] + dense[0] + dense[1]
    assert (nested.macs, nonzero(nested.ops)) == (expected.macs, nonzero(expected.ops))
