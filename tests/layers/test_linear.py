"""nn.Linear and nn.Bilinear: hand-derived counts, and formula == measured on cpu and meta for random layers."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from support import Inputs, assert_agrees
from torch import nn

from flopcalc.layers.linear import BILINEAR, LINEAR
from flopcalc.printing import to_text
from flopcalc.registry import REGISTRY


def randn(*shape: int) -> Inputs:
    return lambda device: (torch.randn(*shape, device=device),)


LINEAR_CASES = [
    # (id, module, input shape, params, macs, ops, output shape)
    ("rows-2x3", nn.Linear(4, 5), (2, 3, 4), 4 * 5 + 5, 2 * 3 * 4 * 5, {"bias_add": 2 * 3 * 5}, (2, 3, 5)),
    ("batch", nn.Linear(4, 5), (7, 4), 4 * 5 + 5, 7 * 4 * 5, {"bias_add": 7 * 5}, (7, 5)),
    ("unbatched-no-bias", nn.Linear(4, 5, bias=False), (4,), 4 * 5, 4 * 5, {}, (5,)),
    ("rank4-no-bias", nn.Linear(4, 5, bias=False), (2, 3, 2, 4), 4 * 5, 2 * 3 * 2 * 4 * 5, {}, (2, 3, 2, 5)),
    # seed report 002: AlexNet's classifier with a 1024-wide hidden layer, per sample
    ("alexnet-fc6", nn.Linear(9216, 4096), (1, 9216), 9216 * 4096 + 4096, 9216 * 4096, {"bias_add": 4096}, (1, 4096)),
    ("alexnet-fc7", nn.Linear(4096, 1024), (1, 4096), 4096 * 1024 + 1024, 4096 * 1024, {"bias_add": 1024}, (1, 1024)),
    ("alexnet-fc8", nn.Linear(1024, 1000), (1, 1024), 1024 * 1000 + 1000, 1024 * 1000, {"bias_add": 1000}, (1, 1000)),
    ("mha-out-proj", nn.modules.linear.NonDynamicallyQuantizableLinear(6, 6), (3, 6), 6 * 6 + 6, 3 * 6 * 6,
     {"bias_add": 3 * 6}, (3, 6)),
]


@pytest.mark.parametrize(
    "module, shape, params, macs, ops, out_shape", [c[1:] for c in LINEAR_CASES], ids=[c[0] for c in LINEAR_CASES]
)
def test_linear_counts(module: nn.Linear, shape: tuple[int, ...], params: int, macs: int, ops: dict[str, int],
                       out_shape: tuple[int, ...]) -> None:
    evaluation = assert_agrees(module, randn(*shape))
    assert (evaluation.params, evaluation.macs, dict(evaluation.ops)) == (params, macs, ops)
    assert evaluation.output_shape == out_shape
    assert evaluation.flops == 2 * macs + sum(ops.values())


def test_alexnet_1024_classifier_totals() -> None:
    """The three layers of seed report 002's classifier, batch of 8: MACs scale with the batch, params do not."""
    layers = [nn.Linear(9216, 4096), nn.Linear(4096, 1024), nn.Linear(1024, 1000)]
    shapes = [(8, 9216), (8, 4096), (8, 1024)]
    evaluations = [REGISTRY.binder_for(m)(m, (torch.empty(s, device="meta"),), {}).evaluate() for m, s in
                   zip(layers, shapes)]
    assert sum(e.params for e in evaluations) == 9216 * 4096 + 4096 + 4096 * 1024 + 1024 + 1024 * 1000 + 1000
    assert sum(e.macs for e in evaluations) == 8 * (9216 * 4096 + 4096 * 1024 + 1024 * 1000)


BILINEAR_CASES = [
    # MACs per row and output: C_in1·C_in2 for x1ᵀA_k, then C_in2 for the dot product with x2
    ("batch", nn.Bilinear(3, 4, 5), ((2, 3), (2, 4)), 5 * 3 * 4 + 5, 2 * 5 * (3 * 4 + 4), {"bias_add": 2 * 5}, (2, 5)),
    ("rows-no-bias", nn.Bilinear(3, 4, 5, bias=False), ((2, 6, 3), (2, 6, 4)), 5 * 3 * 4, 2 * 6 * 5 * (3 * 4 + 4),
     {}, (2, 6, 5)),
    ("unbatched", nn.Bilinear(3, 4, 5), ((3,), (4,)), 5 * 3 * 4 + 5, 5 * (3 * 4 + 4), {"add": 5}, (5,)),
]


@pytest.mark.parametrize(
    "module, shapes, params, macs, ops, out_shape", [c[1:] for c in BILINEAR_CASES], ids=[c[0] for c in BILINEAR_CASES]
)
def test_bilinear_counts(module: nn.Bilinear, shapes: tuple[tuple[int, ...], ...], params: int, macs: int,
                         ops: dict[str, int], out_shape: tuple[int, ...]) -> None:
    evaluation = assert_agrees(module, lambda device: tuple(torch.randn(s, device=device) for s in shapes))
    assert (evaluation.params, evaluation.macs, dict(evaluation.ops)) == (params, macs, ops)
    assert evaluation.output_shape == out_shape


def test_formulas_render() -> None:
    assert to_text(LINEAR.macs) == "C_in*C_out*N"
    assert LINEAR.substituted("params", {"C_in": 9216, "C_out": 4096, "B": 1}) == "9216·4096 + 4096 = 37,752,832"
    assert BILINEAR.substituted("macs", {"N": 2, "C_in1": 3, "C_in2": 4, "C_out": 5}) == "5·2·(3·4 + 4) = 160"


def test_leading_dimensions_keep_n_as_their_product() -> None:
    module = nn.Linear(4, 5)
    bound = REGISTRY.binder_for(module)(module, (torch.empty(2, 3, 4, device="meta"),), {})
    assert bound.formula.name == "linear"
    assert bound.formula.substituted("macs", bound.values) == "4·5·6 = 120"


SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)
leading_dims = st.lists(st.integers(1, 4), min_size=0, max_size=3)


@SETTINGS
@given(c_in=st.integers(1, 12), c_out=st.integers(1, 12), bias=st.booleans(), leading=leading_dims)
def test_linear_matches_measurement(c_in: int, c_out: int, bias: bool, leading: list[int]) -> None:
    evaluation = assert_agrees(nn.Linear(c_in, c_out, bias=bias), randn(*leading, c_in))
    assert evaluation.output_shape == (*leading, c_out)


@SETTINGS
@given(c_in1=st.integers(1, 6), c_in2=st.integers(1, 6), c_out=st.integers(1, 6), bias=st.booleans(),
       leading=leading_dims)
def test_bilinear_matches_measurement(c_in1: int, c_in2: int, c_out: int, bias: bool, leading: list[int]) -> None:
    def inputs(device: str) -> tuple[torch.Tensor, ...]:
        return torch.randn(*leading, c_in1, device=device), torch.randn(*leading, c_in2, device=device)

    evaluation = assert_agrees(nn.Bilinear(c_in1, c_in2, c_out, bias=bias), inputs)
    assert evaluation.output_shape == (*leading, c_out)
