"""The rules a formula states (``C_in divisible by G``) are over its own symbols, and ``flopcalc formula`` checks
each of them when values are given. A specialised formula restates an inherited rule in its own symbols:
depthwise convolution (``G = C_in``) once kept ``C_out divisible by G`` as ``Mod(C_out, C_in)`` while not having
``C_in`` as a symbol, so the rule was never checked. Whatever values pass ``check`` give whole counts >= 0,
forward and backward (a property over every registered formula)."""

from __future__ import annotations

import re

import pytest
import sympy as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import flopcalc.layers  # noqa: F401  (registers the formulas)
from flopcalc.formula import FormulaError, LayerFormula, is_flag
from flopcalc.layers.conv import DEPTHWISE_CONV2D
from flopcalc.registry import REGISTRY
from support import assert_one_line_error, run_cli

RULES = [(name, text) for name, formula in sorted(REGISTRY.formulas.items()) for text in formula.constraints]
EVERY_SYMBOL = {s.name for formula in REGISTRY.formulas.values() for s in formula.symbols}
DEPTHWISE = ["C_out=64", "K_h=3", "K_w=3", "H=32", "W=32"]


def test_the_scan_below_covers_the_convolutions():
    assert ("conv2d", "C_in divisible by G") in RULES
    assert ("depthwise_conv2d", "C_out divisible by C_in") in RULES


@pytest.mark.parametrize(("name", "text"), RULES)
def test_a_rule_names_exactly_its_own_symbols(name, text):
    formula = REGISTRY.formula(name)
    rule = sp.sympify(formula.constraints[text])
    named = {word for word in re.findall(r"\w+", text) if word in EVERY_SYMBOL}
    own = {s.name for s in formula.symbols}
    assert named == {s.name for s in rule.free_symbols}  # the text says what the rule checks
    assert named <= own  # and a caller can give each of them (`flopcalc formula NAME SYMBOL=...`)


@pytest.mark.parametrize(("name", "text"), RULES)
def test_binding_the_formulas_symbols_decides_every_rule(name, text):
    formula = REGISTRY.formula(name)
    numbers = {s: sp.Integer(7) for s in formula.symbols}
    assert sp.sympify(formula.constraints[text]).xreplace(numbers) in (sp.true, sp.false)


def test_depthwise_refuses_output_channels_that_are_no_multiple_of_the_input_channels():
    with pytest.raises(FormulaError, match=r"C_out divisible by C_in is required, but C_in=3, C_out=64"):
        DEPTHWISE_CONV2D.check({"C_in": 3, "C_out": 64})
    DEPTHWISE_CONV2D.check({"C_in": 32, "C_out": 64})  # a channel multiplier of 2: nn.Conv2d(32, 64, 3, groups=32)


def test_formula_command_refuses_a_broken_depthwise_rule():
    assert_one_line_error(run_cli("formula", "depthwise_conv2d", "C_in=3", *DEPTHWISE),
                          "depthwise_conv2d: C_out divisible by C_in is required, but C_in=3, C_out=64")


def test_formula_command_prints_depthwise_with_a_channel_multiplier():
    result = run_cli("formula", "depthwise_conv2d", "C_in=32", *DEPTHWISE)
    assert result.exit_code == 0, result.output
    # one 3×3 filter per output channel on a 30×30 output: 64·30·3·3·30 = 518,400 MACs
    assert "= 64·30·3·3·30 = 518,400" in result.stdout
    assert "unbound" not in result.stdout


def _values(symbol: sp.Symbol) -> st.SearchStrategy[int]:
    """A value in the symbol's range: a 0/1 flag, a size >= 1, a padding or count >= 0; small, so that the
    rules (kernel within the input, channels divisible by groups) often hold."""
    if is_flag(symbol):
        return st.sampled_from([0, 1])
    if symbol.is_positive:
        return st.sampled_from([1, 1, 2, 2, 3, 4, 5, 6, 8, 9, 16])
    return st.sampled_from([0, 0, 1, 2, 3, 5]) if symbol.is_nonnegative else st.integers(-2, 2)


def _needed(formula: LayerFormula) -> list[sp.Symbol]:
    """Every symbol the forward and the backward formulas need (intermediates are worked out from them)."""
    return sorted((formula.symbols | formula.gradient_symbols) - set(formula.intermediates), key=lambda s: s.name)


@pytest.mark.parametrize("name", sorted(REGISTRY.formulas))
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_values_that_pass_the_check_give_whole_counts_of_zero_or_more(name, data):
    # once false: PReLU's slope gradient summed E - A adds, -1 for an empty input (E = 0) with one slope; group
    # norm, grouped-query attention and a broadcast matmul took group counts that divide nothing (C = 2, G = 16)
    # and gave a negative backward add count
    formula = REGISTRY.formula(name)
    given_values = {s.name: data.draw(_values(s), label=s.name) for s in _needed(formula)
                    if s not in formula.defaults or data.draw(st.booleans(), label=f"give {s.name}")}
    values, _ = formula.with_defaults(given_values)
    try:
        formula.check(values)
    except FormulaError:
        assume(False)  # no layer has these values
    evaluation = formula.evaluate(values)  # raises FormulaError for a fractional count
    counts = {"params": evaluation.params, "macs": evaluation.macs, "buffers": evaluation.buffers, **evaluation.ops}
    if formula.has_backward:
        for part in ("grad_input", "grad_weight"):
            gradient = formula.gradient(part).evaluate(values)
            counts |= {f"{part}.macs": gradient.macs, **{f"{part}.{k}": n for k, n in gradient.ops.items()}}
    assert all(isinstance(n, int) and n >= 0 for n in (*counts.values(), *evaluation.output_shape)), (counts, values)


@pytest.mark.parametrize(("name", "values", "message"), [
    ("group_norm", {"C": 2, "G": 16}, "group_norm: C divisible by G is required, but C=2, G=16"),
    ("sdpa", {"H_q": 1, "H_kv": 9}, "sdpa: H_q divisible by H_kv is required, but H_kv=9, H_q=1"),
    ("matmul", {"N": 4, "N_a": 9}, "matmul: N divisible by N_a is required, but N=4, N_a=9"),
])
def test_group_and_batch_counts_that_divide_nothing_are_refused(name, values, message):
    # nn.GroupNorm and scaled_dot_product_attention refuse them; a broadcast operand's batch divides the product's
    with pytest.raises(FormulaError) as refused:
        REGISTRY.formula(name).check(values)
    assert str(refused.value) == message


def test_a_flag_is_0_or_1_and_a_count_of_the_same_name_is_not_a_flag():
    # group_norm's A (affine or not) is a flag; an elementwise layer's A (its learned parameters) is a count
    assert is_flag(next(s for s in REGISTRY.formula("group_norm").symbols if s.name == "A"))
    assert not is_flag(next(s for s in REGISTRY.formula("prelu").symbols if s.name == "A"))
    with pytest.raises(FormulaError) as refused:
        REGISTRY.formula("group_norm").check({"A": 2})
    assert str(refused.value) == "group_norm: A = 2, but A is a 0/1 flag; give A=0 or A=1"
    REGISTRY.formula("prelu").check({"A": 2, "E": 6})  # two slopes, six elements
