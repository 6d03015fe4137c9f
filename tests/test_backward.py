"""The backward pass: per-layer grad-input / grad-weight by formula, checked against the measured backward."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from typer.testing import CliRunner

import flopcalc
from flopcalc.cli import app
from flopcalc.errors import ForwardError, InputError
from flopcalc.measure import measure
from flopcalc.render.json import to_dict
from flopcalc.report import Status
from model_state import assert_unchanged, snapshot


def mlp() -> nn.Sequential:
    with torch.device("meta"):
        return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def test_mlp_backward_by_hand():
    report = flopcalc.analyze(mlp(), (8, 64), backward=True)
    first, relu, second = report.row("0").backward, report.row("1").backward, report.row("2").backward
    # The input needs no gradient, so the first layer has no grad-input: only dW = dYᵀ·X, 8*64*128 = 65,536.
    assert (first.grad_input.macs, first.grad_weight.macs) == (0, 65_536)
    # Its bias gradient sums 8 rows: (8 - 1)*128 = 896 adds.
    assert first.grad_weight.ops == {"add": 896}
    # ReLU's grad-input: 1 compare per element, 8*128 = 1,024.
    assert relu.grad_input.ops == {"compare": 1_024}
    # The second layer: dX and dW each 8*128*10 = 10,240; bias (8 - 1)*10 = 70 adds.
    assert (second.grad_input.macs, second.grad_weight.macs) == (10_240, 10_240)
    assert second.grad_weight.ops == {"add": 70}
    assert [(row.name, row.backward.mismatches) for row in report.rows if row.backward.status is not Status.MATCH] == []
    totals = report.totals
    assert totals.forward_macs == 75_776  # 65,536 + 10,240
    assert totals.backward_macs == 86_016  # 10,240 grad-input + 75,776 grad-weight
    assert (totals.backward.grad_input.macs, totals.backward.grad_weight.macs) == (10_240, 75_776)
    assert totals.training_macs == 161_792  # 75,776 + 86,016: 2.14× the forward, not 3×
    assert totals.backward.measured.macs == 86_016


def test_frozen_first_layer_leaves_only_the_last_grad_weight():
    model = mlp()
    model[0].requires_grad_(False)
    report = flopcalc.analyze(model, (8, 64), backward=True)
    # Nothing upstream of the second layer needs a gradient: only its dW, 8*128*10 = 10,240.
    assert report.totals.backward_macs == 10_240
    assert report.row("1").backward.ops == {}  # no ReLU gradient either
    assert report.row("2").backward.grad_input.macs == 0
    assert all(row.backward.status is Status.MATCH for row in report.rows)


def test_independent_measurement_of_the_mlp_backward():
    """The measured total agrees with a plain autograd run under the op counter, outside flopcalc's tracing."""
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    x = torch.randn(8, 64)
    out = model(x)
    params = list(model.parameters())
    tally = measure(lambda: torch.autograd.grad(out, params, torch.ones_like(out)))
    assert tally.count.macs == 86_016
    assert flopcalc.analyze(model, x, device="cpu", backward=True).totals.backward.measured.macs == 86_016


def test_conv_backward_formula_matches_and_bias_grad():
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 8, 3, stride=2, padding=1))
    report = flopcalc.analyze(model, (2, 3, 10, 10), backward=True)
    first, second = report.row("0").backward, report.row("2").backward
    # conv0: out 8×8, 2*16*64*3*9 = 55,296 MACs forward; input needs no gradient: only grad-weight.
    assert (first.grad_input.macs, first.grad_weight.macs) == (0, 55_296)
    # bias gradient: 16 channels × (2*64 - 1) = 2,032 adds
    assert first.grad_weight.ops == {"add": 2_032}
    # conv2: out 4×4, 2*8*16*16*9 = 36,864 MACs for each of grad-input and grad-weight.
    assert (second.grad_input.macs, second.grad_weight.macs) == (36_864, 36_864)
    assert all(row.backward.status is Status.MATCH for row in report.rows)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_model_is_not_changed_and_gets_no_grad(device):
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2))
    before = snapshot(model)
    flopcalc.analyze(model, (5, 4), backward=True, training=True, device=device, optimizer="adam",
                     hardware="h100-sxm")
    assert_unchanged(before, model)
    assert all(p.grad is None for p in model.parameters())


def test_model_is_not_changed_when_the_backward_pass_fails():
    class Fails(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            return _FailingBackward.apply(self.lin(x))

    model = Fails()
    before = snapshot(model)
    with pytest.raises(ForwardError, match="backward pass failed"):
        flopcalc.analyze(model, (2, 4), backward=True, device="cpu")
    assert_unchanged(before, model)


class _FailingBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("no gradient here")


def test_existing_grad_is_kept():
    model = nn.Linear(4, 3)
    grads = [torch.full_like(p, 7.0) for p in model.parameters()]
    for p, g in zip(model.parameters(), grads):
        p.grad = g
    flopcalc.analyze(model, (2, 4), backward=True, device="cpu")
    assert all(p.grad is g for p, g in zip(model.parameters(), grads))


class Checkpointed(nn.Module):
    def __init__(self, reentrant: bool = False):
        super().__init__()
        self.a, self.relu, self.b = nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32)
        self.reentrant = reentrant

    def forward(self, x):
        return self.b(checkpoint(lambda t: self.relu(self.a(t)), x, use_reentrant=self.reentrant))


def test_checkpoint_recompute_is_counted_and_shown():
    report = flopcalc.analyze(Checkpointed(), (8, 64), backward=True)
    # Non-reentrant checkpointing re-runs the first Linear (8*64*128 = 65,536 MACs) and the ReLU (1,024
    # compares) while the backward pass needs their saved tensors.
    assert report.row("a").backward.recompute.macs == 65_536
    assert report.row("relu").backward.recompute.ops == {"compare": 1_024}
    assert report.row("b").backward.recompute.macs == 0
    assert report.totals.recompute_macs == 65_536
    # forward 65,536 + 32,768; backward: a dW 65,536, b dX + dW 2*8*128*32 = 65,536
    assert report.totals.backward_macs == 131_072
    assert report.totals.training_macs == 98_304 + 131_072 + 65_536
    assert all(row.backward.status is Status.MATCH for row in report.rows)


def test_reentrant_checkpoint_per_layer_and_no_grad_left():
    model = Checkpointed(reentrant=True)
    x = torch.randn(8, 64, requires_grad=True)
    before = snapshot(model)
    report = flopcalc.analyze(model, x, device="cpu", backward=True)
    assert_unchanged(before, model)
    assert all(p.grad is None for p in model.parameters()) and x.grad is None
    # The input requires grad here: a dX + dW 2*65,536, b 2*32,768; the recompute re-runs a and the ReLU.
    assert report.row("a").backward.measured.macs == 131_072
    assert report.row("b").backward.measured.macs == 65_536
    assert report.totals.recompute_macs == 65_536
    assert all(row.backward.status is Status.MATCH for row in report.rows)


def test_backward_needs_a_trainable_path():
    model = mlp().requires_grad_(False)
    with pytest.raises(InputError, match="no output depends on a trainable parameter"):
        flopcalc.analyze(model, (8, 64), backward=True)


def test_backward_needs_concrete_sizes():
    with pytest.raises(InputError, match="concrete sizes"):
        flopcalc.analyze(mlp(), ("N", 64), backward=True)


def test_json_totals_and_layers():
    data = to_dict(flopcalc.analyze(mlp(), (8, 64), backward=True))
    totals = data["totals"]
    assert (totals["forward_macs"], totals["backward_macs"], totals["training_macs"]) == (75_776, 86_016, 161_792)
    layer = next(entry for entry in data["layers"] if entry["name"] == "2")
    assert layer["backward"]["grad_input"]["macs"] == 10_240
    assert layer["backward"]["flags"] == {"g_x": 1, "g_W": 1, "g_b": 1}
    relu = next(entry for entry in data["layers"] if entry["name"] == "1")
    assert relu["backward"]["flags"] == {"g_x": 1}  # the flag its formula uses; ReLU has no weight or bias
    assert "backward_macs" not in to_dict(flopcalc.analyze(mlp(), (8, 64)))["totals"]


def test_cli_backward(tmp_path):
    model_file = tmp_path / "net.py"
    model_file.write_text(
        "from torch import nn\n"
        "def net():\n    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))\n"
    )
    runner = CliRunner()
    result = runner.invoke(app, [f"{model_file}:net", "--input", "64", "--batch", "8", "--backward"])
    assert result.exit_code == 0, result.output
    assert "grad-input 10,240 + grad-weight 75,776" in result.output
    assert "2.14× the forward MACs" in result.output
    result = runner.invoke(app, [f"{model_file}:net", "--input", "64", "--batch", "8", "--backward", "-f", "json"])
    assert json.loads(result.output)["totals"]["training_macs"] == 161_792
    result = runner.invoke(app, [f"{model_file}:net", "--input", "64", "--batch", "N", "--backward"])
    assert result.exit_code == 2 and "need concrete sizes" in result.output


def test_batch_norm_and_pooling_backward_by_hand():
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.MaxPool2d(2), nn.AvgPool2d(2))
    report = flopcalc.analyze(model, (2, 3, 10, 10), backward=True, training=True)
    bn = report.row("1").backward
    # BatchNorm in training on 2×4×8×8: T = 512 elements, 4 channels of n = 2*64 = 128.
    # grad-bias (128-1)*4 = 508 adds; grad-weight 512 mul + 508 add; x̂ 512 add + 512 mul.
    assert bn.grad_weight.ops == {"add": 508 + 508 + 512, "mul": 512 + 512}
    # grad-input: γ·rstd 4 mul, 3*512 mul + 2*512 add per element, 4 div (rstd/M); the sums came with the params.
    assert bn.grad_input.ops == {"mul": 4 + 1_536, "add": 1_024, "div": 4}
    # Max pool 2×2 on 2×4×8×8: one add per output, 2*4*4*4 = 128.
    assert report.row("2").backward.grad_input.ops == {"add": 128}
    # Avg pool 2×2 on 2×4×4×4: 2*4*2*2 = 32 outputs, 1 div each and 4 taps each: 128 adds.
    assert report.row("3").backward.grad_input.ops == {"div": 32, "add": 128}
    assert all(row.backward.status is Status.MATCH for row in report.rows)


def test_layer_norm_backward_by_hand():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(5, 6), nn.LayerNorm(6))
    ln = flopcalc.analyze(model, (3, 4, 5), backward=True).row("1").backward
    # 12 rows of D = 6, T = 72. grad-bias (12-1)*6 = 66 adds; grad-weight 72 mul + 66 add; x̂ 72 add + 72 mul.
    assert ln.grad_weight.ops == {"add": 66 + 66 + 72, "mul": 72 + 72}
    # grad-input: g·γ 72 mul, Σĝ·x̂ 72 mul, 3*72 mul; two row sums 2*12*5 adds + 2*72 adds; 12 div.
    assert ln.grad_input.ops == {"mul": 72 + 72 + 216, "add": 120 + 144, "div": 12}
    assert ln.status is Status.MATCH


@pytest.mark.parametrize("freeze", [None, "bn", "conv"])
def test_eval_batch_norm_backward_matches_with_frozen_parts(freeze):
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Dropout(),
                              nn.Linear(256, 3))
    if freeze:
        model[{"bn": 1, "conv": 0}[freeze]].requires_grad_(False)
    report = flopcalc.analyze(model, (2, 3, 10, 10), backward=True)
    assert [row.name for row in report.rows if row.backward.status is not Status.MATCH] == []


def test_embedding_and_adaptive_pooling_backward_by_hand():
    with torch.device("meta"):
        model = nn.Sequential(nn.Embedding(50, 8), nn.Linear(8, 4))
    report = flopcalc.analyze(model, [flopcalc.InputSpec((2, 5), torch.int64)], backward=True)
    embedding = report.row("0").backward
    # No gradient for indices; 2*5 looked-up rows of 8 added into the table's gradient: 80 adds.
    assert (embedding.grad_input.ops, embedding.grad_weight.ops) == ({}, {"add": 80})
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(3), nn.AdaptiveMaxPool2d(2),
                              nn.AdaptiveAvgPool2d(1))
    report = flopcalc.analyze(model, (2, 3, 9, 9), backward=True)
    # 7 → 3 average: windows [0,3), [2,5), [4,7), 3 taps each, 9*9 = 81 per plane, 2*4 planes: 648 adds;
    # one div per output, 2*4*3*3 = 72.
    assert report.row("1").backward.grad_input.ops == {"div": 72, "add": 648}
    assert report.row("2").backward.grad_input.ops == {"add": 32}  # 3 → 2 max: one add per output, 2*4*2*2
    # Global average pooling is a mean: one div per input element, 2*4*2*2 = 32.
    assert report.row("3").backward.grad_input.ops == {"div": 32}
    assert all(row.backward.status is Status.MATCH for row in report.rows)


@pytest.mark.parametrize("functional", [False, True])
def test_sparse_embedding_backward_by_hand(functional):
    """A sparse gradient keeps the 2·3 looked-up rows as they are (no adds); with a padding_idx the lookups of
    that row are dropped first, one compare per index. The mask reads the indices, so it runs on the CPU."""

    class Functional(nn.Module):
        def __init__(self, padding_idx: int | None) -> None:
            super().__init__()
            self.table = nn.Parameter(torch.randn(10, 4))
            self.padding_idx = padding_idx

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.embedding(x, self.table, self.padding_idx, sparse=True)

    indices = torch.tensor([[0, 2, 3], [3, 3, 9]])
    for padding_idx, ops in ((None, {}), (0, {"compare": 2 * 3})):
        model = Functional(padding_idx) if functional else nn.Embedding(10, 4, padding_idx=padding_idx, sparse=True)
        report = flopcalc.analyze(model, indices, device="cpu", backward=True)
        row = next(r for r in report.rows if r.bound is not None)
        assert (row.backward.grad_input.ops, dict(row.backward.grad_weight.ops)) == ({}, ops)
        assert (row.backward.status, dict(row.backward.uncounted)) == (Status.MATCH, {})
    # Without a padding_idx the sparse gradient needs no tensor values: the same on meta.
    with torch.device("meta"):
        model = nn.Embedding(10, 4, sparse=True)
    row = flopcalc.analyze(model, indices.to("meta"), backward=True).row("")
    assert (dict(row.backward.grad_weight.ops), row.backward.status) == ({}, Status.MATCH)


def test_gradient_of_an_accumulating_index_is_counted():
    table = torch.zeros(5, 3, requires_grad=True)
    index = torch.tensor([0, 2, 2, 4])
    tally = measure(lambda: torch.autograd.grad(table[index].sum(), table))
    assert tally.count.ops == {"add": 11 + 12}  # the sum's 12 - 1 adds; index_put accumulates 4*3 values
    assert not tally.uncounted


class Functional(nn.Module):
    """``F.linear`` with the model's own parameters, then a Linear module: the functional call is a row too."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(32, 16))
        self.b = nn.Parameter(torch.zeros(32))
        self.q = nn.Linear(32, 8)

    def forward(self, x):
        return self.q(torch.nn.functional.linear(x, self.w, self.b))


def test_functional_rows_get_their_backward():
    report = flopcalc.analyze(Functional(), (2, 10, 16), backward=True)
    linear = next(row for row in report.rows if row.function == "F.linear")
    # F.linear on 20 rows: 20*16*32 = 10,240 MACs; the input needs no gradient, so only dW (10,240) and the
    # bias gradient, (20 - 1)*32 = 608 adds; its parameters are recognised by position, not by name.
    assert (linear.backward.grad_input.macs, linear.backward.grad_weight.macs) == (0, 10_240)
    assert linear.backward.grad_weight.ops == {"add": 608}
    q = report.row("q").backward
    assert (q.grad_input.macs, q.grad_weight.macs) == (5_120, 5_120)  # 20*32*8 each
    assert [row.name for row in report.backward_mismatches] == []
    assert report.totals.backward_macs == 20_480  # 10,240 + 2*5,120
