"""Every torchvision classification model: every layer's formula agrees with what its forward pass executes."""

from collections import Counter, defaultdict

import pytest
import torch
import torchvision

import flopcalc
from flopcalc import Status
from flopcalc.render import cells

MODELS = torchvision.models.list_models(module=torchvision.models)
# Built on the CPU with random init (their constructors read tensor values), which takes seconds.
SLOW = {"regnet_y_128gf", "regnet_y_32gf", "regnet_x_32gf", "regnet_y_16gf", "vit_h_14"}


def input_size(name: str) -> int:
    """Small inputs where the model allows; transformers with fixed patch grids need their native size."""
    if name in OPTIONS and "image_size" in OPTIONS[name]:
        return OPTIONS[name]["image_size"]
    if name.startswith(("vit_", "swin", "maxvit")):
        return 224
    if name.startswith(("inception", "googlenet")):
        return 96
    return 64


# torchvision publishes googlenet's parameter count without its auxiliary classifiers (inception_v3's with them),
# and vit_h_14's for its 518×518 weights: the position embedding has one row per 14×14 patch, 37² + 1 at 518.
OPTIONS = {"googlenet": {"aux_logits": False}, "vit_h_14": {"image_size": 518}}


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
    assert report.totals.flops == report.totals.measured_flops
    assert report.totals.params == torchvision.models.get_model_weights(name).DEFAULT.meta["num_params"]
    assert_rows_add_up(report)


def assert_rows_add_up(report: flopcalc.Report) -> None:
    """Column sums: the rows shown under each module, its (self) row included, add up exactly to that module's
    row, and the top rows to the totals (params: plus modules never called)."""
    groups = defaultdict(list)
    for row in cells.visible_rows(report):
        groups[row.parent].append(row)
    for parent, parts in groups.items():
        whole = report.rows[parent]
        for field in ("params", "macs", "other_ops", "flops"):
            assert sum(getattr(p, field) for p in parts) == getattr(whole, field), (whole.name, field)
        ops = Counter()
        for part in parts:
            ops.update(part.ops)
        assert +ops == Counter(whole.ops), whole.name
    top = groups[0]
    totals = report.totals
    assert sum(row.macs for row in top) == totals.macs and sum(row.flops for row in top) == totals.flops
    assert sum(row.params for row in top) + sum(report.uncalled.values()) == totals.params
