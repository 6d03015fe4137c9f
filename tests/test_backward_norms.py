"""Backward formulas of GroupNorm, InstanceNorm, RMSNorm, Bilinear, EmbeddingBag and upsampling, checked by hand
and against the measured backward (what autograd executes), on meta and on cpu."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import flopcalc
from flopcalc import InputSpec
from flopcalc.measure import measure
from flopcalc.measure.core import cost_of
from flopcalc.report import Status

PROPERTY = settings(max_examples=12, deadline=None, derandomize=True)
DEVICES = ["meta", "cpu"]

aten = torch.ops.aten


def analyze(model: nn.Module, inputs, device: str = "meta", **kwargs) -> flopcalc.Report:
    report = flopcalc.analyze(model, inputs, backward=True, device=device, **kwargs)
    bad = [(row.name, row.backward.status, row.backward.mismatches) for row in report.rows
           if row.bound is not None and row.backward.status is not Status.MATCH]
    assert bad == [], bad
    return report


def frozen(module: nn.Module) -> nn.Module:
    return module.requires_grad_(False)


# GroupNorm ---------------------------------------------------------------------------------------------------


def test_group_norm_by_hand():
    """GroupNorm(2 groups, 4 channels) on 1×4×3×3: T = 36 elements, 2 groups of M = 18, γ/β shared by 9."""
    norm = analyze(nn.Sequential(nn.Conv2d(4, 4, 1), nn.GroupNorm(2, 4)), (1, 4, 3, 3)).row("1").backward
    # grad-weight: x̂ 36 add + 36 mul; β (9 - 1)*4 = 32 add; γ 36 mul (g·x̂) + 32 add.
    assert norm.grad_weight.ops == {"add": 36 + 32 + 32, "mul": 36 + 36}
    # grad-input: g·γ 36, Σĝ·x̂ 36, 3*36 mul = 180; group sums 2*2*(18 - 1) = 68 + 2*36 add; rstd/M 2 div.
    assert norm.grad_input.ops == {"mul": 180, "add": 68 + 72, "div": 2}


def test_group_norm_frozen_and_first():
    model = nn.Sequential(nn.Conv2d(4, 4, 1), frozen(nn.GroupNorm(2, 4)))
    norm = analyze(model, (1, 4, 3, 3)).row("1").backward
    # No parameter gradient: grad-input makes x̂ itself, 36 add + 36 mul, on top of the 180 mul and 140 add.
    assert (norm.grad_weight.ops, norm.grad_input.ops) == ({}, {"mul": 216, "add": 176, "div": 2})
    first = analyze(nn.Sequential(nn.GroupNorm(2, 4), nn.Conv2d(4, 4, 1)), (1, 4, 3, 3)).row("0").backward
    # The input needs no gradient: only the parameter gradients.
    assert (first.grad_input.ops, first.grad_weight.ops) == ({}, {"add": 100, "mul": 72})


def test_group_norm_measured_once_per_element_for_x_hat():
    """The op rule makes x̂ once when grad-input and grad-weight both run (the count of the hand test above)."""
    x = torch.randn(1, 4, 3, 3, requires_grad=True)
    norm = nn.GroupNorm(2, 4)
    out = norm(x)
    tally = measure(lambda: torch.autograd.grad(out, [x, *norm.parameters()], torch.ones_like(out)))
    assert tally.count.ops == {"add": 240, "mul": 252, "div": 2}  # 100 + 140 add, 72 + 180 mul


# InstanceNorm ------------------------------------------------------------------------------------------------


def test_instance_norm_by_hand():
    """InstanceNorm2d(4, affine=True) on 2×4×3×3: T = 72, N·C = 8 groups of S = 9; torch normalises a
    1×8×3×3 view with γ and β repeated per sample."""
    model = nn.Sequential(nn.Conv2d(4, 4, 1), nn.InstanceNorm2d(4, affine=True))
    norm = analyze(model, (2, 4, 3, 3)).row("1").backward
    # β (9 - 1)*8 = 64 add; γ 72 mul + 64 add; x̂ 72 add + 72 mul; the repeats' sums (2 - 1)*4 for each: 8 add.
    assert norm.grad_weight.ops == {"add": 64 + 64 + 72 + 8, "mul": 144}
    # grad-input: γ·rstd 8 mul, 3*72 mul, 2*72 add, 8 div (the sums came with the parameter gradients).
    assert norm.grad_input.ops == {"mul": 8 + 216, "add": 144, "div": 8}


def test_instance_norm_without_affine_and_running_stats():
    plain = analyze(nn.Sequential(nn.Conv2d(4, 4, 1), nn.InstanceNorm2d(4)), (2, 4, 3, 3)).row("1").backward
    # x̂ 72 add + 72 mul; Σg and Σg·x̂ 2*8*(9 - 1) = 128 add + 72 mul; 3*72 mul, 2*72 add, 8 div.
    assert plain.grad_input.ops == {"add": 72 + 128 + 144, "mul": 72 + 72 + 216, "div": 8}
    model = nn.Sequential(nn.Conv2d(4, 4, 1), nn.InstanceNorm2d(4, affine=True, track_running_stats=True))
    running = analyze(model, (2, 4, 3, 3)).row("1").backward
    # Eval with running statistics: rstd per (sample, channel) 8 add, 8 sqrt, 8 div; g·(γ·rstd) 72 + 8 mul.
    assert running.grad_input.ops == {"add": 8, "sqrt": 8, "div": 8, "mul": 80}
    trained = analyze(model, (2, 4, 3, 3), training=True).row("1").backward
    assert trained.grad_input.ops == {"mul": 224, "add": 144, "div": 8}  # batch statistics, as above


# RMSNorm -----------------------------------------------------------------------------------------------------


def test_rms_norm_by_hand():
    """RMSNorm(6) on 3 rows: T = 18. Autograd differentiates x·rsqrt(mean(x²) + ε)·γ op by op."""
    norm = analyze(nn.Sequential(nn.Linear(5, 6), nn.RMSNorm(6)), (3, 5)).row("1").backward
    # grad-weight Σ g·x̂ over the rows: 18 mul, (3 - 1)*6 = 12 add.
    assert norm.grad_weight.ops == {"mul": 18, "add": 12}
    # grad-input: g·γ 18, g·rstd 18, g·x 18, rsqrt 4*3, the square 2*18 mul = 102; Σg·x 3*5 add and the sum of
    # x's two gradients 18 add; the mean's /6 per element, 18 div.
    assert norm.grad_input.ops == {"mul": 102, "add": 15 + 18, "div": 18}


def test_rms_norm_gradient_sums_stay_with_their_calls():
    """Pre-norm residual ``h + out(norm(h))``: h's gradient is summed twice; the sum of the norm's own two uses
    is the norm's, the residual's sum (3*6 = 18 adds) is the model's."""

    class PreNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.norm, self.out = nn.Linear(6, 6), nn.RMSNorm(6), nn.Linear(6, 6)

        def forward(self, x):
            h = self.lin(x)
            return h + self.out(self.norm(h))

    for device in DEVICES:
        report = analyze(PreNorm(), (3, 6), device=device)
        assert report.row("norm").backward.grad_input.ops["add"] == 33
        assert report.rows[0].own.backward.measured.ops == {"add": 18}


def test_rms_norm_as_the_model_with_an_input_that_needs_a_gradient():
    x = torch.randn(3, 6, requires_grad=True)
    norm = analyze(nn.RMSNorm(6), x, device="cpu").rows[0].backward
    assert norm.measured.ops == {"mul": 120, "add": 45, "div": 18}  # 102 + 18 mul, 33 + 12 add


def test_fused_rms_norm_backward_counts_as_the_decomposition():
    """CUDA's fused backward is counted as autograd's chain over the decomposition, measured here on cpu."""
    x, weight = torch.randn(4, 5, 6, requires_grad=True), torch.randn(6, requires_grad=True)
    out = F.rms_norm(x, (6,), weight)
    chain = measure(lambda: torch.autograd.grad(out, [x, weight], torch.ones_like(out))).count
    meta = [torch.empty(4, 5, 6, device="meta"), torch.empty(4, 5, 6, device="meta")]
    fused = cost_of(aten._fused_rms_norm_backward.default, *meta, [6], torch.empty(4, 5, 1, device="meta"),
                    torch.empty(6, device="meta"), [True, True], out=None)
    assert fused == chain
    only_weight = cost_of(aten._fused_rms_norm_backward.default, *meta, [6], torch.empty(4, 5, 1, device="meta"),
                          torch.empty(6, device="meta"), [False, True], out=None)
    assert only_weight.ops == {"mul": 120, "add": 19 * 6}  # 4*5*6 g·x̂, (20 - 1)*6 row sums


# Bilinear ----------------------------------------------------------------------------------------------------


class TwoInputs(nn.Module):
    """Two Linear layers feeding nn.Bilinear, so each input's gradient can be switched off by freezing its layer."""

    def __init__(self, in1: int = 3, in2: int = 4, out: int = 5, same: bool = False):
        super().__init__()
        self.a, self.b = nn.Linear(in1, in1), nn.Linear(in2, in2)
        self.bil = nn.Bilinear(in1, in1 if same else in2, out)
        self.in1, self.same = in1, same

    def forward(self, x):
        x1 = self.a(x[..., : self.in1])
        return self.bil(x1, x1 if self.same else self.b(x[..., self.in1 :]))


def test_bilinear_by_hand():
    bil = analyze(TwoInputs(), (2, 7)).row("bil").backward
    # dx1 = (g·A)·x2: 2*3*4*5 + 2*3*4 = 144; dx2 = g·(x1ᵀA): 2*5*4*3 + 2*5*4 = 160 MACs.
    assert (bil.grad_input.macs, bil.grad_input.ops) == (304, {})
    # dA: the outer product g_k·x1_i 2*5*3 = 30 mul, then Σ_n ·x2_j 2*5*3*4 = 120 MACs; db (2 - 1)*5 = 5 add.
    assert (bil.grad_weight.macs, bil.grad_weight.ops) == (120, {"mul": 30, "add": 5})


def test_bilinear_each_input_and_the_same_input_twice():
    model = TwoInputs()
    model.a.requires_grad_(False)
    bil = analyze(model, (2, 7)).row("bil").backward
    assert (bil.flags["g_x1"], bil.flags["g_x2"], bil.grad_input.macs) == (0, 1, 160)  # only dx2
    model.bil.requires_grad_(False)
    assert analyze(model, (2, 7)).row("bil").backward.grad_weight.macs == 0
    same = analyze(TwoInputs(same=True), (2, 7)).row("bil").backward
    # bil(x1, x1): dx1 2*3*3*6 = 108 and dx2 2*5*3*4 = 120 MACs, then x1's two gradients summed: 2*3 = 6 add.
    assert (same.grad_input.macs, same.grad_input.ops) == (228, {"add": 6})


# EmbeddingBag ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "expected"), [
    ("sum", {"add": 60}),  # 3 bags of 5 lookups: each looked-up row gets its bag's gradient, 15*4 = 60 add
    ("mean", {"add": 60, "div": 12}),  # and each bag's gradient divided by its size once, 3*4 = 12 div
    ("max", {"add": 12}),  # each output's gradient added at its argmax row, 3*4 = 12 add
])
def test_embedding_bag_by_hand(mode, expected):
    model = nn.Sequential(nn.EmbeddingBag(20, 4, mode=mode), nn.Linear(4, 2))
    bag = analyze(model, [InputSpec((3, 5), torch.int64)]).row("0").backward
    assert (bag.grad_input.ops, bag.grad_weight.ops) == ({}, expected)


class Weighted(nn.Module):
    """An embedding bag whose per-sample weights come from a Linear layer, so they need a gradient."""

    def __init__(self):
        super().__init__()
        self.bag, self.scale = nn.EmbeddingBag(20, 4, mode="sum"), nn.Linear(1, 1)

    def forward(self, indices, offsets, weights):
        return self.bag(indices, offsets, per_sample_weights=self.scale(weights.unsqueeze(-1)).squeeze(-1))


@pytest.mark.parametrize("device", DEVICES)
def test_embedding_bag_per_sample_weights(device):
    inputs = (torch.randint(0, 20, (7,)), torch.tensor([0, 3]), torch.randn(7))
    bag = analyze(Weighted(), inputs, device=device).row("bag").backward
    # The weights' gradient: bag gradient · looked-up row, 7*4 = 28 MACs; the table's: 28 mul + 28 add.
    assert (bag.grad_input.macs, bag.grad_weight.ops) == (28, {"add": 28, "mul": 28})
    model = Weighted()
    model.bag.requires_grad_(False)
    assert analyze(model, inputs, device=device).row("bag").backward.grad_weight.ops == {}


# Upsampling --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("upsample", "shape", "expected"), [
    # 1×2×6×6 = 72 outputs, each gradient added into its source.
    (nn.Upsample(scale_factor=2), (1, 3, 3, 3), {"add": 72}),
    (nn.Upsample(scale_factor=2, mode="nearest-exact"), (1, 3, 3, 3), {"add": 72}),
    # Each of 72 output gradients times 4 weights, added into 4 neighbours: 288 mul + 288 add.
    (nn.Upsample(scale_factor=2, mode="bilinear"), (1, 3, 3, 3), {"mul": 288, "add": 288}),
    # size 5×7: 2*35 = 70 outputs, 16 neighbours each: 1,120.
    (nn.Upsample(size=(5, 7), mode="bicubic", align_corners=True), (1, 3, 3, 3), {"mul": 1_120, "add": 1_120}),
    # L = floor(4*1.5) = 6: 2*6 = 12 outputs, 2 neighbours: 24.
    (nn.Upsample(scale_factor=1.5, mode="linear"), (1, 3, 4), {"mul": 24, "add": 24}),
    # 2*4*4*4 = 128 outputs, 8 neighbours: 1,024.
    (nn.Upsample(scale_factor=2, mode="trilinear"), (1, 3, 2, 2, 2), {"mul": 1_024, "add": 1_024}),
])
def test_upsampling_by_hand(upsample, shape, expected):
    conv = {3: nn.Conv1d, 4: nn.Conv2d, 5: nn.Conv3d}[len(shape)](3, 2, 1)
    up = analyze(nn.Sequential(conv, upsample), shape).row("1").backward
    assert up.grad_input.ops == expected
    first = analyze(nn.Sequential(upsample, {3: nn.Conv1d, 4: nn.Conv2d, 5: nn.Conv3d}[len(shape)](3, 2, 1)), shape)
    assert first.row("0").backward.ops == {}  # the input needs no gradient: nothing to route


# Functional rows and every family together, on meta and cpu ---------------------------------------------------


class Mixed(nn.Module):
    """GroupNorm, InstanceNorm, RMSNorm, Bilinear, EmbeddingBag and upsampling, as modules and as functions."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.group = nn.GroupNorm(4, 8)
        self.instance = nn.InstanceNorm2d(8, affine=True)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear")
        self.gamma, self.beta = nn.Parameter(torch.ones(8)), nn.Parameter(torch.zeros(8))
        self.rms = nn.RMSNorm(8)
        self.scale = nn.Parameter(torch.ones(8))
        self.bag = nn.EmbeddingBag(30, 8, mode="mean")
        self.bil = nn.Bilinear(8, 8, 4)

    def forward(self, x, indices):
        h = self.up(self.instance(self.group(self.conv(x))))
        h = F.interpolate(F.group_norm(h, 2, self.gamma, self.beta), size=(5, 5))
        pooled = F.rms_norm(self.rms(h.mean((2, 3))), (8,), self.scale)
        return self.bil(pooled, self.bag(indices))


@pytest.mark.parametrize("device", DEVICES)
def test_mixed_model_every_row_matches(device):
    inputs = (torch.randn(2, 3, 4, 4), torch.randint(0, 30, (2, 6)))
    report = analyze(Mixed(), inputs, device=device)
    functions = sorted(row.function for row in report.rows if row.function)
    assert functions == ["F.group_norm", "F.interpolate", "F.rms_norm"]
    assert not report.totals.backward.uncounted
    checked = [row.name for row in report.rows if row.bound is not None]
    assert len(checked) == 10  # conv, group, instance, up, F.group_norm, F.interpolate, rms, F.rms_norm, bag, bil


# Property tests: formula and measurement agree per row over random hyperparameters ---------------------------


@PROPERTY
@given(groups=st.integers(1, 3), per_group=st.integers(1, 3), n=st.integers(1, 2), spatial=st.lists(
    st.integers(2, 4), min_size=1, max_size=3), affine=st.booleans(), freeze=st.sampled_from(["", "0", "1"]),
    device=st.sampled_from(DEVICES))
def test_group_norm_property(groups, per_group, n, spatial, affine, freeze, device):
    channels = groups * per_group
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[len(spatial)](2, channels, 1)
    model = nn.Sequential(conv, nn.GroupNorm(groups, channels, affine=affine))
    _freeze(model, freeze)
    _analyze_if_trainable(model, (n, 2, *spatial), device)


@PROPERTY
@given(channels=st.integers(1, 4), n=st.integers(1, 3), spatial=st.lists(st.integers(2, 4), min_size=1, max_size=3),
       affine=st.booleans(), track=st.booleans(), training=st.booleans(), batched=st.booleans(),
       freeze=st.sampled_from(["", "0", "1"]), device=st.sampled_from(DEVICES))
def test_instance_norm_property(channels, n, spatial, affine, track, training, batched, freeze, device):
    rank = len(spatial)
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[rank](2, channels, 1)
    norm = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[rank](
        channels, affine=affine, track_running_stats=track)
    model = nn.Sequential(conv, norm)
    _freeze(model, freeze)
    _analyze_if_trainable(model, ((n,) if batched else ()) + (2, *spatial), device, training=training)


@PROPERTY
@given(leading=st.lists(st.integers(1, 3), min_size=0, max_size=2), normalised=st.lists(
    st.integers(1, 4), min_size=1, max_size=2), affine=st.booleans(), residual=st.booleans(),
    freeze=st.sampled_from(["", "norm", "lin"]), device=st.sampled_from(DEVICES))
def test_rms_norm_property(leading, normalised, affine, residual, freeze, device):
    width = int(torch.tensor(normalised).prod())

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(width, width)
            self.norm = nn.RMSNorm(tuple(normalised), elementwise_affine=affine)

        def forward(self, x):
            h = self.lin(x).unflatten(-1, normalised)
            return h + self.norm(h) if residual else self.norm(h)

    model = Block()
    _freeze(model, freeze)
    _analyze_if_trainable(model, (*leading, width), device)


@PROPERTY
@given(in1=st.integers(1, 4), in2=st.integers(1, 4), out=st.integers(1, 4), leading=st.lists(
    st.integers(1, 3), min_size=0, max_size=2), bias=st.booleans(), freeze=st.sampled_from(["", "a", "b", "bil"]),
    device=st.sampled_from(DEVICES))
def test_bilinear_property(in1, in2, out, leading, bias, freeze, device):
    model = TwoInputs(in1, in2, out)
    model.bil = nn.Bilinear(in1, in2, out, bias=bias)
    if freeze:
        getattr(model, freeze).requires_grad_(False)
    _analyze_if_trainable(model, (*leading, in1 + in2), device)


@PROPERTY
@given(mode=st.sampled_from(["sum", "mean", "max"]), bags=st.integers(1, 4), per_bag=st.integers(1, 4),
       width=st.integers(1, 5), max_norm=st.booleans(), frozen_table=st.booleans(), device=st.sampled_from(DEVICES))
def test_embedding_bag_property(mode, bags, per_bag, width, max_norm, frozen_table, device):
    bag = nn.EmbeddingBag(10, width, mode=mode, max_norm=1.0 if max_norm else None)
    bag.requires_grad_(not frozen_table)
    model = nn.Sequential(bag, nn.Linear(width, 2))
    _analyze_if_trainable(model, [InputSpec((bags, per_bag), torch.int64)], device)


@PROPERTY
@given(mode=st.sampled_from(["nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear"]),
       sizes=st.lists(st.integers(1, 4), min_size=3, max_size=3), scale=st.sampled_from([0.5, 1.5, 2, 3]),
       by_size=st.booleans(), align=st.booleans(), device=st.sampled_from(DEVICES))
def test_upsampling_property(mode, sizes, scale, by_size, align, device):
    rank = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}.get(mode, len(sizes))
    spatial = sizes[:rank]
    if by_size:
        upsample = nn.Upsample(size=tuple(s + 1 for s in spatial), mode=mode)
    elif min(int(s * scale) for s in spatial) < 1:
        return
    else:
        upsample = nn.Upsample(scale_factor=scale, mode=mode)
    if mode not in ("nearest", "nearest-exact"):
        upsample.align_corners = align
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[rank](2, 3, 1)
    _analyze_if_trainable(nn.Sequential(conv, upsample), (1, 2, *spatial), device)


def _freeze(model: nn.Module, which: str) -> None:
    """Freeze the child named ``which`` (none for ``""``)."""
    if which:
        model.get_submodule(which).requires_grad_(False)


def _analyze_if_trainable(model: nn.Module, inputs, device: str, **kwargs) -> None:
    if any(p.requires_grad for p in model.parameters()):
        analyze(model, inputs, device=device, **kwargs)


@pytest.mark.parametrize("name", ["lraspp_mobilenet_v3_large", pytest.param("deeplabv3_mobilenet_v3_large",
                                  marks=pytest.mark.slow), pytest.param("fcn_resnet50", marks=pytest.mark.slow)])
def test_segmentation_models_upsample_in_the_backward(name):
    """torchvision's segmentation heads resize with F.interpolate(mode="bilinear"): checked like every row."""
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):
        model = torchvision.models.get_model(name, weights=None, weights_backbone=None)
    report = flopcalc.analyze(model, (1, 3, 64, 64), backward=True)
    assert [row.name for row in report.rows if row.backward.status is Status.MISMATCH] == []
    resized = [row for row in report.rows if row.function == "F.interpolate"]
    assert resized and all(row.backward.status is Status.MATCH for row in resized)
    assert all(row.backward.grad_input.ops["mul"] > 0 for row in resized)
    assert not report.totals.backward.uncounted
