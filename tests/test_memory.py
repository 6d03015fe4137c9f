"""Memory: output bytes per layer, the activation peak from tensor lifetimes, bytes kept for backward, training state."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import flopcalc
from flopcalc.cli import app
from flopcalc.errors import InputError
from flopcalc.render.json import to_dict


def mlp(**kwargs) -> nn.Sequential:
    return nn.Sequential(nn.Linear(64, 128, **kwargs), nn.ReLU(), nn.Linear(128, 10, **kwargs))


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_output_bytes_and_inference_peak(device):
    report = flopcalc.analyze(mlp(), (8, 64), device=device, memory=True)
    # float32 outputs: 8*128*4 = 4,096 B for the first Linear and the ReLU, 8*10*4 = 320 B for the last.
    assert [row.output_bytes for row in report.rows] == [320, 4_096, 4_096, 320]
    # The peak is while the ReLU runs: its input and its output, 2*4,096 = 8,192 B (the input x is not counted).
    assert report.totals.memory.activation_peak_bytes == 8_192
    assert report.totals.memory.saved_for_backward_bytes is None


def test_in_place_relu_needs_no_second_buffer():
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(inplace=True), nn.Linear(128, 10))
    # The ReLU writes into the Linear's output: 4,096 B, then the last Linear adds 320 B.
    assert flopcalc.analyze(model, (8, 64), memory=True).totals.memory.activation_peak_bytes == 4_096 + 320


def test_bytes_kept_for_backward():
    memory = flopcalc.analyze(mlp(), (8, 64), backward=True, memory=True).totals.memory
    # The first Linear keeps its input x for dW (8*64*4 = 2,048 B); the ReLU keeps its output, which is also the
    # second Linear's input (8*128*4 = 4,096 B, one storage). Weights are parameters, not counted here.
    assert memory.saved_for_backward_bytes == 2_048 + 4_096


def test_frozen_first_layer_keeps_less():
    model = mlp()
    model[0].requires_grad_(False)
    memory = flopcalc.analyze(model, (8, 64), backward=True, memory=True).totals.memory
    # Only the last Linear's dW runs: it keeps its input, 4,096 B; nothing needs x or the ReLU mask.
    assert memory.saved_for_backward_bytes == 4_096


def test_training_state_by_optimizer():
    state = flopcalc.analyze(mlp(), (8, 64), optimizer="adam").totals.memory.training
    # 9,610 float32 params: 38,440 B; gradients the same; Adam's two moments 2*38,440 = 76,880 B.
    assert (state.param_bytes, state.grad_bytes, state.master_bytes, state.optimizer_bytes) == (
        38_440, 38_440, 0, 76_880)
    assert state.total_bytes == 153_760  # 16 B per parameter
    sgd = flopcalc.analyze(mlp(), (8, 64), optimizer="sgd").totals.memory.training
    assert sgd.optimizer_bytes == 38_440  # one momentum buffer
    from flopcalc.render.training import memory_items

    report = flopcalc.analyze(mlp(), (8, 64), optimizer="sgd")
    line = dict(memory_items(report))["Training state"]
    assert "sgd state 38,440 B (1 float32 per trainable param: the momentum buffer; SGD without momentum keeps " \
        "none)" in line


def test_mixed_precision_and_frozen_parameters():
    model = mlp(dtype=torch.bfloat16)
    model[0].requires_grad_(False)
    state = flopcalc.analyze(model, [flopcalc.InputSpec((8, 64), torch.bfloat16)], optimizer="adamw").totals.memory.training
    # params 9,610*2 = 19,220 B; only the last layer trains (1,290 params): gradients 2,580 B (bfloat16),
    # float32 master weights 5,160 B, AdamW moments 2*4*1,290 = 10,320 B.
    assert (state.param_bytes, state.grad_bytes, state.master_bytes, state.optimizer_bytes) == (
        19_220, 2_580, 5_160, 10_320)


def test_model_unchanged_and_errors():
    model = mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flopcalc.analyze(model, (8, 64), backward=True, memory=True, optimizer="adam")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(InputError, match="unknown optimizer"):
        flopcalc.analyze(model, (8, 64), optimizer="lion")
    with pytest.raises(InputError, match="concrete sizes"):
        flopcalc.analyze(model, ("N", 64), memory=True)


def test_json_and_cli(tmp_path):
    data = to_dict(flopcalc.analyze(mlp(), (8, 64), backward=True, optimizer="adam"))
    assert data["totals"]["memory"]["activation_peak_bytes"] == 8_192
    assert data["totals"]["memory"]["training"]["total_bytes"] == 153_760
    assert data["layers"][0]["output_bytes"] == 4_096
    model_file = tmp_path / "net.py"
    model_file.write_text(
        "from torch import nn\n"
        "def net():\n    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))\n"
    )
    runner = CliRunner()
    args = [f"{model_file}:net", "--input", "64", "--batch", "8"]
    result = runner.invoke(app, [*args, "--dtype", "bfloat16", "--optimizer", "adamw"])
    assert result.exit_code == 0, result.output
    # 9,610 params at 16 B each: bf16 params and grads, fp32 master weights, two fp32 moments.
    assert "153,760 B" in result.output and "float32 master weights 38,440 B" in result.output
    result = runner.invoke(app, [*args, "--memory", "-f", "json"])
    assert json.loads(result.output)["totals"]["memory"]["activation_peak_bytes"] == 8_192
    result = runner.invoke(app, [*args, "--optimizer", "lion"])
    assert result.exit_code == 2
