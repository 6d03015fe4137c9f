"""The backward pass over the torchvision zoo: every backward formula agrees with what autograd executes."""

import pytest

import flopcalc
from flopcalc import Status
from test_zoo import MODELS, build, input_size

QUICK = {"resnet18", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny"}
"""Checked in every run; the rest with ``-m slow``."""


@pytest.mark.parametrize("name", [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow) for n in MODELS])
def test_every_backward_formula_matches_measurement(name: str) -> None:
    model = build(name)
    size = input_size(name)
    report = flopcalc.analyze(model, (1, 3, size, size), backward=True)
    backward = report.totals.backward
    assert not backward.uncounted, f"{name}: uncounted backward ops {backward.uncounted}"
    bad = [(row.name, row.backward.mismatches) for row in report.rows if row.backward.status is Status.MISMATCH]
    assert not bad, f"{name}: backward formulas that disagree with the measurement: {bad[:5]}"
    # Every row with a backward formula (attention, matrix products, ... included) is checked and agrees.
    unchecked = [row.name for row in report.rows
                 if row.bound is not None and row.bound.formula.has_backward and row.backward.status is not Status.MATCH]
    assert not unchecked, f"{name}: rows with a backward formula left unchecked: {unchecked[:5]}"
    assert backward.measured.macs == report.totals.backward_macs
    # A model whose input needs no gradient skips the first layer's grad-input: less than 3x the forward.
    assert report.totals.macs < report.totals.training_macs < 3 * report.totals.macs
