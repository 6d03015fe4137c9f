"""A formula sheet: one layer family's formulas, symbolically and with the user's numbers substituted.

Behind ``flopcalc formula conv2d C_in=3 C_out=64 ...``: params, MACs, each other-op kind, buffers, the
output shape and the intermediate sizes, as plain text or as a LaTeX ``align*`` block. Symbols left out take
the layer's defaults (stride 1, padding 0, ...), which the sheet lists; values no layer could have are refused.
Also the list of formulas (``flopcalc formula``) and the cost ratios of convolution variants (``flopcalc ratio``).
"""

from __future__ import annotations

from collections.abc import Mapping

import sympy as sp

from flopcalc.errors import InputError
from flopcalc.formula import LayerFormula, Number
from flopcalc.printing import render_substituted, to_latex, to_math, to_text
from flopcalc.sheet_layout import Line, latex_sheet, latex_word, notes, text_sheet


def _known_values(formula: LayerFormula, values: Mapping[str, int]) -> dict[sp.Symbol, Number]:
    """The given values plus every intermediate that they determine completely (a number, not an expression),
    so that a partially bound formula keeps ``H_out`` as a symbol rather than a half-substituted expression."""
    resolved = formula.resolve(values)
    return {s: v for s, v in resolved.items() if not getattr(sp.sympify(v), "free_symbols", set())}


def _fields(formula: LayerFormula) -> list[tuple[str, sp.Expr]]:
    fields = [("params", formula.field_expr("params")), ("MACs", formula.field_expr("macs"))]
    fields += [(str(kind), formula.field_expr(str(kind))) for kind in formula.ops]
    if sp.sympify(formula.buffers) != 0:
        fields.append(("buffers", formula.field_expr("buffers")))
    return fields


RATIOS = {
    "depthwise-separable": (
        "depthwise_separable_ratio",
        "depthwise-separable (K×K depthwise + 1×1 pointwise) / standard K×K convolution, M output channels",
    ),
    "group": ("group_ratio", "group convolution with G groups / standard convolution"),
}
"""``flopcalc ratio`` kinds: the function of :mod:`flopcalc.layers.conv` that gives the ratio, and what it compares."""


def formula_list(formulas: Mapping[str, LayerFormula]) -> str:
    """One line per formula, by name: its name and description."""
    return "".join(f"{name:<24} {formula.description}\n" for name, formula in sorted(formulas.items()))


def ratio_sheet(kind: str, params: bool = False) -> str:
    """A convolution variant's MACs (or parameters) over a standard convolution's, simplified by sympy, as math,
    plain text and LaTeX."""
    from flopcalc.layers import conv

    function_name, description = RATIOS[kind]
    what = "params" if params else "macs"
    expr = getattr(conv, function_name)(what)
    return (f"{description}; {'params' if params else 'MACs'}, biases left out\n"
            f"math:  {to_math(expr)}\ntext:  {to_text(expr)}\nlatex: {sp.latex(expr, order='grlex')}\n")


def _check(formula: LayerFormula, values: Mapping[str, int]) -> None:
    names = {s.name for s in formula.symbols}
    unknown = sorted(set(values) - names)
    if unknown:
        raise InputError(
            f"{formula.name} has no symbol {', '.join(unknown)}; its symbols are {', '.join(sorted(names))}"
        )


def sheet_rows(formula: LayerFormula, latex: bool = False) -> list[tuple[str, str, sp.Basic]]:
    """Each line of the sheet: its label, its formula as printed, and what the numbers go into: an expression
    (printed by :func:`render_substituted`) or, for the output shape, the tuple of its sizes."""
    word = latex_word if latex else str
    rows: list[tuple[str, str, sp.Basic]] = []
    for label, expr in _fields(formula):
        rows.append((word(label), to_latex(expr) if latex else to_math(expr), expr))
    if formula.output_shape:
        shape = sp.Tuple(*formula.output_shape)
        rows.append((word("output shape"), show_shape(shape, latex), shape))
    for symbol, expr in formula.intermediates.items():
        label = to_latex(symbol) if latex else f"where {symbol.name}"
        rows.append((label, to_latex(expr) if latex else to_math(expr), expr))
    return rows


def show_shape(shape: sp.Tuple, latex: bool = False) -> str:
    """An output shape as the sheet prints it: ``(N, C_out, H_out, W_out)``, or LaTeX."""
    return to_latex(shape) if latex else "(" + ", ".join(to_math(d) for d in shape) + ")"


def sheet_header(formula: LayerFormula) -> list[str]:
    """The text sheet's first lines: the name and description, the symbols (the LaTeX sheet's title is the
    first)."""
    return [f"{formula.name}: {formula.description}", f"symbols: {', '.join(sorted(s.name for s in formula.symbols))}"]


def formula_sheet(formula: LayerFormula, values: Mapping[str, int] | None = None, latex: bool = False) -> str:
    """The formula's fields, each symbolic and (when ``values`` are given) with numbers substituted.

    Raises:
        InputError: a value names a symbol the formula does not have.
        FormulaError: a value is out of its range, or the values give a negative or fractional count.
    """
    values = dict(values or {})
    _check(formula, values)
    defaults: dict[str, int] = {}
    if values:
        values, defaults = formula.with_defaults(values)
        formula.check(values)
    known = _known_values(formula, values) if values else {}
    lines: list[Line] = []
    for label, symbolic, expr in sheet_rows(formula, latex):
        if not values:
            substituted = None
        elif isinstance(expr, sp.Tuple):
            substituted = show_shape(expr.xreplace({s: sp.sympify(v) for s, v in known.items()}), latex)
        else:
            substituted = render_substituted(expr, known, latex)
        lines.append((label, symbolic, substituted))
    unbound = {s for s in formula.symbols if values and s.name not in values}
    below = notes(defaults, sorted(s.name for s in unbound - formula.rule_only_symbols), _unchecked(formula, unbound))
    header = sheet_header(formula)
    if latex:
        return latex_sheet(header[0], lines, below)
    return text_sheet(header, lines, below)


def _unchecked(formula: LayerFormula, unbound: set[sp.Symbol]) -> list[str]:
    """A line for each rule that waits for a symbol only it names: ``unchecked until C_in is given: C_out
    divisible by C_in`` (every count is known without ``C_in``, so it is not listed as unbound)."""
    found = []
    for text, rule in formula.constraints.items():
        waiting = sorted(s.name for s in sp.sympify(rule).free_symbols & unbound & formula.rule_only_symbols)
        if waiting:
            verb = "is" if len(waiting) == 1 else "are"
            found.append(f"unchecked until {', '.join(waiting)} {verb} given: {text}")
    return found
