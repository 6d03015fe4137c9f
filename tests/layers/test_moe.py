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
