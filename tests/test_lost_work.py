"""No work is lost: every executed op is counted or listed, zero work is 0, and a failing counting rule is
flopcalc's error (listed, the forward goes on), never the model's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import torch
from torch import nn

import flopcalc
from flopcalc.measure import core


def _totals(model: nn.Module, inputs: Any, device: str = "meta") -> tuple[int, dict[str, int], dict[str, int]]:
    report = flopcalc.analyze(model, inputs, device=device)
    return report.totals.macs, dict(report.totals.ops), dict(report.uncounted)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_root_pre_hook_work_is_charged_to_the_root(device: str) -> None:
    model = nn.Linear(4, 5)
    model.register_forward_pre_hook(lambda module, args: (args[0] * 2,))
    # hook: 2·4 = 8 mul; linear: 2·4·5 = 40 MACs, 2·5 = 10 bias adds
    assert _totals(model, (2, 4), device) == (40, {"mul": 8, "bias_add": 10}, {})


def test_global_module_hook_work_is_counted() -> None:
    handle = nn.modules.module.register_module_forward_hook(lambda module, args, out: out + 1)
    try:
        report = flopcalc.analyze(nn.Sequential(nn.Linear(4, 5)), (2, 4))
    finally:
        handle.remove()
    # The hook adds 1 to the 2×5 output of Linear and again of Sequential: 2·10 = 20 adds. torch runs global
    # hooks inside each call, so Linear's own add shows as a mismatch with its formula.
    assert report.totals.measured_flops == 2 * 40 + 10 + 20  # 2·(2·4·5) MACs, 2·5 bias adds, 20 adds
    assert report.row("0").mismatches == ("ops: formula {'bias_add': 10}, measured {'bias_add': 10, 'add': 10}",)


def test_old_style_weight_norm_recomputation_is_counted() -> None:
    with pytest.warns(FutureWarning):
        model = nn.utils.weight_norm(nn.Linear(4, 5))
    macs, ops, uncounted = _totals(model, (2, 4))
    # w = g·v/‖v‖ for v 5×4: squares 20 mul + scale 20 mul = 40, sums 5·(4 − 1) = 15 add, 5 sqrt, 5 div;
    # linear 2·4·5 = 40 MACs and 2·5 = 10 bias adds
    assert (macs, ops, uncounted) == (40, {"mul": 40, "add": 15, "sqrt": 5, "div": 5, "bias_add": 10}, {})


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_data_parallel_counts_as_its_module(device: str) -> None:
    model = nn.DataParallel(nn.Linear(4, 5))
    assert _totals(model, (2, 4), device) == (40, {"bias_add": 10}, {})  # 2·4·5 MACs, 2·5 bias adds


def test_inference_mode_inside_forward_is_counted() -> None:
    class InferenceOnly(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return self.fc(x)

    assert _totals(InferenceOnly(), (2, 3), "cpu") == (24, {"bias_add": 8}, {})  # 2·3·4 MACs, 2·4 bias adds


class Indexed(nn.Module):
    def __init__(self, op: str):
        super().__init__()
        self.op = op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = torch.zeros(2, 4, dtype=torch.long, device=x.device)
        src = torch.ones(2, 4, device=x.device)
        rows = torch.tensor([0, 2], device=x.device)
        if self.op == "scatter-add":
            return x.scatter(0, index, src, reduce="add")
        if self.op == "scatter-multiply":
            return x.scatter(0, index, 2.0, reduce="multiply")
        if self.op == "scatter_add":
            return x.scatter_add(0, index, src)
        if self.op == "scatter_reduce-amax":
            return x.scatter_reduce(0, index, src, "amax")
        if self.op == "scatter_reduce-mean":
            return x.scatter_reduce(0, index, src, "mean")
        if self.op == "index_put-accumulate":
            return x.index_put((rows,), src, accumulate=True)
        if self.op == "index_add-alpha":
            return x.index_add(0, rows, src, alpha=3)
        return x.scatter(0, index, src)


@pytest.mark.parametrize(
    ("op", "ops"),
    [
        ("scatter-add", {"add": 8}),  # one add per index element: 2·4
        ("scatter-multiply", {"mul": 8}),
        ("scatter_add", {"add": 8}),
        ("scatter_reduce-amax", {"compare": 8}),
        ("scatter_reduce-mean", {"add": 8, "div": 12}),  # and one division per result element: 3·4
        ("index_put-accumulate", {"add": 8}),  # 2 rows × 4 columns
        ("index_add-alpha", {"add": 8, "mul": 8}),  # alpha ≠ 1 scales each source element
        ("scatter", {}),  # a plain scatter only moves data
    ],
)
@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_indexed_accumulation_is_counted(op: str, ops: dict[str, int], device: str) -> None:
    assert _totals(Indexed(op), (3, 4), device) == (0, ops, {})


class EmptySum(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :0].sum(1) + x[:, :0].mean(1)


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        (nn.LayerNorm(3), (0, 3)),
        (nn.LayerNorm(0), (2, 0)),
        (nn.Softmax(-1), (2, 0)),
        (nn.LogSoftmax(-1), (2, 0)),
        (nn.GroupNorm(1, 3), (0, 3, 2)),
        (nn.Linear(3, 4), (0, 3)),
    ],
    ids=["layernorm-batch0", "layernorm-empty", "softmax-empty", "logsoftmax-empty", "groupnorm-batch0", "linear"],
)
@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_empty_inputs_do_zero_work(model: nn.Module, shape: tuple[int, ...], device: str) -> None:
    report = flopcalc.analyze(model, torch.zeros(shape), device=device)
    assert (report.totals.macs, dict(report.totals.ops), dict(report.uncounted)) == (0, {}, {})
    assert not report.mismatches


def test_reduction_over_an_empty_dimension_is_zero_not_negative() -> None:
    # the sum and mean over 0 terms do no work; only the final add of the two 4-element results counts
    assert _totals(EmptySum(), (4, 3)) == (0, {"add": 4}, {})


class Powers(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x**x + 2**x


def test_tensor_exponents_are_counted() -> None:
    # each power is exp(b·log a): 2 exp + 1 mul per element, twice over 2·3 = 6 elements; then 6 adds
    assert _totals(Powers(), (2, 3)) == (0, {"exp": 24, "mul": 12, "add": 6}, {})


def test_a_failing_rule_is_listed_and_the_forward_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> core.Count:
        raise ValueError("a bug in a rule")

    monkeypatch.setitem(core._RULES, torch.ops.aten.relu, broken)
    report = flopcalc.analyze(nn.Sequential(nn.ReLU(), nn.Linear(3, 4)), (2, 3))
    assert report.uncounted == {
        "aten.relu.default (flopcalc could not count it, please report: ValueError: a bug in a rule)": 1
    }
    assert report.totals.measured_macs == 2 * 3 * 4  # the Linear after it is still counted: 24


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_transformer_encoder_with_padding_mask(device: str) -> None:
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), 2)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, 3:] = True
    report = flopcalc.analyze(encoder, {"src": torch.randn(2, 5, 16), "src_key_padding_mask": mask}, device=device)
    # per layer: q, k, v, out projections 4·(2·5·16·16) = 10,240; QKᵀ and AV 2·(2·5·5·16) = 1,600;
    # feed-forward 2·(2·5·16·32) = 10,240; two layers: 2·22,080 = 44,160 (padded positions included)
    assert report.totals.macs == report.totals.measured_macs == 44_160
    assert not report.uncounted
