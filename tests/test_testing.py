"""flopcalc.testing: each helper passes on a right expectation and fails with a readable per-layer table.

The model under test is mostly ``Conv2d(3, 8, 3)`` on a 2x3x10x10 input (8x8 output positions), whose counts
are derived by hand below; the failure messages are checked for both numbers and for the formula.
"""

from __future__ import annotations

import re

import pytest
import sympy as sp
import torch
from torch import nn
from torch.library import custom_op

from flopcalc import InputSpec, LayerFormula, Report, analyze
from flopcalc.failure_messages import MAX_TABLE_ROWS
from flopcalc.layers.conv import bind_conv
from flopcalc.registry import Bound
from flopcalc.testing import assert_counts, assert_layers_match, assert_within_budget

pytest_plugins = ["pytester"]

SHAPE = (2, 3, 10, 10)
CONV_PARAMS = 3 * 8 * 3 * 3 + 8
CONV_MACS = 2 * 8 * 8 * 8 * 3 * 3 * 3  # N · H_out · W_out · C_out · C_in · K_h · K_w
CONV_BIAS_ADDS = 2 * 8 * 8 * 8
CONV_FLOPS = 2 * CONV_MACS + CONV_BIAS_ADDS


def conv() -> nn.Conv2d:
    return nn.Conv2d(3, 8, 3)


@custom_op("flopcalc_test_testing::mystery", mutates_args=())
def mystery(x: torch.Tensor) -> torch.Tensor:
    """An op no counting rule knows: the counter reports it as uncounted."""
    return x.clone()


@mystery.register_fake
def _mystery_fake(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class Mystery(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mystery(x)


MYSTERY_FORMULA = LayerFormula(name="mystery_test", description="test formula", params=sp.Integer(0), macs=sp.Integer(0))


def bind_mystery(module: nn.Module, args: tuple, kwargs: dict) -> Bound:
    return Bound(MYSTERY_FORMULA, {})


def bind_one_channel_too_many(module: nn.Conv2d, args: tuple, kwargs: dict) -> Bound:
    """The conv binder with C_out off by one: a formula that disagrees with what runs."""
    bound = bind_conv(module, args, kwargs)
    return Bound(bound.formula, {**bound.values, "C_out": module.out_channels + 1})


def bind_five_groups(module: nn.Conv2d, args: tuple, kwargs: dict) -> Bound:
    """The conv binder with G = 5, which does not divide C_in = 3: the formula gives a non-integer count."""
    bound = bind_conv(module, args, kwargs)
    return Bound(bound.formula, {**bound.values, "G": 5})


class Double(nn.Module):
    """Arithmetic of its own (one mul per element) and no formula."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class WithUnused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = conv()
        self.unused = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def frozen_conv_bn() -> nn.Module:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    model[0].requires_grad_(False)
    return model


def failure(call, *args, **kwargs) -> str:
    with pytest.raises(AssertionError) as info:
        call(*args, **kwargs)
    return str(info.value)


def line_with(message: str, *parts: str) -> str:
    """The one line of ``message`` that contains every part, in order."""
    pattern = ".*".join(re.escape(p) for p in parts)
    lines = [line for line in message.splitlines() if re.search(pattern, line)]
    assert lines, f"no line with {parts} in:\n{message}"
    return lines[0]


@pytest.mark.parametrize(
    "inputs, options",
    [
        (SHAPE, {}),
        (torch.Size(SHAPE), {}),
        ([SHAPE], {}),
        (InputSpec(SHAPE), {}),
        (torch.randn(SHAPE), {"device": "cpu"}),
    ],
    ids=["shape", "torch-size", "list-of-shapes", "input-spec", "example-tensor"],
)
def test_assert_counts_passes_for_every_input_form(inputs, options):
    report = assert_counts(conv(), inputs, params=CONV_PARAMS, macs=CONV_MACS, flops=CONV_FLOPS, **options)
    assert isinstance(report, Report)


def test_assert_counts_takes_a_report():
    report = analyze(conv(), SHAPE)
    assert assert_counts(report, params=CONV_PARAMS) is report


def test_wrong_params_show_expected_got_and_the_formula():
    message = failure(assert_counts, conv(), SHAPE, params=CONV_PARAMS + 1, macs=CONV_MACS)
    assert message.startswith("Conv2d on input 2x3x10x10: counts differ")
    assert line_with(message, "params", "225", "224", "-1")
    assert line_with(message, "MACs", "27,648", "27,648", "ok")
    assert line_with(message, "params per layer")
    assert line_with(message, "Conv2d", "224", "C_in*C_out*K_h*K_w/G + B*C_out", "3·8·3·3 + 8 = 224")


def test_wrong_flops_show_the_flops_formula():
    message = failure(assert_counts, conv(), SHAPE, flops=CONV_FLOPS - 1)
    assert line_with(message, "FLOPs", "56,319", "56,320", "+1")
    assert line_with(message, "FLOPs per layer")
    assert line_with(message, "Conv2d", "56,320", "= 56,320")


def test_trainable_and_non_trainable_params_count_like_keras():
    frozen = 1 * 4 * 3 * 3 + 4
    batch_norm_affine = 2 * 4
    running_stats = 2 * 4
    assert_counts(
        frozen_conv_bn(), (1, 1, 6, 6), params=frozen + batch_norm_affine, trainable_params=batch_norm_affine,
        non_trainable_params=frozen + running_stats,
    )
    message = failure(assert_counts, frozen_conv_bn(), (1, 1, 6, 6), non_trainable_params=frozen)
    assert line_with(message, "non-trainable params", "40", "48", "+8")
    assert line_with(message, "non-trainable 48 = frozen 40 + floating-point buffers 8")


def test_the_params_table_lists_modules_never_called():
    message = failure(assert_counts, WithUnused(), SHAPE, params=CONV_PARAMS)
    assert line_with(message, "unused", "never called", str(4 * 2 + 2))
    assert line_with(message, "total", f"{CONV_PARAMS + 4 * 2 + 2}")


def test_a_containers_own_ops_are_a_row_of_the_table():
    conv_macs = 3 * 4 * 4 * 3 * 3 * 3
    per_element = 3 * 4 * 4  # one bias add, and one residual add, per output element
    flops = 2 * conv_macs + per_element + per_element
    assert_counts(Residual(), (1, 3, 4, 4), flops=flops)
    message = failure(assert_counts, Residual(), (1, 3, 4, 4), flops=flops + 1)
    assert line_with(message, "(self)", "Residual.forward", str(per_element), "measured, no formula")


def test_per_layer_expectations_show_expected_and_got_per_layer():
    model = nn.Sequential(conv(), nn.ReLU())
    report = assert_counts(model, SHAPE, layers={"0": {"macs": CONV_MACS, "params": CONV_PARAMS}})
    relu_compares = 2 * 8 * 8 * 8  # one per output element
    message = failure(assert_counts, report, layers={"0": {"macs": CONV_MACS + 1}, "1": {"other_ops": relu_compares},
                                                    "head": {"macs": 0}})
    assert line_with(message, "0", "macs", f"{CONV_MACS + 1:,}", f"{CONV_MACS:,}", "-1")
    assert line_with(message, "1", "other_ops", f"{relu_compares:,}", f"{relu_compares:,}", "ok")
    assert line_with(message, "head", "macs", "0", "no such layer")
    assert line_with(message, "0 macs = ", f"= {CONV_MACS:,}")  # the formula with its numbers
    with pytest.raises(TypeError, match="a layer's counts are"):
        assert_counts(report, layers={"0": {"mac": 1}})


def test_a_failing_assertion_hides_flopcalcs_frames(pytester):
    pytester.makepyfile(
        """
        from torch import nn
        from flopcalc.testing import assert_counts

        def test_conv():
            assert_counts(nn.Conv2d(3, 8, 3), (2, 3, 10, 10), layers={"": {"params": 1}})
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*per layer:*", "*params*1*224*+223*"])  # 3·8·3·3 + 8 = 224
    assert "_counts_message" not in result.stdout.str() and "def assert_counts" not in result.stdout.str()


def test_long_tables_keep_the_largest_layers_and_sum_the_rest():
    model = nn.Sequential(*(nn.Conv2d(1, 1, 1) for _ in range(MAX_TABLE_ROWS + 5)))
    message = failure(assert_counts, model, (1, 1, 1, 1), params=0)
    assert line_with(message, "... 5 smaller layers", "10")
    assert line_with(message, "total", str(2 * (MAX_TABLE_ROWS + 5)))


def test_assert_counts_needs_an_expectation_and_one_way_of_giving_the_model():
    with pytest.raises(TypeError, match="needs one of"):
        assert_counts(conv(), SHAPE)
    with pytest.raises(TypeError, match="not both"):
        assert_counts(analyze(conv(), SHAPE), SHAPE, params=CONV_PARAMS)


def test_assert_layers_match_passes_when_every_formula_matches():
    report = assert_layers_match(conv(), SHAPE)
    assert report.totals.macs == CONV_MACS


def test_a_formula_that_disagrees_fails_with_formula_and_measured_side_by_side():
    message = failure(assert_layers_match, conv(), SHAPE, extra={nn.Conv2d: bind_one_channel_too_many})
    assert line_with(message, "Conv2d", "mismatch", "macs: formula 31104, measured 27648")
    assert line_with(message, "macs", "= 31,104", "27,648")  # 2·8·8·9·3·3·3 by the formula
    assert line_with(message, "bias_add", "= 1,152", "1,024")
    assert line_with(message, "output shape", "(2, 9, 8, 8)", "(2, 8, 8, 8)")


def test_a_formula_that_cannot_be_evaluated_fails_and_the_counts_fall_back_to_measurement():
    report = analyze(conv(), SHAPE, extra={nn.Conv2d: bind_five_groups})
    message = failure(assert_layers_match, report)
    assert line_with(message, "(model)", "Conv2d", "mismatch", "formula could not be evaluated")
    message = failure(assert_counts, report, params=CONV_PARAMS + 1)
    assert line_with(message, "(model)", "Conv2d", "224", "measured, formula failed")
    assert line_with(message, "note: layers whose formula disagrees", "(model)")


def test_an_uncounted_op_fails_the_layer_it_ran_in():
    model = nn.Sequential(conv(), Mystery())
    message = failure(assert_layers_match, model, SHAPE)
    assert line_with(message, "1", "Mystery", "measured-only", "flopcalc_test_testing.mystery.default x1")


def test_a_long_list_of_failing_layers_is_cut_and_counted():
    model = nn.Sequential(*(Mystery() for _ in range(MAX_TABLE_ROWS + 5)))
    message = failure(assert_layers_match, model, (1, 2))
    assert message.startswith(f"Sequential on input 1x2: {MAX_TABLE_ROWS + 5} layer(s)")
    assert line_with(message, "... 5 more")


def test_an_uncounted_op_inside_a_formula_row_fails_it():
    message = failure(assert_layers_match, Mystery(), SHAPE, extra={Mystery: bind_mystery})
    assert line_with(message, "Mystery", "formula-only", "measurement incomplete", "mystery.default x1")


def test_measured_only_arithmetic_fails_only_when_formulas_are_required():
    model = nn.Sequential(conv(), Double())
    assert_layers_match(model, SHAPE)
    message = failure(assert_layers_match, model, SHAPE, allow_measured_only=False)
    assert line_with(message, "1", "Double", "no formula for Double")


def test_assert_within_budget_passes_and_fails_with_the_excess():
    assert_within_budget(conv(), SHAPE, max_params=CONV_PARAMS, max_macs=CONV_MACS, max_flops=CONV_FLOPS)
    message = failure(assert_within_budget, conv(), SHAPE, max_params=200, max_macs=CONV_MACS)
    assert message.startswith("Conv2d on input 2x3x10x10: over budget")
    assert line_with(message, "params", "200", "224", "+24 (+12.0%)")
    assert line_with(message, "MACs", "27,648", "27,648", "within")
    assert line_with(message, "Conv2d", "224", "100.0%", "3·8·3·3 + 8 = 224")


def test_a_compute_budget_cannot_pass_when_ops_went_uncounted():
    model = nn.Sequential(conv(), Mystery())
    assert_within_budget(model, SHAPE, max_params=CONV_PARAMS)
    message = failure(assert_within_budget, model, SHAPE, max_macs=10 * CONV_MACS)
    assert "budget cannot be checked" in message
    assert line_with(message, "MACs and FLOPs cannot be checked", "mystery.default x1")


def test_assert_within_budget_needs_a_budget():
    with pytest.raises(TypeError, match="needs one of"):
        assert_within_budget(conv(), SHAPE)


def test_a_wrong_expectation_fails_a_test_run_showing_both_numbers(pytester):
    pytester.makepyfile(
        """
        from torch import nn
        from flopcalc.testing import assert_counts

        def test_conv():
            assert_counts(nn.Conv2d(3, 8, 3), (2, 3, 10, 10), params=3 * 8 * 3 * 3 + 8 + 1)
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: Conv2d on input 2x3x10x10: counts differ*", "*params*225*224*-1*"])
