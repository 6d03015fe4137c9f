"""Every torchvision classification model: every layer's formula agrees with what its forward pass executes."""

import pytest
import torch
import torchvision

import flopcalc
from flopcalc import Status

MODELS = torchvision.models.list_models(module=torchvision.models)
# Built on the CPU with random init (their constructors read tensor values), which takes seconds.
SLOW = {"regnet_y_128gf", "regnet_y_32gf", "regnet_x_32gf", "regnet_y_16gf", "vit_h_14"}


def input_size(name: str) -> int:
    """Small inputs where the model allows; transformers with fixed patch grids need their native size."""
    if name.startswith(("vit_", "swin", "maxvit")):
        return 224
    if name.startswith(("inception", "googlenet")):
        return 96
    return 64


# torchvision publishes googlenet's parameter count without its auxiliary classifiers (inception_v3's with them).
OPTIONS = {"googlenet": {"aux_logits": False}}


def build(name: str) -> torch.nn.Module:
    options = OPTIONS.get(name, {})
    try:
        with torch.device("meta"):
            return torchvision.models.get_model(name, **options)
    except (NotImplementedError, RuntimeError):  # regnet computes its widths from tensor values
        return torchvision.models.get_model(name, **options)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in MODELS]
)
def test_every_layer_formula_matches_measurement(name: str) -> None:
    """Every formula row (modules and functional calls) matches; every MAC comes from one; the parameter
    count is torchvision's published one (weights metadata, nothing downloaded)."""
    model = build(name)
    size = input_size(name)
    report = flopcalc.analyze(model, (1, 3, size, size))
    assert not report.uncounted, f"{name}: uncounted ops {report.uncounted}"
    bad = [(row.name, row.mismatches) for row in report.rows if row.status is not Status.MATCH and row.bound]
    assert not bad, f"{name}: formula rows that disagree with measurement: {bad[:5]}"
    checked = report.totals.checked
    unchecked_macs = [(u.name, u.type, u.macs) for u in report.unchecked if u.macs]
    assert checked.macs == report.totals.macs, f"{name}: MACs without a matching formula: {unchecked_macs[:5]}"
    assert report.totals.macs == report.totals.measured_macs
    assert report.totals.params == torchvision.models.get_model_weights(name).DEFAULT.meta["num_params"]
