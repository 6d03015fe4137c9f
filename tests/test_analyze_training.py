"""``analyze(training=True)``: a training-mode forward is counted (batch statistics), and the model's own
training flags are left as they were."""

import torch
from torch import nn
from torch.nn import functional as F

import flopcalc
from flopcalc import Status


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def test_training_counts_batch_statistics() -> None:
    model = net().eval()
    report = flopcalc.analyze(model, (2, 3, 8, 8), training=True)
    bn = report.row("1")
    assert bn.status is Status.MATCH and bn.formula_name == "batch_norm_batch_stats"
    # C = 4 channels of M = 2·6·6 = 72 values, 2·4·36 = 288 elements:
    # mean 4·71 add + 4 div; variance 4·72 mul + 4·71 add + 4 div; rstd 4 add, 4 sqrt, 4 div;
    # per element centring 288 add, rstd 288 mul, γ 288 mul, β 288 add;
    # running mean and variance a·old + b·new: 4·4 mul, 2·4 add; num_batches_tracked + 1: 1 add
    assert dict(bn.ops) == {
        "add": 284 + 284 + 4 + 288 + 288 + 8 + 1,  # 1,157
        "mul": 288 + 288 + 288 + 16,  # 880
        "div": 4 + 4 + 4,
        "sqrt": 4,
    }
    assert report.row("0").macs == 2 * 4 * 6 * 6 * 3 * 3 * 3  # 7,776, the same as in inference


def test_inference_counts_running_statistics() -> None:
    report = flopcalc.analyze(net().eval(), (2, 3, 8, 8))
    bn = report.row("1")
    # rstd per channel: 4 add, 4 sqrt, 4 div; per element (288): centring add, rstd mul, γ mul, β add
    assert bn.formula_name == "batch_norm"
    assert dict(bn.ops) == {"add": 4 + 288 + 288, "mul": 288 + 288, "div": 4, "sqrt": 4}


def test_flags_are_left_as_they_were() -> None:
    evaluating, training = net().eval(), net().train()
    flopcalc.analyze(evaluating, (2, 3, 8, 8), training=True, device="cpu")
    flopcalc.analyze(training, (2, 3, 8, 8), training=False, device="cpu")
    assert not any(m.training for m in evaluating.modules())
    assert all(m.training for m in training.modules())


def test_in_place_functional_relu_keeps_its_own_backward() -> None:
    """F.relu(x, inplace=True) replaces its input's autograd node: its row still claims the ReLU backward."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.relu(self.conv(x), inplace=True)

    report = flopcalc.analyze(Block(), (1, 3, 8, 8), backward=True)
    relu = next(row for row in report.rows if row.name == "← F.relu")
    # the conv output is 4×6×6 = 144 elements: ReLU's backward compares each once
    assert relu.backward.status is Status.MATCH and dict(relu.backward.measured.ops) == {"compare": 144}


def test_convention_names_the_pass_counted() -> None:
    """The convention line every format prints says which pass was counted: inference, a training-mode forward,
    or a forward with its backward pass."""
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    rules = ("FLOPs = 2 × MACs + other ops (bias adds, norms, activations, pooling, softmax: one per scalar "
             "operation); ")
    assert flopcalc.analyze(model, (2, 4)).convention.endswith(rules + "inference forward pass.")
    assert flopcalc.analyze(model, (2, 4), training=True).convention.endswith(
        rules + "training-mode forward pass (batch statistics, dropout).")
    assert flopcalc.analyze(model, (2, 4), backward=True).convention.endswith(
        rules + "inference forward pass and its backward pass (gradients of every trainable parameter).")
