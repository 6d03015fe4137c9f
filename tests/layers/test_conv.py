"""Convolution formulas: hand counts, torch's shapes and parameter counts, and the operator-level measurement."""

import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from support import formula_and_measured, param_count
from torch import nn

from flopcalc.layers.conv import (
    CONV2D,
    DEPTHWISE_CONV2D,
    POINTWISE_CONV2D,
    bind_conv,
    depthwise_separable_ratio,
    group_ratio,
)
from flopcalc.printing import to_text

# (module, input shape, params, MACs, bias adds): every number is arithmetic on the layer's hyperparameters.
CASES = [
    pytest.param(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), (1, 3, 224, 224),
        3 * 11 * 11 * 64 + 64,  # seed 002's conv1 (its text has the typo 23,796)
        55 * 55 * 64 * 3 * 11 * 11,  # H_out = (224 + 4 - 11) // 4 + 1 = 55
        64 * 55 * 55, id="alexnet-conv1",
    ),
    pytest.param(
        nn.Conv2d(16, 32, 3, groups=4, bias=False), (7, 16, 28, 28),
        32 * (16 // 4) * 3 * 3, 7 * 32 * 26 * 26 * (16 // 4) * 9, 0, id="group-conv",  # 5,451,264 MACs
    ),
    pytest.param(
        nn.ConvTranspose2d(16, 8, 4, stride=2), (1, 16, 8, 8),
        16 * 8 * 4 * 4 + 8,
        16 * 8 * 8 * 8 * 4 * 4,  # input volume × C_out × K²: 131,072
        8 * 18 * 18, id="conv-transpose",  # H_out = (8 − 1)·2 + (4 − 1) + 1 = 18
    ),
    pytest.param(
        nn.Conv2d(32, 32, 3, padding=1, groups=32), (2, 32, 10, 10),
        32 * 1 * 9 + 32, 2 * 32 * 10 * 10 * 1 * 9, 2 * 32 * 10 * 10, id="depthwise",
    ),
    pytest.param(
        nn.Conv2d(32, 64, 1, bias=False), (2, 32, 10, 10),
        32 * 64, 2 * 64 * 10 * 10 * 32, 0, id="pointwise",
    ),
    pytest.param(
        nn.Conv1d(4, 6, 3, dilation=2, padding=1), (3, 4, 20),
        4 * 6 * 3 + 6,
        3 * 6 * 18 * 4 * 3,  # L_out = 20 + 2 − 2·2 − 1 + 1 = 18
        3 * 6 * 18, id="dilated-conv1d",
    ),
    pytest.param(
        nn.Conv3d(2, 4, (3, 3, 3), stride=(1, 2, 2)), (1, 2, 5, 9, 9),
        2 * 4 * 27 + 4,
        4 * 3 * 4 * 4 * 2 * 27,  # D_out = 3, H_out = W_out = (9 − 3) // 2 + 1 = 4
        4 * 3 * 4 * 4, id="strided-conv3d",
    ),
    pytest.param(
        nn.Conv2d(4, 6, 3, padding="same", padding_mode="reflect"), (2, 4, 9, 9),
        4 * 6 * 9 + 6, 2 * 6 * 9 * 9 * 4 * 9, 2 * 6 * 9 * 9, id="same-reflect",
    ),
    pytest.param(
        nn.Conv2d(3, 5, 3), (3, 8, 8),  # unbatched input counts as N = 1
        3 * 5 * 9 + 5, 5 * 6 * 6 * 3 * 9, 5 * 6 * 6, id="unbatched",
    ),
    pytest.param(
        nn.ConvTranspose1d(6, 4, 3, stride=3, groups=2, output_padding=1), (2, 6, 5),
        6 * (4 // 2) * 3 + 4,
        2 * 6 * 5 * (4 // 2) * 3,  # N·C_in·L·(C_out/G)·K
        2 * 4 * 16, id="grouped-conv-transpose1d",  # L_out = (5 − 1)·3 + 2 + 1 + 1 = 16
    ),
]


@pytest.mark.parametrize(("module", "shape", "params", "macs", "bias_adds"), CASES)
def test_hand_counts(module: nn.Module, shape: tuple[int, ...], params: int, macs: int, bias_adds: int) -> None:
    evaluation, measured, output = formula_and_measured(module, torch.randn(shape))
    assert evaluation.params == params == param_count(module)
    assert evaluation.macs == macs == measured.macs
    assert evaluation.ops.get("bias_add", 0) == bias_adds == measured.ops.get("bias_add", 0)
    assert evaluation.output_shape[-len(output.shape):] == tuple(output.shape)


def test_alexnet_conv1_substituted() -> None:
    bound = bind_conv(nn.Conv2d(3, 64, 11, stride=4, padding=2), (torch.empty(1, 3, 224, 224),), {})
    assert bound.formula.substituted("params", bound.values) == "3·64·11·11 + 64 = 23,296"
    assert bound.formula.substituted("params", bound.values, latex=True) == (
        r"3 \cdot 64 \cdot 11 \cdot 11 + 64 = 23{,}296"
    )
    assert bound.formula.to_text("params") == "C_in*C_out*K_h*K_w/G + B*C_out"


def test_a_size_bound_to_an_expression_is_substituted_in_parentheses() -> None:
    # a closed form's row: H_out and W_out are expressions in H and W, written as they are, in parentheses
    h, w = sp.symbols("H W", integer=True, positive=True)
    values = {"N": 1, "C_in": 3, "C_out": 8, "K_h": 3, "K_w": 3, "G": 1, "H_out": sp.ceiling(h / 2) - 1,
              "W_out": sp.ceiling(w / 2) - 1}
    # 3·8·3·3 = 216
    assert CONV2D.substituted("macs", values) == "3·8·(⌈H/2⌉ - 1)·3·3·(⌈W/2⌉ - 1) = 216·(⌈H/2⌉ - 1)·(⌈W/2⌉ - 1)"
    assert CONV2D.substituted("macs", values, latex=True) == (
        r"3 \cdot 8 \cdot \left(\left\lceil{\frac{H}{2}}\right\rceil - 1\right) \cdot 3 \cdot 3 \cdot "
        r"\left(\left\lceil{\frac{W}{2}}\right\rceil - 1\right) = "
        r"216 \left(\left\lceil{\frac{H}{2}}\right\rceil - 1\right) \left(\left\lceil{\frac{W}{2}}\right\rceil - 1\right)"
    )


def test_depthwise_and_pointwise_by_hand() -> None:
    same = {"N": 1, "C_in": 32, "H": 56, "W": 56, "s_h": 1, "s_w": 1, "d_h": 1, "d_w": 1, "B": 0}
    depthwise = DEPTHWISE_CONV2D.evaluate({**same, "C_out": 32, "K_h": 3, "K_w": 3, "p_h": 1, "p_w": 1})
    # one 3×3 filter per channel: params 32·9 = 288; MACs 32 channels · 56·56 outputs · 9 = 903,168
    assert (depthwise.params, depthwise.macs, depthwise.output_shape) == (288, 903_168, (1, 32, 56, 56))
    pointwise = POINTWISE_CONV2D.evaluate({**same, "C_out": 64, "G": 1, "p_h": 0, "p_w": 0})
    # 1×1, 32 → 64: params 32·64 = 2,048; MACs 64·56·56·32 = 6,422,528
    assert (pointwise.params, pointwise.macs, pointwise.output_shape) == (2048, 6_422_528, (1, 64, 56, 56))


def test_depthwise_separable_ratio_is_seed_003() -> None:
    m, k = sp.symbols("M K", integer=True, positive=True)
    assert depthwise_separable_ratio() == 1 / m + 1 / k**2
    assert to_text(depthwise_separable_ratio()) == "1/M + 1/K**2"
    assert to_text(depthwise_separable_ratio("params")) == "1/M + 1/K**2"


def test_group_ratio() -> None:
    assert group_ratio() == 1 / sp.Symbol("G", integer=True, positive=True)


@st.composite
def conv_layers(draw: st.DrawFn) -> tuple[nn.Module, tuple[int, ...]]:
    ndim = draw(st.integers(1, 3))
    transposed = draw(st.booleans())
    groups = draw(st.integers(1, 3))
    c_in = groups * draw(st.integers(1, 3))
    c_out = groups * draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    padding = tuple(draw(st.integers(0, 2)) for _ in range(ndim))
    bias = draw(st.booleans())
    # Smallest input that a conv accepts: the dilated kernel must fit in the padded input.
    sizes = tuple(
        max(1, d * (k - 1) + 1 - 2 * p) + draw(st.integers(0, 4)) for k, d, p in zip(kernel, dilation, padding)
    )
    if transposed:
        output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
        layer_type = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[ndim - 1]
        module = layer_type(c_in, c_out, kernel, stride, padding, output_padding, groups, bias, dilation)
    else:
        layer_type = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[ndim - 1]
        module = layer_type(c_in, c_out, kernel, stride, padding, dilation, groups, bias)
    batch = draw(st.integers(1, 2))
    return module, (batch, c_in, *sizes)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(conv_layers())
def test_formula_matches_torch_and_measurement(case: tuple[nn.Module, tuple[int, ...]]) -> None:
    module, shape = case
    evaluation, measured, output = formula_and_measured(module, torch.randn(shape))
    assert evaluation.output_shape == tuple(output.shape)
    assert evaluation.params == param_count(module)
    assert (evaluation.macs, evaluation.ops) == (measured.macs, measured.ops)
    meta_module = module.to("meta")
    meta_evaluation, meta_measured, _ = formula_and_measured(meta_module, torch.empty(shape, device="meta"))
    assert (meta_measured.macs, meta_measured.ops) == (measured.macs, measured.ops)
    assert meta_evaluation == evaluation
