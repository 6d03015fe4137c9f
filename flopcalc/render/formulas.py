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
    shape = sp.Tuple(*formula.output_shape)
    word = _text if latex else str
    lines: list[tuple[str, str, str | None]] = []
    for label, expr in _fields(formula):
        symbolic = to_latex(expr) if latex else to_math(expr)
        lines.append((word(label), symbolic, render_substituted(expr, known, latex) if values else None))
    if formula.output_shape:
        numbers = shape.xreplace({s: sp.sympify(v) for s, v in known.items()})
        show = to_latex if latex else (lambda t: "(" + ", ".join(to_math(d) for d in t) + ")")
        lines.append((word("output shape"), show(shape), show(numbers) if values else None))
    for symbol, expr in formula.intermediates.items():
        symbolic = to_latex(expr) if latex else to_math(expr)
        label = to_latex(symbol) if latex else f"where {symbol.name}"
        lines.append((label, symbolic, render_substituted(expr, known, latex) if values else None))
    unbound = sorted(s.name for s in formula.symbols if values and s.name not in values)
    notes = [f"defaults: {', '.join(f'{k}={v}' for k, v in defaults.items())}"] if defaults else []
    notes += [f"unbound: {', '.join(unbound)}"] if unbound else []
    return _latex_sheet(formula, lines, notes) if latex else _text_sheet(formula, lines, notes)


def _text_sheet(formula: LayerFormula, lines: list[tuple[str, str, str | None]], notes: list[str]) -> str:
    width = max(len(label) for label, _, _ in lines)
    out = [f"{formula.name}: {formula.description}", f"symbols: {', '.join(sorted(s.name for s in formula.symbols))}"]
    for label, symbolic, substituted in lines:
        out.append(f"  {label:<{width}} = {symbolic}")
        if substituted is not None:
            out.append(f"  {'':<{width}} = {substituted}")
    out += notes
    return "\n".join(out) + "\n"


def _latex_sheet(formula: LayerFormula, lines: list[tuple[str, str, str | None]], notes: list[str]) -> str:
    out = [f"% {formula.name}: {formula.description}", r"\begin{align*}"]
    body = []
    for label, symbolic, substituted in lines:
        body.append(f"{label} &= {symbolic}")
        if substituted is not None:
            body.append(f"&= {substituted}")
    out.append(" \\\\\n".join(body))
    out.append(r"\end{align*}")
    out += [f"% {note}" for note in notes]
    return "\n".join(out) + "\n"


def _text(label: str) -> str:
    """A word in math mode: ``\\text{bias\\_add}``."""
    return r"\text{" + label.replace("_", r"\_") + "}"
