"""Backward formulas of attention (nn.MultiheadAttention, F.scaled_dot_product_attention) and of matrix
products (``@``, torch.matmul, bmm, einsum): by hand, frozen and without an input gradient, and formula ==
measurement per row (property tests on cpu and meta), the fused CPU kernels' backward counted as the math
kernel's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import flopcalc
from flopcalc import Status
from flopcalc.measure import measure
from flopcalc.render.json import to_dict

PROPERTY = settings(max_examples=25, deadline=None, derandomize=True)


class SelfAttention(nn.Module):
    """nn.MultiheadAttention used as self-attention (query is key is value), inside a model."""

    def __init__(self, embed: int = 8, heads: int = 2, **options: object) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(embed, heads, **options)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor, need_weights: bool = False) -> torch.Tensor:
        return self.attn(x, x, x, need_weights=need_weights)[0]


def parts(row: flopcalc.LayerRow) -> tuple[int, dict[str, int], int, dict[str, int]]:
    b = row.backward
    assert b.grad_input is not None and b.grad_weight is not None
    return b.grad_input.macs, dict(b.grad_input.ops), b.grad_weight.macs, dict(b.grad_weight.ops)


# MultiheadAttention, embed 8, 2 heads (head dim 4), sequence 3, batch 1, need_weights=False.
IN_PROJ = 3 * 8 * 24  # 3 rows · 8 in · 24 out (Q, K, V) = 576 MACs for dW_in, and again for dX
OUT_PROJ = 3 * 8 * 8  # 192 MACs for dW_out, and again for its input's gradient
CORE = 4 * (1 * 2 * 3 * 3 * 4)  # dV = Pᵀ·dY, dP = dY·Vᵀ, dQ = dS·K, dK = dSᵀ·Q: 18 scores · 4 each = 288
CORE_OPS = {
    "mul": 2 * 18 + 2 * 3 * 4 + 2 * 3 * 4,  # softmax backward 2 per score, √scale on dQ and on dK: 84
    "add": (2 * 3 - 1) * 6,  # softmax backward: 2·3 − 1 per row of 3, 2 heads · 3 rows = 30
}
BIAS_SUMS = {"add": (3 - 1) * 24 + (3 - 1) * 8}  # in_proj_bias and out_proj.bias sum 3 rows: 48 + 16 = 64
# Q, K, V are selected from one packed projection: autograd sums their 3 gradients, 3·(3·1·8) each, 2·72 = 144
# adds, which are not counted (disjoint slices: assembling them is data movement, docs/conventions.md).
PACKED_SUMS = 2 * 3 * (3 * 1 * 8)
MHA_OPS = CORE_OPS


def test_multihead_attention_backward_by_hand():
    report = flopcalc.analyze(SelfAttention(), (3, 1, 8), backward=True)
    attn = report.row("attn")
    # The input needs no gradient: no dX for the input projection.
    assert parts(attn) == (OUT_PROJ + CORE, MHA_OPS, IN_PROJ + OUT_PROJ, BIAS_SUMS)
    assert attn.backward.status is Status.MATCH
    # 480 grad-input + 768 grad-weight MACs: 1,248
    assert report.totals.backward_macs == 1_248


def test_multihead_attention_backward_with_input_gradient_and_frozen():
    x = torch.randn(3, 1, 8, requires_grad=True)
    model = SelfAttention()
    attn = flopcalc.analyze(model, x, device="cpu", backward=True).row("attn")
    # The input's gradient through the packed in-projection: 3·24·8 = 576 MACs more.
    assert parts(attn) == (OUT_PROJ + CORE + IN_PROJ, MHA_OPS, IN_PROJ + OUT_PROJ, BIAS_SUMS)
    assert attn.backward.status is Status.MATCH
    model.requires_grad_(False)
    attn = flopcalc.analyze(model, x, device="cpu", backward=True).row("attn")
    # Frozen: no parameter gradients, but the input's still runs through every part.
    assert parts(attn) == (OUT_PROJ + CORE + IN_PROJ, MHA_OPS, 0, {})
    assert attn.backward.status is Status.MATCH


@pytest.mark.parametrize("frozen, expected", [
    # Only the in-projection's weight frozen: its bias still trains, so Q, K, V and everything after them
    # still need their gradients; no dW_in (576 MACs fewer).
    (["in_proj_weight"], (OUT_PROJ + CORE, MHA_OPS, OUT_PROJ, BIAS_SUMS)),
    # Only the output projection frozen: no dW_out, no sum of its bias's 3 rows ((3 − 1)·8 = 16 adds).
    (["out_proj.weight", "out_proj.bias"], (OUT_PROJ + CORE, MHA_OPS, IN_PROJ, {"add": (3 - 1) * 24})),
    # Only the in-projection's bias frozen: no sum of its 3 rows ((3 − 1)·24 = 48 adds).
    (["in_proj_bias"], (OUT_PROJ + CORE, MHA_OPS, IN_PROJ + OUT_PROJ, {"add": (3 - 1) * 8})),
    # The whole in-projection frozen: nothing before the output projection needs a gradient (no core, no
    # dX of the output projection); only dW_out and its bias's sum.
    (["in_proj_weight", "in_proj_bias"], (0, {}, OUT_PROJ, {"add": (3 - 1) * 8})),
])
def test_multihead_attention_backward_with_one_part_frozen(frozen, expected):
    model = SelfAttention()
    for name in frozen:
        model.attn.get_parameter(name).requires_grad_(False)
    attn = flopcalc.analyze(model, (3, 1, 8), backward=True).row("attn")
    assert parts(attn) == expected
    assert attn.backward.status is Status.MATCH
    assert attn.backward.flags["g_out_proj_weight"] == int("out_proj.weight" not in frozen)


class WithWeights(nn.Module):
    """Self-attention returning its weights, averaged over the heads (both outputs get a gradient)."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.attn(x, x, x)


def test_multihead_attention_returning_averaged_weights():
    attn = flopcalc.analyze(WithWeights(), (3, 1, 8), backward=True).row("attn")
    # Q alone is scaled (dK has no √scale mul: 84 − 24 = 60); the mean over the 2 heads of the returned
    # weights divides their gradient for each head: 18 div; the weights also multiply V, so their two
    # gradients are summed: 18 adds more.
    grad_input_ops = {"mul": 60, "add": 30 + 18, "div": 18}
    assert parts(attn) == (OUT_PROJ + CORE, grad_input_ops, IN_PROJ + OUT_PROJ, BIAS_SUMS)
    assert attn.backward.status is Status.MATCH


class DiscardsWeights(nn.Module):
    """``y, _ = mha(x, x, x)``: the weights are returned (need_weights defaults to True) but unused."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.attn(x, x, x)
        return y


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_multihead_attention_with_discarded_weights(device):
    attn = flopcalc.analyze(DiscardsWeights(), (3, 1, 8), device=device, backward=True).row("attn")
    # The returned weights get no gradient: no mean's backward (18 div) and no sum with their use by V (18
    # add); Q alone is scaled, as on the need_weights path: mul 84 − 24 = 60, softmax's 30 adds.
    assert parts(attn) == (OUT_PROJ + CORE, {"mul": 60, "add": 30}, IN_PROJ + OUT_PROJ, BIAS_SUMS)
    assert attn.backward.status is Status.MATCH


def test_multihead_attention_total_agrees_with_plain_autograd():
    """The report's measured backward equals autograd run under the op counter outside flopcalc, less the sums
    that assemble Q, K, V's gradients from disjoint slices of the packed projection."""
    model = SelfAttention()
    x = torch.randn(3, 1, 8)
    out = model(x)
    tally = measure(lambda: torch.autograd.grad(out, list(model.parameters()), torch.ones_like(out)))
    report = flopcalc.analyze(model, x, device="cpu", backward=True)
    assert report.totals.backward.measured.macs == tally.count.macs == 1_248
    assert tally.count.ops["add"] == 30 + 64 + PACKED_SUMS  # softmax, bias sums, packed slices: 238
    assert dict(report.totals.backward.measured.ops) == {**tally.count.ops, "add": 30 + 64}


class Attend(nn.Module):
    """Projections, then F.scaled_dot_product_attention: a functional row."""

    def __init__(self, kv_heads: int = 2) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(8, 8), nn.Linear(8, 4 * kv_heads), nn.Linear(8, 4 * kv_heads)
        self.kv_heads = kv_heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, _ = x.shape
        q = self.q(x).view(n, length, 2, 4).transpose(1, 2)
        k = self.k(x).view(n, length, self.kv_heads, 4).transpose(1, 2)
        v = self.v(x).view(n, length, self.kv_heads, 4).transpose(1, 2)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.kv_heads != 2)


def sdpa_row(report: flopcalc.Report) -> flopcalc.LayerRow:
    return next(row for row in report.rows if row.function == "F.scaled_dot_product_attention")


def test_sdpa_backward_by_hand_and_grouped_query():
    # Batch 1, 2 heads, 3 queries and keys, head dim 4: 18 scores; causal (a mask costs the backward nothing).
    row = sdpa_row(flopcalc.analyze(Attend(), (1, 3, 8), backward=True))
    assert parts(row) == (CORE, CORE_OPS, 0, {})
    assert row.backward.status is Status.MATCH
    # One key/value head shared by both query heads: the expanded heads' gradients are summed back,
    # (2 − 1)·3·(4 + 4) = 24 adds; the products are those of two full heads.
    row = sdpa_row(flopcalc.analyze(Attend(kv_heads=1), (1, 3, 8), backward=True))
    assert parts(row) == (CORE, {"mul": 84, "add": 30 + 24}, 0, {})
    assert row.backward.status is Status.MATCH


def test_sdpa_backward_with_frozen_keys_and_values():
    model = Attend()
    model.k.requires_grad_(False)
    model.v.requires_grad_(False)
    row = sdpa_row(flopcalc.analyze(model, (1, 3, 8), backward=True))
    # Only dQ: dP = dY·Vᵀ 72, softmax's backward 36 mul + 30 add, dQ = dS·K 72, √scale 24 mul.
    assert parts(row) == (72 + 72, {"mul": 36 + 24, "add": 30}, 0, {})
    assert row.backward.status is Status.MATCH


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_sdpa_backward_with_exactly_one_of_key_and_value(device):
    q, k, v = (torch.randn(1, 2, 3, 4, device=device) for _ in range(3))
    q.requires_grad_()

    class Model(nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v)

    # Keys need a gradient, values not: dP = dY·Vᵀ 72, dQ = dS·K 72, dK = dSᵀ·Q 72 (no dV): 216 MACs;
    # softmax's backward 2·18 = 36 mul and (2·3 − 1)·6 = 30 add, √scale on dQ and on dK 2·24 mul.
    row = sdpa_row(flopcalc.analyze(Model(), [q, k.requires_grad_(), v], device=device, backward=True))
    assert parts(row) == (3 * 72, {"mul": 36 + 2 * 24, "add": 30}, 0, {})
    assert row.backward.status is Status.MATCH
    # Values need a gradient, keys not: dV = Pᵀ·dY 72, dP 72, dQ 72 (no dK): 216 MACs; √scale on dQ only.
    k.requires_grad_(False)
    row = sdpa_row(flopcalc.analyze(Model(), [q, k, v.requires_grad_()], device=device, backward=True))
    assert parts(row) == (3 * 72, {"mul": 36 + 24, "add": 30}, 0, {})
    assert row.backward.status is Status.MATCH
    assert {name: row.backward.flags[name] for name in ("g_x1", "g_x2", "g_x3")} == {"g_x1": 1, "g_x2": 0, "g_x3": 1}


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_fused_cpu_attention_backward_is_the_math_kernels(device):
    """The CPU flash kernel's backward (what MultiheadAttention runs on CPU with real tensors) counts as the
    math kernel's that runs on meta: the same row, the same numbers."""
    model = SelfAttention()
    inputs = torch.randn(3, 1, 8) if device == "cpu" else (3, 1, 8)
    attn = flopcalc.analyze(model, inputs, device=device, backward=True).row("attn")
    assert parts(attn) == (OUT_PROJ + CORE, MHA_OPS, IN_PROJ + OUT_PROJ, BIAS_SUMS)
    assert not attn.backward.uncounted


class Product(nn.Module):
    """``x @ w`` (or another product) with a raw parameter ``w``."""

    def __init__(self, weight_shape: tuple[int, ...], op: str = "@") -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(weight_shape))
        self.op = op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.op == "bmm":
            return torch.bmm(x, self.w)
        if self.op == "einsum":
            return torch.einsum("bij,bjk->bik", x, self.w)
        return x @ self.w


def product_row(report: flopcalc.Report) -> flopcalc.LayerRow:
    return next(row for row in report.rows if row.function)


def test_matmul_backward_by_hand():
    x = torch.randn(2, 3, 4, requires_grad=True)
    row = product_row(flopcalc.analyze(Product((4, 5)), x, device="cpu", backward=True))
    # (2·3 rows)·4·5 = 120 MACs forward; dA = dY·Bᵀ and dB = Aᵀ·dY 120 each (the matrix is folded: no sums).
    assert parts(row) == (120, {}, 120, {})
    assert row.name == "w ← @"  # named after the raw parameter it multiplies
    # The input needs no gradient: only dB.
    row = product_row(flopcalc.analyze(Product((4, 5)), (2, 3, 4), backward=True))
    assert parts(row) == (0, {}, 120, {})
    assert row.backward.status is Status.MATCH


def test_broadcast_product_sums_the_gradient_copies():
    # (2, 1, 3, 4) @ (5, 4, 6): batch 2·5 = 10, 10·3·4·6 = 720 MACs forward, and for each of dA and dB.
    # A is broadcast over 5: its gradient sums 10 − 2 = 8 copies of 3·4, 96 adds; W over 2: (10 − 5)·4·6 = 120.
    x = torch.randn(2, 1, 3, 4, requires_grad=True)
    row = product_row(flopcalc.analyze(Product((5, 4, 6)), x, device="cpu", backward=True))
    assert parts(row) == (720, {"add": 96}, 720, {"add": 120})
    assert row.backward.status is Status.MATCH


@pytest.mark.parametrize("op", ["bmm", "einsum"])
def test_bmm_and_einsum_backward_with_frozen_weight(op):
    model = Product((2, 4, 5), op)
    model.w.requires_grad_(False)
    x = torch.randn(2, 3, 4, requires_grad=True)
    row = product_row(flopcalc.analyze(model, x, device="cpu", backward=True))
    assert parts(row) == (2 * 3 * 4 * 5, {}, 0, {})  # dA only: 120
    assert row.backward.status is Status.MATCH


class Conv1D(nn.Module):
    """transformers' Conv1D (GPT-2's projections): ``addmm(bias, x, W)``."""

    def __init__(self, features: int = 4, outputs: int = 6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(features, outputs))
        self.bias = nn.Parameter(torch.zeros(outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return out.view(*x.shape[:-1], out.size(-1))


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_addmm_backward_by_hand(device):
    # (2·3 rows)·4·6 = 144 MACs forward. The input needs no gradient: dW = xᵀ·dY 144 MACs, and the bias's
    # gradient sums dY's 2·3·6 = 36 elements back to its 6: 30 adds.
    row = product_row(flopcalc.analyze(Conv1D(), (1, 2, 3, 4), device=device, backward=True))
    assert parts(row) == (0, {}, 144, {"add": 30})
    assert row.backward.status is Status.MATCH
    # With an input gradient, dX = dY·Wᵀ: 144 MACs more.
    x = torch.randn(2, 3, 4, requires_grad=True)
    row = product_row(flopcalc.analyze(Conv1D(), x, device=device, backward=True))
    assert parts(row) == (144, {}, 144, {"add": 30})
    assert row.backward.status is Status.MATCH


def test_addmm_json_lists_only_the_flags_its_formula_uses():
    # addmm(bias, x, W): the bias and W train, x needs no gradient; the formula reads g_x1..g_x3 only
    layers = to_dict(flopcalc.analyze(Conv1D(), (1, 2, 3, 4), backward=True))["layers"]
    product = next(layer for layer in layers if layer["function"] == "torch.addmm")
    assert product["backward"]["flags"] == {"g_x1": 1, "g_x2": 0, "g_x3": 1}


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_baddbmm_and_addmm_without_the_added_tensor(device):
    class Added(nn.Module):
        def __init__(self, beta: float) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(3, 4, 6))
            self.c = nn.Parameter(torch.randn(5, 1))
            self.beta = beta

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.baddbmm(self.c, x, self.w, beta=self.beta)

    # 3·5·4·6 = 360 MACs; dW 360; c (5, 1) gets dY's 3·5·6 = 90 elements summed to 5: 85 adds.
    row = product_row(flopcalc.analyze(Added(1), (3, 5, 4), device=device, backward=True))
    assert parts(row) == (0, {}, 360, {"add": 85})
    assert row.backward.status is Status.MATCH
    # beta = 0: the product ignores c, but autograd still gives it dY·0 (90 muls), summed to 5 (85 adds).
    row = product_row(flopcalc.analyze(Added(0), (3, 5, 4), device=device, backward=True))
    assert parts(row) == (0, {}, 360, {"add": 85, "mul": 90})
    assert row.backward.status is Status.MATCH


def _all_match(report: flopcalc.Report) -> None:
    bad = [(row.name, row.backward.mismatches, dict(row.backward.uncounted)) for row in report.rows
           if row.bound is not None and row.backward.status is not Status.MATCH]
    assert bad == []


_MHA_PARAMETERS = ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias", "bias_k", "bias_v",
                   "q_proj_weight", "k_proj_weight", "v_proj_weight"]


@PROPERTY
@given(
    batch=st.integers(1, 2), length=st.integers(1, 4), source=st.integers(1, 4), heads=st.sampled_from([1, 2]),
    batch_first=st.booleans(), mode=st.sampled_from(["self", "kv", "separate", "qk"]), need_weights=st.booleans(),
    average=st.booleans(), bias=st.booleans(), bias_kv=st.booleans(), zero_attn=st.booleans(),
    masked=st.booleans(), frozen=st.sets(st.sampled_from(_MHA_PARAMETERS)),
    input_grads=st.sampled_from(["", "q", "kv", "qkv"]), kdim=st.sampled_from([4, 3]),
    device=st.sampled_from(["cpu", "meta"]),
)
def test_multihead_attention_backward_formula_matches_measurement(
    batch, length, source, heads, batch_first, mode, need_weights, average, bias, bias_kv, zero_attn, masked,
    frozen, input_grads, kdim, device,
):
    """Any parameter frozen (each alone or together), and the query and the key/value needing a gradient
    apart, with a packed in-projection or separate ones (kdim ≠ embed_dim); one tensor as two of query, key
    and value sums its two gradients."""
    if mode == "self":
        source, kdim = length, 4  # query is key is value: one tensor, one width
    vdim = kdim
    if mode == "qk":
        source, kdim = length, 4  # the query is also the key; the value is another tensor (of width vdim)

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(4, heads, batch_first=batch_first, bias=bias, add_bias_kv=bias_kv,
                                              add_zero_attn=zero_attn, kdim=kdim, vdim=vdim)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
            mask = torch.zeros(length, source, device=x.device) if masked else None
            key, value = {"self": (x, x), "kv": (y, y), "separate": (y, 2 * y), "qk": (x, y)}[mode]
            query = x
            return self.attn(query, key, value, need_weights=need_weights, average_attn_weights=average,
                             attn_mask=mask)

    with torch.device(device):
        model = Model()
    for name, parameter in model.attn.named_parameters():
        parameter.requires_grad_(name not in frozen)
    query_grad = "q" in input_grads or (mode == "self" and input_grads != "")
    if mode == "qk" and "kv" in input_grads:
        query_grad = True  # the key is the query
    if not query_grad and "kv" not in input_grads and not any(p.requires_grad for p in model.parameters()):
        query_grad = True  # a frozen layer on inputs without gradient has no backward pass
    shape_x = (batch, length, 4) if batch_first else (length, batch, 4)
    shape_y = (batch, source, vdim) if batch_first else (source, batch, vdim)
    with torch.device(device):
        x, y = torch.randn(shape_x, requires_grad=query_grad), torch.randn(shape_y, requires_grad="kv" in input_grads)
    _all_match(flopcalc.analyze(model, [x, y], device=device, backward=True))


@PROPERTY
@given(
    batch=st.integers(1, 2), heads=st.sampled_from([2, 4]), group=st.sampled_from([1, 2]),
    length=st.integers(1, 4), source=st.integers(1, 4), e_k=st.integers(1, 4), e_v=st.integers(1, 4),
    mask=st.sampled_from(["none", "causal", "tensor"]),
    grads=st.sampled_from(["qkv", "q", "k", "v", "qk", "qv", "kv"]),
    device=st.sampled_from(["cpu", "meta"]),
)
def test_sdpa_backward_formula_matches_measurement(batch, heads, group, length, source, e_k, e_v, mask, grads,
                                                   device):
    class Model(nn.Module):
        def forward(self, q, k, v):
            options = {"is_causal": True} if mask == "causal" else {}
            if mask == "tensor":
                options["attn_mask"] = torch.zeros(length, source, device=q.device)
            return F.scaled_dot_product_attention(q, k, v, enable_gqa=group > 1, **options)

    with torch.device(device):
        q = torch.randn(batch, heads, length, e_k, requires_grad="q" in grads)
        k = torch.randn(batch, heads // group, source, e_k, requires_grad="k" in grads)
        v = torch.randn(batch, heads // group, source, e_v, requires_grad="v" in grads)
    _all_match(flopcalc.analyze(Model(), [q, k, v], device=device, backward=True))


@PROPERTY
@given(
    batch=st.lists(st.integers(2, 3), max_size=2), a_dims=st.integers(0, 2), b_dims=st.integers(0, 2),
    a_ones=st.lists(st.booleans(), min_size=2, max_size=2), b_ones=st.lists(st.booleans(), min_size=2, max_size=2),
    m=st.integers(1, 3), k=st.integers(1, 3), p=st.integers(1, 3), grads=st.sampled_from(["ab", "a", "b"]),
    device=st.sampled_from(["cpu", "meta"]),
)
def test_matmul_backward_formula_matches_measurement(batch, a_dims, b_dims, a_ones, b_ones, m, k, p, grads, device):
    # Each operand keeps the last a_dims / b_dims batch dimensions, some of them broadcast (size 1).
    a_batch = [1 if one else d for d, one in zip(batch, a_ones)][len(batch) - min(a_dims, len(batch)):]
    b_batch = [1 if one else d for d, one in zip(batch, b_ones)][len(batch) - min(b_dims, len(batch)):]

    class Model(nn.Module):
        def forward(self, a, b):
            return torch.matmul(a, b)

    with torch.device(device):
        a = torch.randn(*a_batch, m, k, requires_grad="a" in grads)
        b = torch.randn(*b_batch, k, p, requires_grad="b" in grads)
    _all_match(flopcalc.analyze(Model(), [a, b], device=device, backward=True))
