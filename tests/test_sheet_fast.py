"""``flopcalc formula NAME SYMBOL=VALUE ...`` from the formula's plan (issue 13, target 4): for every formula and
many random values, the fast path prints exactly what the live sympy path prints, byte for byte, or declines
(returns ``None``) exactly when it must: where the live path refuses the values, or leaves symbols unbound. The
expected text always comes from the live path (:func:`flopcalc.render.formulas.formula_sheet`), never from the
plan under test."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flopcalc.layers  # noqa: F401  (registers the formulas)
from flopcalc import cli_start, sheet_fast
from flopcalc.errors import FlopcalcError
from flopcalc.formula import FormulaError
from flopcalc.registry import REGISTRY
from flopcalc.render.formulas import formula_sheet
from support import run_fresh

NAMES = sorted(REGISTRY.formulas)
CONV = ["C_in=3", "C_out=64", "K_h=3", "K_w=3", "H=32", "W=32"]


def live_sheet(name: str, values: dict[str, int], latex: bool) -> str | None:
    """The live path's sheet, ``None`` where it refuses the values."""
    try:
        return formula_sheet(REGISTRY.formula(name), values, latex=latex)
    except (FlopcalcError, FormulaError):  # one line on stderr, exit 2
        return None


def fast_sheet(name: str, values: dict[str, int], latex: bool) -> str | None:
    plan = sheet_fast.stored_plan(name)
    assert plan is not None, f"no current plan for {name}: run python -m flopcalc.cli_cache"
    return sheet_fast.render(plan, values, latex)


def bound_everywhere(name: str, values: dict[str, int]) -> bool:
    formula = REGISTRY.formula(name)
    completed, _ = formula.with_defaults(values)
    return {s.name for s in formula.symbols} <= set(completed)


@pytest.mark.parametrize("latex", [False, True], ids=["text", "latex"])
@pytest.mark.parametrize("name", NAMES)
def test_every_formula_at_sizes_of_two_to_five(name, latex):
    # every symbol 2..5 (cycling by position), so most patterns are "another number" and the checks mostly pass
    symbols = sorted(s.name for s in REGISTRY.formula(name).symbols)
    values = {symbol: 2 + i % 4 for i, symbol in enumerate(symbols)}
    expected = live_sheet(name, values, latex) if values else None  # without values: the cached symbolic sheet
    found = fast_sheet(name, values, latex)
    assert found == expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), latex=st.booleans())
def test_random_values_print_what_sympy_prints(data, latex):
    name = data.draw(st.sampled_from(NAMES), label="formula")
    symbols = sorted(s.name for s in REGISTRY.formula(name).symbols)
    chosen = data.draw(st.lists(st.sampled_from(symbols), unique=True), label="given") if symbols else []
    number = st.one_of(st.sampled_from([0, 1, 1, 2, 2, 3, 4, 5, 7, 16, 33]), st.integers(-1, 300))
    values = {symbol: data.draw(number, label=symbol) for symbol in chosen}
    expected = live_sheet(name, values, latex)
    found = fast_sheet(name, values, latex)
    if expected is None or not values or not bound_everywhere(name, values):
        assert found is None  # refused, no values or symbols left unbound: the error, or the expressions
    else:
        assert found == expected


def test_a_specialised_formula_lists_the_defaults_of_its_own_symbols_only():
    # a 1×1 convolution has no dilation: d_h and d_w went with K_h = K_w = 1
    values = {"B": 0, "C_in": 4, "C_out": 5, "H": 1, "W": 1, "p_h": 5, "s_h": 2}
    for latex in (False, True):
        sheet = live_sheet("pointwise_conv2d", values, latex)
        assert sheet.splitlines()[-1] == ("% " if latex else "") + "defaults: N=1, G=1, s_w=1, p_w=0"
        assert fast_sheet("pointwise_conv2d", values, latex) == sheet


def test_a_rule_waiting_for_a_symbol_only_it_names_is_said_to_be_unchecked():
    # every depthwise count is known without C_in; only the rule C_out divisible by C_in needs it
    values = {"C_out": 8, "K_h": 3, "K_w": 3, "H": 8, "W": 8}
    sheet = live_sheet("depthwise_conv2d", values, False)
    assert sheet.splitlines()[-2:] == ["defaults: N=1, B=1, s_h=1, s_w=1, d_h=1, d_w=1, p_h=0, p_w=0",
                                       "unchecked until C_in is given: C_out divisible by C_in"]
    latex = live_sheet("depthwise_conv2d", {k: v for k, v in values.items() if k != "W"}, True)
    assert latex.splitlines()[-2:] == ["% unbound: W", "% unchecked until C_in is given: C_out divisible by C_in"]
    assert fast_sheet("depthwise_conv2d", values, False) is None  # C_in unbound: the live sheet, as above


def test_text_and_latex_write_a_sum_in_one_order():
    # H_out = ⌊(32 + 2·0 − 1·(3 − 1) − 1)/1⌋ + 1 = 30, written 32 + 1 - 3 in both (terms added first)
    values = {"C_in": 3, "C_out": 8, "K_h": 3, "K_w": 3, "H": 32, "W": 32}
    for latex, symbolic in ((False, "⌊(H + 2·p_h - d_h·(K_h - 1) - 1)/s_h⌋ + 1"),
                            (True, r"\frac{H + 2 p_{h} - d_{h} \left(K_{h} - 1\right) - 1}{s_{h}}")):
        for sheet in (live_sheet("conv2d", values, latex), fast_sheet("conv2d", values, latex)):
            assert symbolic in sheet
            assert ("&= 32 + 1 - 3 = 30" if latex else "= 32 + 1 - 3 = 30") in sheet


def test_a_flag_is_planned_as_0_or_1_and_a_count_of_the_same_name_as_a_count():
    assert sheet_fast.stored_plan("group_norm")["symbols"]["A"] == "f"  # affine or not
    assert sheet_fast.stored_plan("prelu")["symbols"]["A"] == "0"  # learned slopes, any number >= 0
    assert sheet_fast.stored_plan("conv2d")["symbols"]["p_h"] == "0"  # a padding is no flag
    params = sheet_fast.stored_plan("conv2d")["lines"][0]  # B·C_out + C_in·C_out·K_h·K_w/G
    assert params["symbols"][0] == "B" and {key[0] for key in params["keys"]} == {"0", "1"}  # B is never "n"
    assert len(params["keys"]) == 2 * 2**5  # B: 0 or 1; C_in, C_out, G, K_h, K_w: 1 or another number


@pytest.mark.parametrize(("argv", "line"), [
    (["formula", "embedding_bag_max_max_norm", "B=2", "E=4", "N=5", "V=10", "P=5"],
     "Error: embedding_bag_max_max_norm: P = 5, but P is a 0/1 flag; give P=0 or P=1"),
    (["formula", "conv2d", *CONV, "B=-1", "--format", "latex"],
     "Error: conv2d: B = -1, but B is a 0/1 flag; give B=0 or B=1"),
    (["formula", "conv2d", "C_in=3", "C_in=4", "C_out=8", "K_h=3", "K_w=3", "H=8", "W=8"],
     "Error: C_in is given twice (C_in=3, C_in=4); give each symbol once"),
    (["formula", "conv2d", *CONV, "C_in=3", "-f", "latex"],
     "Error: C_in is given twice (C_in=3, C_in=3); give each symbol once"),
    (["formula", "conv2d", "H=1", *CONV, "H=2"], "Error: H is given 3 times (H=1, H=32, H=2); give each symbol once"),
])
def test_refused_values_are_one_line_from_the_command(argv, line, capsys):
    assert cli_start._sheet_with_values(argv) is None  # the plan declines: the live command's error, exit 2
    with pytest.raises(SystemExit) as exited:
        cli_start.main(argv)
    assert exited.value.code == 2
    assert capsys.readouterr() == ("", line + "\n")


@pytest.mark.parametrize("values", [
    {"C_in": 1, "C_out": 1, "K_h": 1, "K_w": 1, "H": 1, "W": 1},  # every trivial pattern: ·1 terms vanish
    {"C_in": 4, "C_out": 8, "K_h": 3, "K_w": 3, "H": 32, "W": 31, "s_h": 2, "p_h": 1, "G": 2, "B": 0, "N": 7},
])
def test_conv2d_edge_patterns(values):
    for latex in (False, True):
        assert fast_sheet("conv2d", values, latex) == live_sheet("conv2d", values, latex)


def test_floors_with_numbers_are_written_as_floors():
    values = {"C_in": 3, "C_out": 8, "K_h": 3, "K_w": 3, "H": 32, "W": 32, "s_h": 2}
    for sheet in (live_sheet("conv2d", values, False), fast_sheet("conv2d", values, False)):
        assert "= ⌊(32 - 3)/2⌋ + 1 = 15" in sheet  # ⌊(32 + 2·0 − 1·(3 − 1) − 1)/2⌋ + 1 = ⌊29/2⌋ + 1 = 15
        assert "floor" not in sheet


@pytest.mark.parametrize("argv", [
    ["formula", "conv2d", *CONV], ["formula", "conv2d", *CONV, "--format", "latex"],
    ["formula", "-f", "latex", "max_pool2d", "C=8", "H=32", "W=32", "K_h=2", "K_w=2"],
])
def test_the_command_prints_from_the_plan_without_sympy_or_typer(argv):
    result = run_fresh(argv)
    assert result.status == 0 and result.loaded == [], result
    latex = "latex" in argv
    values = dict(text.split("=") for text in argv if "=" in text)
    name = next(token for token in argv[1:] if token not in ("-f", "--format", "latex") and "=" not in token)
    assert result.stdout == live_sheet(name, {k: int(v) for k, v in values.items()}, latex)


@pytest.mark.parametrize("argv", [
    ["formula", "conv2d", "C_in=3"],  # symbols left unbound: sympy writes the expressions
    ["formula", "conv2d", "K=3"],  # no such symbol: the live error
    ["formula", "conv2d", "C_in=three"], ["formula", "conv2d", "C_in=--3"],  # malformed
    ["formula", "conv2d", *CONV[:-1], "W=2"],  # W_out would be 0: refused by the live check
    ["formula", "conv2", *CONV],  # unknown formula: the live error with suggestions
    ["formula", "conv2d", *CONV, "--format", "pdf"],
])
def test_what_the_plan_does_not_answer_goes_to_the_live_command(argv):
    assert cli_start._sheet_with_values(argv) is None


@pytest.mark.parametrize("name", NAMES)
def test_a_sheet_with_symbols_left_unbound_is_written_as_a_person_writes_it(name):
    # the first and the last symbol left out in turn; the live path prints the sheet, the fast one declines unless a
    # default binds the symbol left out
    symbols = sorted(s.name for s in REGISTRY.formula(name).symbols)
    for left_out in {symbols[0], symbols[-1]} if symbols else ():
        values = {symbol: 2 + i % 4 for i, symbol in enumerate(symbols) if symbol != left_out}
        for latex in (False, True):
            sheet = live_sheet(name, values, latex)
            if sheet is None or not values:
                continue  # refused, as the fast path would refuse it
            assert fast_sheet(name, values, latex) == (sheet if bound_everywhere(name, values) else None)
            lines = sheet.splitlines()[2:]  # after the name and description, and the symbols (or \\begin{align*})
            lines = [line for line in lines if not line.startswith(("%", "\\end"))]
            sympy_forms = ("*", "floor(", "ceiling(", "Sum(", "Max(", "Min(", "Mod(")
            assert not any(form in line for line in lines for form in sympy_forms), sheet

