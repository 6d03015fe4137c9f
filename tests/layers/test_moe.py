"""Routed experts (transformers' stacked-weight experts, batched_mm): hand counts, formula == measured."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

transformers = pytest.importorskip("transformers")

import flopcalc  # noqa: E402
from flopcalc.layers.moe import experts_binders, is_routed_experts  # noqa: E402


def experts(hidden: int, intermediate: int, num_experts: int, act: str = "silu") -> torch.nn.Module:
    config = transformers.MixtralConfig(hidden_size=hidden, intermediate_size=intermediate,
                                        num_local_experts=num_experts, hidden_act=act)
    config._experts_implementation = "batched_mm"
    module = transformers.models.mixtral.modeling_mixtral.MixtralExperts(config)
    torch.nn.init.normal_(module.gate_up_proj)
    torch.nn.init.normal_(module.down_proj)
    return module


def count(module: torch.nn.Module, tokens: int, top_k: int, device: str) -> flopcalc.LayerRow:
    inputs = [
        torch.randn(tokens, module.hidden_dim),
        torch.randint(0, module.num_experts, (tokens, top_k)),
        torch.rand(tokens, top_k),
    ]
    report = flopcalc.analyze(module, inputs, device=device, extra=experts_binders(module))
    return report.rows[0]


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_mixtral_experts_by_hand(device):
    module = experts(hidden=256, intermediate=512, num_experts=4)
    assert is_routed_experts(module)
    row = count(module, tokens=128, top_k=2, device=device)
    assert row.status is flopcalc.Status.MATCH, row.mismatches
    assert row.params == 4 * (2 * 512 * 256 + 256 * 512)  # E · (gate and up + down) = 1,572,864
    assert row.macs == 128 * 2 * 3 * 256 * 512  # T · k · 3·H·F = 100,663,296
    assert dict(row.ops) == {
        "exp": 128 * 2 * 512, "div": 128 * 2 * 512,  # SiLU on T·k·F = 131,072 elements
        "add": 128 * 2 * 512 + 128 * 1 * 256,  # SiLU's add + combining k results: T·(k − 1)·H = 32,768
        "mul": 128 * 2 * 512 * 2 + 128 * 2 * 256,  # SiLU's and the gate's mul + routing weights T·k·H = 65,536
    }


@settings(max_examples=8, deadline=None)
@given(tokens=st.integers(1, 9), top_k=st.integers(1, 3), num_experts=st.integers(3, 6), hidden=st.integers(2, 9),
       intermediate=st.integers(2, 9), act=st.sampled_from(["silu", "gelu", "relu"]))
def test_routed_experts_formula_matches_measurement(tokens, top_k, num_experts, hidden, intermediate, act):
    row = count(experts(hidden, intermediate, num_experts, act), tokens, top_k, "cpu")
    assert row.status is flopcalc.Status.MATCH, row.mismatches
    assert row.macs == tokens * top_k * 3 * hidden * intermediate
    assert row.output_shapes[0] == (tokens, hidden)


def backward_row(module: torch.nn.Module, tokens: int, top_k: int, device: str, hidden_grad: bool = True,
                 weights_grad: bool = True) -> flopcalc.LayerRow:
    inputs = [  # on the CPU: flopcalc copies them to the device
        torch.randn(tokens, module.hidden_dim, requires_grad=hidden_grad),
        torch.randint(0, module.num_experts, (tokens, top_k)),
        torch.rand(tokens, top_k, requires_grad=weights_grad),
    ]
    report = flopcalc.analyze(module, inputs, device=device, extra=experts_binders(module), backward=True)
    return report.rows[0]


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_mixtral_experts_backward_by_hand(device):
    # T = 3 tokens, k = 2: S = 6 token-expert pairs; H = 5, F = 7, gated (gate and up: 2F = 14).
    module = experts(hidden=5, intermediate=7, num_experts=4)
    b = backward_row(module, tokens=3, top_k=2, device=device).backward
    assert b.status is flopcalc.Status.MATCH, b.mismatches
    # grad-input: dX of the down projection 6·7·5 = 210 and of the up one 6·14·5 = 420 MACs; g·w and g·y 6·5
    # mul each, g·y summed over H 6·4 add; the gate's two products 2·6·7 mul and SiLU's backward on 6·7 = 42
    # elements (1 exp, 3 add, 1 div, 3 mul each); each token's k = 2 copies summed: 3·1·5 = 15 add.
    assert b.grad_input.macs == 210 + 420
    assert dict(b.grad_input.ops) == {"mul": 30 + 30 + 84 + 126, "add": 24 + 15 + 126, "exp": 42, "div": 42}
    # grad-weight: dW of each product at its forward's MACs, and each selected expert's gradient added into the
    # stacked parameter's: 210 + 420 adds.
    assert (b.grad_weight.macs, dict(b.grad_weight.ops)) == (210 + 420, {"add": 630})
    # The experts frozen and the routing weights needing no gradient: only the hidden states' gradient, through
    # both products (210 + 420 MACs), g·w (30 mul), the gate and SiLU, and the copies' sum.
    module.requires_grad_(False)
    b = backward_row(module, tokens=3, top_k=2, device=device, weights_grad=False).backward
    assert b.status is flopcalc.Status.MATCH, b.mismatches
    assert (b.grad_input.macs, dict(b.grad_input.ops)) == (630, {"mul": 30 + 84 + 126, "add": 15 + 126, "exp": 42,
                                                                 "div": 42})
    assert (b.grad_weight.macs, dict(b.grad_weight.ops)) == (0, {})


@settings(max_examples=12, deadline=None, derandomize=True)
@given(tokens=st.integers(1, 5), top_k=st.integers(1, 3), num_experts=st.integers(3, 5), hidden=st.integers(2, 6),
       intermediate=st.integers(2, 6), act=st.sampled_from(["silu", "gelu", "gelu_pytorch_tanh", "relu"]),
       frozen=st.sets(st.sampled_from(["gate_up_proj", "down_proj"])), hidden_grad=st.booleans(),
       weights_grad=st.booleans(), device=st.sampled_from(["cpu", "meta"]))
def test_routed_experts_backward_formula_matches_measurement(tokens, top_k, num_experts, hidden, intermediate, act,
                                                             frozen, hidden_grad, weights_grad, device):
    module = experts(hidden, intermediate, num_experts, act)
    for name in frozen:
        getattr(module, name).requires_grad_(False)
    if not hidden_grad and not weights_grad and len(frozen) == 2:
        hidden_grad = True  # nothing would need a gradient
    b = backward_row(module, tokens, top_k, device, hidden_grad, weights_grad).backward
    assert b.status is flopcalc.Status.MATCH, b.mismatches
