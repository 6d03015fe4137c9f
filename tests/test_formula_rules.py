"""The rules a formula states (``C_in divisible by G``) are over its own symbols, and ``flopcalc formula`` checks
each of them when values are given. A specialised formula restates an inherited rule in its own symbols:
depthwise convolution (``G = C_in``) once kept ``C_out divisible by G`` as ``Mod(C_out, C_in)`` while not having
``C_in`` as a symbol, so the rule was never checked."""

from __future__ import annotations

import re

import pytest
import sympy as sp

import flopcalc.layers  # noqa: F401  (registers the formulas)
from flopcalc.formula import FormulaError
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
