"""The output metadata that meta passes share across analyses (``flopcalc/measure/repeats.py``): a later pass
replays what an earlier one derived, and never gives a stale answer when the model, its dtype, a hyperparameter,
a frozen flag or a counting rule changed in between. Every comparison is with the same analysis made with the
shared table empty, which runs every kernel as before."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
import torch
from torch import nn

import flopcalc
from flopcalc.measure import core, repeats
from flopcalc.render.json import to_dict


@pytest.fixture(autouse=True)
def empty_table() -> Iterator[None]:
    """Each test starts and ends with an empty shared table (other tests' entries would only add hits)."""
    repeats._shared.clear()
    yield
    repeats._shared.clear()


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 3 * 3, 10),
    ).to("meta").eval()


def fresh(model: nn.Module, inputs: Any, **options: Any) -> dict[str, Any]:
    """The report's data with the shared table empty: every kernel runs, as in a new process."""
    saved = dict(repeats._shared)
    repeats._shared.clear()
    try:
        return to_dict(flopcalc.analyze(model, inputs, **options))
    finally:
        repeats._shared.clear()
        repeats._shared.update(saved)


def first_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ops that run their kernel from now on (every keyed first run is remembered)."""
    runs: list[str] = []
    remember = repeats.RepeatedOps.remember

    def spy(self: repeats.RepeatedOps, key: Any, *rest: Any) -> None:
        runs.append(str(key[0]))
        remember(self, key, *rest)

    monkeypatch.setattr(repeats.RepeatedOps, "remember", spy)
    return runs


def test_a_second_analysis_runs_no_kernel_and_counts_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    model = small_cnn()
    first = to_dict(flopcalc.analyze(model, (2, 3, 8, 8)))
    assert repeats._shared  # the first pass filled the table
    runs = first_runs(monkeypatch)
    second = to_dict(flopcalc.analyze(model, (2, 3, 8, 8)))
    assert runs == []  # every keyed op replayed from the first pass
    assert second == first
    # conv1 2·8·8·8 outputs × 27 taps = 27,648; conv2 2·8·3·3 × 72 = 10,368; linear 2·72·10 = 1,440
    assert second["totals"]["macs"] == 27_648 + 10_368 + 1_440


def test_another_model_with_the_same_layer_replays_it(monkeypatch: pytest.MonkeyPatch) -> None:
    flopcalc.analyze(small_cnn(), (2, 3, 8, 8))
    runs = first_runs(monkeypatch)
    report = flopcalc.analyze(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1)).to("meta"), (2, 3, 8, 8))
    assert "aten.convolution.default" not in runs
    assert report.totals.macs == 27_648 and report.ok


@pytest.mark.parametrize("change", ["stride", "padding", "dtype", "frozen", "input", "channels_last"])
def test_a_changed_model_gets_the_answer_of_a_new_process(change: str) -> None:
    model, inputs = small_cnn(), (2, 3, 8, 8)
    flopcalc.analyze(model, inputs)
    if change == "stride":
        model[0].stride = (2, 2)  # conv1 8 → 4, conv2 4 → 1: 8 features
        model[6] = nn.Linear(8, 10, device="meta")
    elif change == "padding":
        model[0].padding = (0, 0)  # conv1 8 → 6, conv2 6 → 2: 8·2·2 = 32 features
        model[6] = nn.Linear(32, 10, device="meta")
    elif change == "dtype":
        model = model.half()
        inputs = [flopcalc.InputSpec((2, 3, 8, 8), torch.float16)]
    elif change == "frozen":
        model[0].requires_grad_(False)
    elif change == "input":
        inputs = (1, 3, 10, 10)  # conv1 10 → 10, conv2 10 → 4: 8·4·4 = 128 features
        model[6] = nn.Linear(128, 10, device="meta")
    else:
        model = model.to(memory_format=torch.channels_last)
    report = flopcalc.analyze(model, inputs)
    assert to_dict(report) == fresh(model, inputs)
    if change == "stride":  # conv1 now 2·8·4·4 outputs × 27 = 6,912 MACs
        assert report.row("0").macs == 6_912
    if change == "frozen":  # conv1's 8·27 + 8 = 224 parameters are frozen now
        assert report.totals.frozen_params == 224


def test_a_rule_replaced_after_a_pass_applies_to_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    model = nn.Sequential(nn.ReLU()).to("meta")
    flopcalc.analyze(model, (2, 3))

    def broken(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> core.Count:
        raise ValueError("a bug in a rule")

    monkeypatch.setitem(core._RULES, torch.ops.aten.relu, broken)
    report = flopcalc.analyze(model, (2, 3))
    assert list(report.uncounted) == [
        "aten.relu.default (flopcalc could not count it, please report: ValueError: a bug in a rule)"
    ]


def test_fake_and_real_passes_share_nothing() -> None:
    real = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()).eval()  # real weights: a pass on fake tensors
    flopcalc.analyze(real, (1, 3, 8, 8))
    flopcalc.analyze(real, (1, 3, 8, 8), device="cpu")
    assert not repeats._shared
    symbolic = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()).to("meta")
    flopcalc.analyze(symbolic, (1, 3, "H", "W"))
    assert not repeats._shared


def test_the_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(repeats, "SHARED_LIMIT", 3)
    model = small_cnn()
    report = flopcalc.analyze(model, (2, 3, 8, 8))
    assert 0 < len(repeats._shared) <= 3
    assert to_dict(flopcalc.analyze(model, (2, 3, 8, 8))) == to_dict(report)
