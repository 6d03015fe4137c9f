"""A CI test of a model's size and cost: copy this file next to your model, import your factory, edit numbers.

    pytest examples/test_my_model.py                                   # the three checks
    pytest examples/test_my_model.py --flopcalc-report counts.json     # and keep the counts as JSON

Expected numbers are written as the arithmetic they come from, so a failing test shows which term changed.
A failure prints a per-layer table with each layer's formula and its numbers.
"""

from alexnet_1024 import alexnet_1024  # your model factory

from flopcalc.testing import assert_counts, assert_layers_match, assert_within_budget

INPUT = (1, 3, 224, 224)

CONV_PARAMS = (3 * 11 * 11 * 64 + 64) + (64 * 5 * 5 * 192 + 192) + (192 * 3 * 3 * 384 + 384) + (
    384 * 3 * 3 * 256 + 256
) + (256 * 3 * 3 * 256 + 256)
LINEAR_PARAMS = (9216 * 4096 + 4096) + (4096 * 1024 + 1024) + (1024 * 1000 + 1000)
# MACs: output positions x output channels x input channels x kernel area; linear: inputs x outputs.
CONV_MACS = (55 * 55 * 64 * 3 * 11 * 11) + (27 * 27 * 192 * 64 * 5 * 5) + (13 * 13 * 384 * 192 * 3 * 3) + (
    13 * 13 * 256 * 384 * 3 * 3
) + (13 * 13 * 256 * 256 * 3 * 3)
LINEAR_MACS = 9216 * 4096 + 4096 * 1024 + 1024 * 1000


def test_counts_are_the_published_ones(flopcalc_analyze):
    report = flopcalc_analyze(alexnet_1024(), INPUT, name="alexnet_1024")
    assert_counts(report, params=CONV_PARAMS + LINEAR_PARAMS, macs=CONV_MACS + LINEAR_MACS)


def test_every_layer_formula_matches_what_runs(flopcalc_analyze):
    assert_layers_match(flopcalc_analyze(alexnet_1024(), INPUT, name="alexnet_1024"))


def test_fits_the_deployment_budget():
    assert_within_budget(alexnet_1024(), INPUT, max_params=50_000_000, max_macs=1_000_000_000)
