"""Squeeze-and-excitation: hand counts, formula == measured."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from support import formula_and_measured, param_count
from torch import nn
from torchvision.ops import SqueezeExcitation

import flopcalc
from flopcalc.layers.se import SQUEEZE_EXCITATION
from flopcalc.registry import REGISTRY

DEVICES = ("cpu", "meta")
PROPERTY = settings(max_examples=30, deadline=None, derandomize=True)


def nonzero(ops: Mapping[str, int]) -> dict[str, int]:
    return {str(kind): n for kind, n in ops.items() if n}


def tensor(*shape: int, device: str) -> torch.Tensor:
    return torch.randn(shape) if device == "cpu" else torch.empty(shape, device=device)


def check(module: nn.Module, shape: tuple[int, ...], device: str) -> Any:
    module = copy.deepcopy(module).to(device)
    evaluation, count, out = formula_and_measured(module, tensor(*shape, device=device))
    assert evaluation.macs == count.macs
    assert nonzero(evaluation.ops) == nonzero(count.ops)
    assert evaluation.output_shape == tuple(out.shape)
    assert evaluation.params == param_count(module)
    return evaluation


# SE(C = 8, C_sq = 3) on N = 2, H×W = 5×7.
POOL = {"add": 2 * 8 * (5 * 7 - 1), "div": 2 * 8}  # mean of 35 values per channel: 34 adds, 1 div
FC_BIAS = {"bias_add": 2 * 3 + 2 * 8}  # fc1 (8 → 3) and fc2 (3 → 8), one bias add per output
RESCALE = {"mul": 2 * 8 * 5 * 7}  # x ⊙ scale
SIGMOID_8 = {"exp": 2 * 8, "add": 2 * 8, "div": 2 * 8}  # on the 2·8 scales


def merged(*parts: Mapping[str, int]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for kind, n in part.items():
            total[kind] = total.get(kind, 0) + n
    return total


HAND = [
    ("relu-sigmoid", {}, merged(POOL, FC_BIAS, {"compare": 2 * 3}, SIGMOID_8, RESCALE)),
    ("relu-hardsigmoid", {"scale_activation": nn.Hardsigmoid},  # clamp(x + 3, 0, 6)/6: add, 2 compares, div
     merged(POOL, FC_BIAS, {"compare": 2 * 3}, {"add": 2 * 8, "compare": 2 * 2 * 8, "div": 2 * 8}, RESCALE)),
    ("silu-sigmoid", {"activation": nn.SiLU},  # x·sigmoid(x) on the 2·3 squeezed values
     merged(POOL, FC_BIAS, {"exp": 2 * 3, "add": 2 * 3, "div": 2 * 3, "mul": 2 * 3}, SIGMOID_8, RESCALE)),
]


@pytest.mark.parametrize("options, ops", [c[1:] for c in HAND], ids=[c[0] for c in HAND])
@pytest.mark.parametrize("device", DEVICES)
def test_by_hand(options: dict[str, Any], ops: dict[str, int], device: str) -> None:
    evaluation = check(SqueezeExcitation(8, 3, **options), (2, 8, 5, 7), device)
    assert evaluation.macs == 2 * 8 * 3 + 2 * 3 * 8  # two fully connected layers on 1×1 maps
    assert evaluation.params == (8 * 3 + 3) + (3 * 8 + 8)
    assert nonzero(evaluation.ops) == ops


def test_named_formula_is_torchvisions_default() -> None:
    values = {"N": 2, "C": 8, "C_sq": 3, "H": 5, "W": 7}
    evaluation = SQUEEZE_EXCITATION.evaluate(values)
    assert nonzero(evaluation.ops) == HAND[0][2]
    assert REGISTRY.formula("se") is SQUEEZE_EXCITATION


UNBATCHED = merged(
    {"add": 8 * (4 * 4 - 1), "div": 8},  # SE(8, 3) on 8×4×4: mean of 16 values per channel
    {"bias_add": 3 + 8, "compare": 3},  # fc1 and fc2 biases; ReLU on the 3 squeezed values
    {"exp": 8, "add": 8, "div": 8},  # sigmoid on the 8 scales
    {"mul": 8 * 4 * 4},  # the rescale
)
PRELU = merged(POOL, FC_BIAS, {"compare": 2 * 3, "mul": 2 * 3}, SIGMOID_8, RESCALE)  # PReLU: compare + mul


@pytest.mark.parametrize(("options", "shape", "params", "macs", "ops"), [
    ({}, (8, 4, 4), (8 * 3 + 3) + (3 * 8 + 8), 8 * 3 + 3 * 8, UNBATCHED),
    ({"activation": nn.PReLU}, (2, 8, 5, 7), (8 * 3 + 3) + (3 * 8 + 8) + 1, 2 * (8 * 3 + 3 * 8), PRELU),
], ids=["unbatched", "prelu"])
def test_unbatched_and_learned_activation_by_hand(options: dict[str, Any], shape: tuple[int, ...], params: int,
                                                  macs: int, ops: dict[str, int]) -> None:
    evaluation = check(SqueezeExcitation(8, 3, **options), shape, "cpu")
    assert (evaluation.params, evaluation.macs, nonzero(evaluation.ops)) == (params, macs, ops)


@PROPERTY
@given(channels=st.integers(1, 6), squeeze=st.integers(1, 6), batch=st.integers(0, 3), height=st.integers(1, 5),
       width=st.integers(1, 5), scale=st.sampled_from([nn.Sigmoid, nn.Hardsigmoid]),
       act=st.sampled_from([nn.ReLU, nn.SiLU, nn.GELU]))
def test_property(channels: int, squeeze: int, batch: int, height: int, width: int, scale: type[nn.Module],
                  act: type[nn.Module]) -> None:
    module = SqueezeExcitation(channels, squeeze, activation=act, scale_activation=scale)
    shape = (channels, height, width) if batch == 0 else (batch, channels, height, width)
    for device in DEVICES:
        check(module, shape, device)


def backward_parts(report: flopcalc.Report, name: str) -> tuple[int, dict[str, int], int, dict[str, int]]:
    b = report.row(name).backward
    assert b.status is flopcalc.Status.MATCH, b.mismatches
    return b.grad_input.macs, nonzero(b.grad_input.ops), b.grad_weight.macs, nonzero(b.grad_weight.ops)


@pytest.mark.parametrize("device", DEVICES)
def test_backward_by_hand(device: str) -> None:
    """SE(8, 2) on a 2×8×4×4 input that needs a gradient: every part's backward plus the multiply's."""
    with torch.device(device):
        model = nn.Sequential(SqueezeExcitation(8, 2))
        x = torch.randn(2, 8, 4, 4, requires_grad=True)
    grad_input = {
        "div": 2 * 8 * 4 * 4,  # the global mean's backward: 1 div per input element, 256
        "compare": 2 * 2,  # ReLU on the 2·2 squeezed values
        "mul": 2 * 8 * 2 + 2 * (2 * 8 * 4 * 4),  # Sigmoid's 2 per scale (32); g·s and g·x per element (512)
        "add": 2 * 8 + 2 * 8 * (4 * 4 - 1),  # Sigmoid's 1 per scale (16); Σ over 4·4 of g·x per channel (240)
    }
    # dX of fc1 (8 → 2) and fc2 (2 → 8) on 2 samples: 2·8·2 = 32 MACs each, and as much for their dW; the
    # biases sum 2 samples: (2 − 1)·2 + (2 − 1)·8 = 10 adds.
    assert backward_parts(flopcalc.analyze(model, x, device=device, backward=True), "0") == (
        64, grad_input, 64, {"add": 10})
    # fc1 frozen and the input needing no gradient: nothing before fc2 runs backward; fc2's dW (32) and bias
    # sum (8), Sigmoid's backward (16 add, 32 mul), and g·x with its sums (256 mul, 240 add).
    model[0].fc1.requires_grad_(False)
    x.requires_grad_(False)
    assert backward_parts(flopcalc.analyze(model, x, device=device, backward=True), "0") == (
        0, {"mul": 32 + 256, "add": 16 + 240}, 32, {"add": 8})


@PROPERTY
@given(channels=st.integers(1, 5), squeeze=st.integers(1, 4), batch=st.integers(0, 2), height=st.integers(1, 4),
       width=st.integers(1, 4), scale=st.sampled_from([nn.Sigmoid, nn.Hardsigmoid]),
       act=st.sampled_from([nn.ReLU, nn.SiLU, nn.PReLU]), input_grad=st.booleans(),
       frozen=st.sets(st.sampled_from(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "activation.weight"])),
       device=st.sampled_from(DEVICES))
def test_backward_formula_matches_measurement(channels: int, squeeze: int, batch: int, height: int, width: int,
                                              scale: type[nn.Module], act: type[nn.Module], input_grad: bool,
                                              frozen: set[str], device: str) -> None:
    with torch.device(device):
        model = nn.Sequential(SqueezeExcitation(channels, squeeze, activation=act, scale_activation=scale))
        shape = (channels, height, width) if batch == 0 else (batch, channels, height, width)
        x = torch.randn(shape, requires_grad=input_grad)
    for name, parameter in model[0].named_parameters():
        parameter.requires_grad_(name not in frozen)
    if not input_grad and not any(p.requires_grad for p in model.parameters()):
        x.requires_grad_(True)
    backward_parts(flopcalc.analyze(model, x, device=device, backward=True), "0")
