"""--time: the model run for real, each layer timed; no assertion on how long anything takes."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import flopcalc
from flopcalc.cli import app
from flopcalc.errors import InputError
from flopcalc.render.json import to_dict
from flopcalc.timing import achieved, flop_utilisation
from model_state import assert_unchanged, snapshot


def test_cpu_timing_per_layer_and_model_left_alone():
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)).train()
    before = snapshot(model)
    report = flopcalc.analyze(model, (8, 64), time="cpu", repeats=3, hardware="peak=1e12,bandwidth=1e11")
    timing = report.timing
    assert (timing.device, timing.repeats, timing.warmup) == ("cpu", 3, 2)
    assert len(timing.by_call) == len(report.rows) == 4  # the model and its three layers, in call order
    assert all(seconds is not None and seconds > 0 for seconds in timing.by_call)
    assert timing.total_s == timing.by_call[0]
    rate, of_roofline = achieved(report, report.rows[1])
    # the first Linear's FLOPs (2*65,536 + 1,024 bias adds) over its measured time
    assert rate == pytest.approx(132_096 / timing.by_call[1])
    assert of_roofline == pytest.approx(100 * report.row("0").roofline.time_s / timing.by_call[1])
    assert flop_utilisation(report) == pytest.approx(100 * 153_680 / timing.total_s / 1e12)
    assert_unchanged(before, model)
    data = to_dict(report)
    assert data["layers"][0]["timing"]["time_s"] == timing.by_call[1]
    assert data["totals"]["timing"]["time_s"] == timing.total_s


def test_utilisation_timed_on_another_device_says_so():
    """Timing on this CPU against a GPU's datasheet is not a utilisation of either; the line says so."""
    from flopcalc.render.training import timing_items

    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    on_gpu_roofline = dict(timing_items(flopcalc.analyze(model, (8, 64), time="cpu", repeats=1, hardware="h100-sxm")))
    assert "of h100-sxm, but timed on cpu: not a utilisation of either device" in on_gpu_roofline["FLOP utilisation"]
    given = dict(timing_items(flopcalc.analyze(model, (8, 64), time="cpu", repeats=1,
                                               hardware="peak=1e12,bandwidth=1e11")))
    assert "timed on" not in given["FLOP utilisation"]  # a device the user described: nothing to warn about


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(16)
        self.linear = nn.Linear(16, 16)

    def forward(self, x):
        return x + self.linear(self.norm(x))


def test_self_row_time_is_the_calls_own_and_batch_statistics_stay():
    """A (self) row shares its module's call index but is timed as the work outside its children; a
    training-mode BatchNorm updates the stand-in statistics, never the model's."""
    model = Residual().train()
    before = snapshot(model)
    report = flopcalc.analyze(model, (4, 16), time="cpu", repeats=3, training=True)
    assert_unchanged(before, model)
    root = report.rows[0]
    assert root.own is not None and root.own.index == root.index == 0
    timing = report.timing
    own = timing.of(root.own)
    assert own == timing.self_by_call[0] and 0 < own < timing.of(root)


def test_timing_needs_real_weights_and_the_device(monkeypatch):
    with torch.device("meta"):
        meta_model = nn.Linear(4, 2)
    with pytest.raises(InputError, match="needs real weights"):
        flopcalc.analyze(meta_model, (1, 4), time="cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="no CUDA device"):
        flopcalc.analyze(nn.Linear(4, 2), (1, 4), time="cuda")


def test_cli_time(tmp_path, monkeypatch):
    model_file = tmp_path / "net.py"
    model_file.write_text("from torch import nn\ndef net():\n    return nn.Sequential(nn.Linear(8, 8), nn.ReLU())\n")
    runner = CliRunner()
    result = runner.invoke(app, [f"{model_file}:net", "--input", "8", "--time", "cpu", "--repeats", "2"])
    assert result.exit_code == 0, result.output
    assert "Measured time" in result.output and "median of 2 runs after 2 warm-up" in result.output
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = runner.invoke(app, [f"{model_file}:net", "--input", "8", "--time", "cuda"])
    assert result.exit_code == 2 and "no CUDA device" in result.output


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_timing_with_events_leaves_the_model_alone():
    model = Residual().cuda().train()
    before = snapshot(model)
    report = flopcalc.analyze(model, (64, 16), time="cuda", repeats=5, hardware="h100-sxm")
    assert_unchanged(before, model)
    timing = report.timing
    assert timing.device == "cuda" and len(timing.by_call) == len(report.rows) == 4
    assert all(seconds is not None and seconds > 0 for seconds in timing.by_call)
    assert 0 <= timing.of(report.rows[0].own) < timing.of(report.rows[0])
