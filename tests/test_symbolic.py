"""Closed forms over symbolic input sizes: exact at every size where their conditions hold."""

import random

import pytest
import sympy as sp
import torch
import torchvision
from torch import nn

import flopcalc
from flopcalc.symbolic import ConditionError, SymbolicTraceError

FAMILIES = [
    "alexnet", "vgg11", "resnet18", "densenet121", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0",
    "shufflenet_v2_x0_5", "squeezenet1_0", "regnet_x_400mf", "googlenet", "mnasnet0_5", "convnext_tiny",
]


def odd_non_square_sizes(seed: str, count: int = 5) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    sizes = []
    while len(sizes) < count:
        h, w = rng.randrange(65, 321, 2), rng.randrange(65, 321, 2)
        if h != w:
            sizes.append((h, w))
    return sizes


def build(name: str) -> nn.Module:
    try:
        with torch.device("meta"):
            return torchvision.models.get_model(name)
    except (NotImplementedError, RuntimeError):  # regnet computes its widths from tensor values
        return torchvision.models.get_model(name)


@pytest.mark.parametrize("name", FAMILIES)
def test_closed_form_equals_concrete_counts(name: str) -> None:
    model = build(name)
    symbolic = flopcalc.analyze(model, ("N", 3, "H", "W"))
    assert symbolic.is_symbolic and not symbolic.uncounted
    h, w, n = (sp.Symbol(s, integer=True, positive=True) for s in "HWN")
    assert symbolic.totals.macs.free_symbols == {n, h, w}
    for height, width in odd_non_square_sizes(name):
        concrete = flopcalc.analyze(model, (2, 3, height, width))
        point = symbolic.evaluate(N=2, H=height, W=width)
        assert (point["macs"], point["flops"]) == (concrete.totals.macs, concrete.totals.flops), (height, width)


def test_closed_form_of_a_conv_by_hand() -> None:
    """Conv2d(3, 8, 3, stride=2, padding=1): MACs = N·8·(⌊(H − 1)/2⌋ + 1)·(⌊(W − 1)/2⌋ + 1)·3·9."""
    report = flopcalc.analyze(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), ("N", 3, "H", "W"))
    n, h, w = (sp.Symbol(s, integer=True, positive=True) for s in "NHW")
    expected = n * 8 * (sp.floor((h - 1) / 2) + 1) * (sp.floor((w - 1) / 2) + 1) * 3 * 9
    assert sp.simplify(report.totals.macs - expected) == 0
    assert report.evaluate(N=1, H=224, W=224)["macs"] == 1 * 8 * 112 * 112 * 3 * 9


def test_named_sizes_are_shared() -> None:
    """``(1, 3, "S", "S")`` is a square input: one symbol, not two."""
    report = flopcalc.analyze(nn.Conv2d(3, 4, 1, bias=False), (1, 3, "S", "S"))
    s = sp.Symbol("S", integer=True, positive=True)
    assert report.totals.macs == 4 * 3 * s**2


def test_conditions_are_reported_and_enforced() -> None:
    report = flopcalc.analyze(torchvision.models.alexnet(), (1, 3, "H", "W"))
    assert report.closed_form.describe_conditions() == ["H >= 63", "W >= 63"]
    with pytest.raises(ConditionError, match="does not hold"):
        report.evaluate(H=40, W=224)


def test_model_that_fixes_its_size_gives_a_concrete_count_instead() -> None:
    model = torchvision.models.vit_b_16()
    with pytest.raises(SymbolicTraceError, match=r"fixes H = 224.*concrete count at H=224, W=224") as caught:
        flopcalc.analyze(model, (1, 3, "H", "W"), hints={"H": 224, "W": 224})
    assert caught.value.concrete.totals.macs == flopcalc.analyze(model, (1, 3, 224, 224)).totals.macs


def test_data_dependent_model_gives_a_concrete_count_instead() -> None:
    class Gate(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2 if bool(x.sum() > 0) else x

    with pytest.raises(SymbolicTraceError, match="forward pass fails with symbolic sizes L=229") as caught:
        flopcalc.analyze(Gate(), (1, "L"))
    assert caught.value.concrete is not None
    assert caught.value.concrete.input_shapes == ((1, 229),)
