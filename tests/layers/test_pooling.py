"""Pooling, upsampling and the free layers: hand-derived counts, torch's output shapes, formula == measured."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from support import formula_and_measured, param_count
from torch import nn

from flopcalc.formula import Evaluation
from flopcalc.layers.pooling import adaptive_formula
from flopcalc.measure import Count
from flopcalc.registry import REGISTRY

DEVICES = ("cpu", "meta")
PROPERTY = settings(max_examples=30, deadline=None, derandomize=True)


def nonzero(ops: Mapping[str, int]) -> dict[str, int]:
    return {kind: n for kind, n in ops.items() if n}


def run(module: nn.Module, shape: tuple[int, ...], device: str) -> tuple[Evaluation, Count, torch.Tensor]:
    """Formula and measurement of ``module`` on a fresh input of ``shape``; checks they agree with torch."""
    module = copy.deepcopy(module).to(device)
    x = torch.randn(shape) if device == "cpu" else torch.empty(shape, device=device)
    evaluation, measured, out = formula_and_measured(module, x)
    out = out[0] if isinstance(out, tuple) else out
    assert evaluation.output_shape == tuple(out.shape)
    assert evaluation.params == param_count(module) == 0
    assert evaluation.macs == measured.macs == 0
    assert nonzero(evaluation.ops) == nonzero(measured.ops)
    return evaluation, measured, out


CASES = [
    # AlexNet's three max pools: 3×3 windows, stride 2, 8 comparisons per output.
    ("alexnet_pool1", nn.MaxPool2d(3, 2), (1, 64, 55, 55), (1, 64, 27, 27), {"compare": 64 * 27 * 27 * (9 - 1)}),
    ("alexnet_pool2", nn.MaxPool2d(3, 2), (1, 192, 27, 27), (1, 192, 13, 13), {"compare": 192 * 13 * 13 * 8}),
    ("alexnet_pool3", nn.MaxPool2d(3, 2), (1, 256, 13, 13), (1, 256, 6, 6), {"compare": 256 * 6 * 6 * 8}),
    ("resnet_stem_pool", nn.MaxPool2d(3, 2, 1), (2, 64, 112, 112), (2, 64, 56, 56), {"compare": 2 * 64 * 56 * 56 * 8}),
    ("max1d", nn.MaxPool1d(3, 2), (2, 3, 10), (2, 3, 4), {"compare": 2 * 3 * 4 * 2}),
    ("max1d_unbatched", nn.MaxPool1d(2), (3, 9), (3, 4), {"compare": 3 * 4 * 1}),
    ("max2d_unbatched", nn.MaxPool2d(2), (3, 8, 8), (3, 4, 4), {"compare": 3 * 4 * 4 * 3}),
    ("max3d", nn.MaxPool3d(2), (1, 2, 4, 6, 8), (1, 2, 2, 3, 4), {"compare": 2 * 2 * 3 * 4 * 7}),
    # dilation 2 spreads the 3 taps over 5 positions: (10 - 5) // 1 + 1 = 6; the taps stay 3 × 3.
    ("max2d_dilated", nn.MaxPool2d(3, 1, dilation=2), (1, 1, 10, 10), (1, 1, 6, 6), {"compare": 6 * 6 * 8}),
    # ceil_mode: ceil((5 - 2) / 2) + 1 = 3; the last window covers only column 4, still counted as 2×2.
    ("max2d_ceil", nn.MaxPool2d(2, 2, ceil_mode=True), (1, 1, 5, 5), (1, 1, 3, 3), {"compare": 3 * 3 * 3}),
    # ceil_mode rule: ceil((4 - 1) / 2) + 1 = 3, but window 2 would start at 4, past the input: 2.
    ("max1d_ceil_dropped", nn.MaxPool1d(1, 2, ceil_mode=True), (1, 1, 4), (1, 1, 2), {}),
    # with padding: ceil((6 + 2 - 2 - 1) / 4) + 1 = 3; window 2 starts at 2·4 = 8 >= 6 + 1: dropped.
    ("max1d_ceil_pad_dropped", nn.MaxPool1d(3, 4, 1, ceil_mode=True), (1, 2, 6), (1, 2, 2), {"compare": 2 * 2 * 2}),
    ("avg1d", nn.AvgPool1d(3, 2), (2, 3, 10), (2, 3, 4), {"add": 2 * 3 * 4 * 2, "div": 2 * 3 * 4}),
    ("avg2d", nn.AvgPool2d(2), (1, 4, 8, 8), (1, 4, 4, 4), {"add": 4 * 4 * 4 * 3, "div": 4 * 4 * 4}),
    ("avg3d", nn.AvgPool3d(2, 1), (1, 2, 3, 3, 3), (1, 2, 2, 2, 2), {"add": 2 * 8 * 7, "div": 2 * 8}),
    # padding, count_include_pad=False, divisor_override and ceil_mode change the divisor or the window, not
    # the count of one 9-tap window per output: (10 + 2 - 3) // 2 + 1 = 5.
    ("avg2d_pad", nn.AvgPool2d(3, 2, 1), (1, 2, 10, 10), (1, 2, 5, 5), {"add": 2 * 25 * 8, "div": 2 * 25}),
    ("avg2d_exclude_pad", nn.AvgPool2d(3, 2, 1, count_include_pad=False), (1, 2, 10, 10), (1, 2, 5, 5),
     {"add": 2 * 25 * 8, "div": 2 * 25}),
    ("avg2d_divisor", nn.AvgPool2d(3, 2, 1, divisor_override=5), (1, 2, 10, 10), (1, 2, 5, 5),
     {"add": 2 * 25 * 8, "div": 2 * 25}),
    ("avg2d_ceil", nn.AvgPool2d(3, 2, ceil_mode=True), (1, 1, 8, 8), (1, 1, 4, 4), {"add": 16 * 8, "div": 16}),
    # Adaptive pools: exact windows [floor(i·I/O), ceil((i+1)·I/O)).
    # 6 → 6: six windows of 1: T = 6, nothing to add.
    ("adaptive_avg_alexnet_6x6", nn.AdaptiveAvgPool2d((6, 6)), (1, 256, 6, 6), (1, 256, 6, 6),
     {"div": 256 * 6 * 6}),
    # 13 → 6: windows [0,3) [2,5) [4,7) [6,9) [8,11) [10,13), each 3 long, so T = 6·3 = 18 per dimension
    # (overlapping; 13 % 6 != 0), and 18·18 taps per channel reduce to 6·6 values.
    ("adaptive_avg_alexnet_13x13", nn.AdaptiveAvgPool2d((6, 6)), (1, 256, 13, 13), (1, 256, 6, 6),
     {"add": 256 * (18 * 18 - 6 * 6), "div": 256 * 6 * 6}),
    # 10 → 4: [0,3) [2,5) [5,8) [7,10): T = 3 + 3 + 3 + 3 = 12.
    ("adaptive_avg1d_10_to_4", nn.AdaptiveAvgPool1d(4), (2, 3, 10), (2, 3, 4), {"add": 6 * (12 - 4), "div": 6 * 4}),
    # 10 → 3: [0,4) [3,7) [6,10): T = 12.
    ("adaptive_max1d_10_to_3", nn.AdaptiveMaxPool1d(3), (2, 3, 10), (2, 3, 3), {"compare": 6 * (12 - 3)}),
    # 2 → 3 (output larger than input): [0,1) [0,2) [1,2): T = 4.
    ("adaptive_avg1d_2_to_3", nn.AdaptiveAvgPool1d(3), (1, 1, 2), (1, 1, 3), {"add": 4 - 3, "div": 3}),
    # 7 → 1 is the global mean (dispatched as aten.mean): 49 taps, 48 adds per channel.
    ("global_avg", nn.AdaptiveAvgPool2d(1), (2, 8, 7, 7), (2, 8, 1, 1), {"add": 16 * 48, "div": 16}),
    ("global_max", nn.AdaptiveMaxPool2d(1), (2, 8, 7, 7), (2, 8, 1, 1), {"compare": 16 * 48}),
    ("global_avg3d", nn.AdaptiveAvgPool3d(1), (1, 2, 3, 4, 5), (1, 2, 1, 1, 1), {"add": 2 * 59, "div": 2}),
    # None keeps the input size: H 5 → 5 (T = 5), W 9 → 2: [0,5) [4,9) (T = 10).
    ("adaptive_none", nn.AdaptiveMaxPool2d((None, 2)), (3, 5, 9), (3, 5, 2), {"compare": 3 * (5 * 10 - 5 * 2)}),
    # 12 → 4 divides: windows of 3, T = 12 = I.
    ("adaptive_max3d", nn.AdaptiveMaxPool3d((2, 4, 1)), (1, 1, 4, 12, 3), (1, 1, 2, 4, 1),
     {"compare": 4 * 12 * 3 - 2 * 4 * 1}),
    ("adaptive_max2d_indices", nn.AdaptiveMaxPool2d(2, return_indices=True), (1, 3, 5, 5), (1, 3, 2, 2),
     # 5 → 2: [0,3) [2,5): T = 6 per dimension.
     {"compare": 3 * (6 * 6 - 4)}),
    # Interpolation: per output element P^n muls and P^n - 1 adds; nearest modes copy.
    ("nearest1d", nn.Upsample(scale_factor=2), (1, 2, 4), (1, 2, 8), {}),
    ("nearest2d_size", nn.Upsample(size=(7, 5)), (1, 2, 4, 4), (1, 2, 7, 5), {}),
    ("nearest3d", nn.Upsample(scale_factor=2), (1, 2, 2, 3, 4), (1, 2, 4, 6, 8), {}),
    ("nearest_exact2d", nn.Upsample(scale_factor=3, mode="nearest-exact"), (1, 2, 2, 2), (1, 2, 6, 6), {}),
    ("upsampling_nearest2d", nn.UpsamplingNearest2d(scale_factor=2), (1, 3, 4, 4), (1, 3, 8, 8), {}),
    ("linear", nn.Upsample(scale_factor=2, mode="linear"), (2, 3, 5), (2, 3, 10), {"mul": 6 * 10 * 2, "add": 6 * 10}),
    ("bilinear", nn.Upsample(scale_factor=2, mode="bilinear"), (1, 3, 4, 4), (1, 3, 8, 8),
     {"mul": 3 * 64 * 4, "add": 3 * 64 * 3}),
    ("bilinear_align_corners", nn.UpsamplingBilinear2d(size=(6, 9)), (1, 3, 4, 4), (1, 3, 6, 9),
     {"mul": 3 * 54 * 4, "add": 3 * 54 * 3}),
    # floor(5 · 1.7) = floor(8.5) = 8 rows and columns.
    ("bilinear_fractional_scale", nn.Upsample(scale_factor=1.7, mode="bilinear"), (1, 1, 5, 5), (1, 1, 8, 8),
     {"mul": 64 * 4, "add": 64 * 3}),
    ("bicubic", nn.Upsample(scale_factor=(2, 3), mode="bicubic"), (1, 2, 3, 3), (1, 2, 6, 9),
     {"mul": 2 * 54 * 16, "add": 2 * 54 * 15}),
    ("bicubic_down", nn.Upsample(scale_factor=0.5, mode="bicubic", align_corners=True), (1, 2, 8, 8), (1, 2, 4, 4),
     {"mul": 2 * 16 * 16, "add": 2 * 16 * 15}),
    ("trilinear", nn.Upsample(size=(2, 3, 4), mode="trilinear"), (1, 2, 1, 2, 2), (1, 2, 2, 3, 4),
     {"mul": 2 * 24 * 8, "add": 2 * 24 * 7}),
    # area: adaptive average pooling; 10 → 5 rows (windows of 2), 10 → floor(10 · 0.5) = 5 columns.
    ("area", nn.Upsample(scale_factor=0.5, mode="area"), (1, 2, 10, 10), (1, 2, 5, 5),
     {"add": 2 * (10 * 10 - 25), "div": 2 * 25}),
    # Free layers.
    ("identity", nn.Identity(), (2, 3, 4), (2, 3, 4), {}),
    ("dropout", nn.Dropout(0.3), (2, 3), (2, 3), {}),
    ("dropout1d", nn.Dropout1d(), (2, 3, 4), (2, 3, 4), {}),
    ("dropout2d", nn.Dropout2d(), (2, 3, 4, 4), (2, 3, 4, 4), {}),
    ("dropout3d", nn.Dropout3d(), (2, 3, 2, 2, 2), (2, 3, 2, 2, 2), {}),
    ("alpha_dropout", nn.AlphaDropout(), (2, 3), (2, 3), {}),
    ("feature_alpha_dropout", nn.FeatureAlphaDropout(), (2, 3, 4), (2, 3, 4), {}),
    ("flatten_alexnet", nn.Flatten(), (1, 256, 6, 6), (1, 256 * 6 * 6), {}),
    ("flatten_middle", nn.Flatten(1, 2), (2, 3, 4, 5), (2, 12, 5), {}),
    ("unflatten", nn.Unflatten(1, (3, 4)), (2, 12), (2, 3, 4), {}),
    ("unflatten_infer", nn.Unflatten(-1, (2, -1)), (5, 12), (5, 2, 6), {}),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("module", "shape", "out_shape", "ops"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hand_derived(module: nn.Module, shape: tuple[int, ...], out_shape: tuple[int, ...],
                      ops: dict[str, int], device: str) -> None:
    evaluation, _, out = run(module, shape, device)
    assert tuple(out.shape) == out_shape
    assert nonzero(evaluation.ops) == ops


def test_alexnet_pool_renders_its_arithmetic() -> None:
    bound = REGISTRY.binder_for(nn.MaxPool2d(3, 2))(nn.MaxPool2d(3, 2), (torch.empty(1, 64, 55, 55),), {})
    assert bound.formula.substituted("compare", bound.values) == "64·27·27·(3·3 - 1) = 373,248"


@pytest.mark.parametrize(("size", "out"), [(13, 6), (10, 4), (10, 3), (2, 3), (12, 4), (7, 7), (224, 7), (9, 1)])
def test_adaptive_window_total_is_size_plus_out_minus_gcd(size: int, out: int) -> None:
    """Σ_i (ceil((i+1)·I/O) − floor(i·I/O)) = I + O − gcd(I, O); when O divides I that is I."""
    evaluation = adaptive_formula(1, "avg").evaluate({"N": 1, "C": 1, "L": size, "L_out": out})
    assert evaluation.ops.get("add", 0) == size + out - math.gcd(size, out) - out


def test_every_module_of_the_family_is_bound() -> None:
    modules = [
        nn.MaxPool1d(2), nn.MaxPool2d(2), nn.MaxPool3d(2), nn.AvgPool1d(2), nn.AvgPool2d(2), nn.AvgPool3d(2),
        nn.AdaptiveMaxPool1d(2), nn.AdaptiveMaxPool2d(2), nn.AdaptiveMaxPool3d(2), nn.AdaptiveAvgPool1d(2),
        nn.AdaptiveAvgPool2d(2), nn.AdaptiveAvgPool3d(2), nn.Upsample(scale_factor=2), nn.UpsamplingNearest2d(2),
        nn.UpsamplingBilinear2d(2), nn.Identity(), nn.Flatten(), nn.Unflatten(1, (1, 1)), nn.Dropout(),
        nn.Dropout1d(), nn.Dropout2d(), nn.Dropout3d(), nn.AlphaDropout(), nn.FeatureAlphaDropout(),
    ]
    assert [type(m).__name__ for m in modules if REGISTRY.binder_for(m) is None] == []


def check_property(make: Callable[[], nn.Module], shape: tuple[int, ...]) -> None:
    """Formula output shape == torch's and formula == measured, on cpu and meta (skips invalid configs)."""
    try:
        module = make()
        module(torch.zeros(shape))
    except (RuntimeError, ValueError):
        assume(False)
    for device in DEVICES:
        run(module, shape, device)


sizes = st.integers(1, 9)


@st.composite
def window_pools(draw: Any) -> tuple[Callable[[], nn.Module], tuple[int, ...]]:
    ndim = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["max", "avg"]))
    kernel = tuple(draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)))
    stride = tuple(draw(st.lists(st.integers(1, 3), min_size=ndim, max_size=ndim)))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    ceil_mode = draw(st.booleans())
    batched = draw(st.booleans())
    shape = (2, 3) if batched else (3,)
    shape += tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
    if kind == "max":
        dilation = tuple(draw(st.lists(st.integers(1, 2), min_size=ndim, max_size=ndim)))
        cls = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)[ndim - 1]
        return (lambda: cls(kernel, stride, padding, dilation, ceil_mode=ceil_mode)), shape
    count_include_pad = draw(st.booleans())
    cls = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)[ndim - 1]
    return (lambda: cls(kernel, stride, padding, ceil_mode=ceil_mode, count_include_pad=count_include_pad)), shape


@PROPERTY
@given(window_pools())
def test_window_pools_property(case: tuple[Callable[[], nn.Module], tuple[int, ...]]) -> None:
    check_property(*case)


@st.composite
def adaptive_pools(draw: Any) -> tuple[Callable[[], nn.Module], tuple[int, ...]]:
    ndim = draw(st.integers(1, 3))
    classes = (
        (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d),
        (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d),
    )
    cls = draw(st.sampled_from(classes))[ndim - 1]
    out = tuple(draw(st.lists(st.one_of(st.none(), st.integers(1, 7)), min_size=ndim, max_size=ndim)))
    shape = ((2, 3) if draw(st.booleans()) else (3,)) + tuple(draw(st.lists(sizes, min_size=ndim, max_size=ndim)))
    return (lambda: cls(out if ndim > 1 else out[0] or 1)), shape


@PROPERTY
@given(adaptive_pools())
def test_adaptive_pools_property(case: tuple[Callable[[], nn.Module], tuple[int, ...]]) -> None:
    check_property(*case)


@st.composite
def upsamples(draw: Any) -> tuple[Callable[[], nn.Module], tuple[int, ...]]:
    mode = draw(st.sampled_from(["nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area"]))
    ndim = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}.get(mode) or draw(st.integers(1, 3))
    shape = (draw(st.integers(1, 2)), 2) + tuple(draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim)))
    align = draw(st.booleans()) if mode in ("linear", "bilinear", "bicubic", "trilinear") else None
    if draw(st.booleans()):
        size = tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
        return (lambda: nn.Upsample(size=size, mode=mode, align_corners=align)), shape
    scale = tuple(draw(st.lists(st.sampled_from([0.5, 0.7, 1.0, 1.3, 1.7, 2.0, 2.5, 3.0]), min_size=ndim,
                                max_size=ndim)))
    return (lambda: nn.Upsample(scale_factor=scale, mode=mode, align_corners=align)), shape


@PROPERTY
@given(upsamples())
def test_upsample_property(case: tuple[Callable[[], nn.Module], tuple[int, ...]]) -> None:
    check_property(*case)


@st.composite
def free_layers(draw: Any) -> tuple[Callable[[], nn.Module], tuple[int, ...]]:
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=5)))
    rank = len(shape)
    kind = draw(st.sampled_from(["identity", "dropout", "flatten", "unflatten"]))
    if kind == "flatten":
        start = draw(st.integers(-rank, rank - 1))
        end = draw(st.integers(-rank, rank - 1))
        return (lambda: nn.Flatten(start, end)), shape
    if kind == "unflatten":
        dim = draw(st.integers(-rank, rank - 1))
        size = shape[dim]
        first = draw(st.sampled_from([d for d in range(1, size + 1) if size % d == 0]))
        rest = draw(st.sampled_from([size // first, -1]))
        return (lambda: nn.Unflatten(dim, (first, rest))), shape
    return (nn.Identity if kind == "identity" else nn.Dropout), shape


@PROPERTY
@given(free_layers())
def test_free_layers_property(case: tuple[Callable[[], nn.Module], tuple[int, ...]]) -> None:
    check_property(*case)
