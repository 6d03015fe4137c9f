"""Formula sheets with numbers, planned ahead from the sympy formulas so that ``flopcalc formula NAME
SYMBOL=VALUE ...`` prints them without importing sympy (:mod:`flopcalc.sheet_fast`).

A line such as ``= 3·64·30·3·3·30 = 1,555,200`` is the formula printed with a number in each symbol's place
(:func:`flopcalc.printing.substituted_bodies`), then its value. sympy first applies the symbols bound to 0 or 1,
so the printed structure depends on which symbols of the line are 0, 1 or some other number, and on nothing
else: the numbers themselves only fill the symbols' places. The plan of a formula therefore holds, per line and
per such pattern, the text sympy prints with a placeholder number in each remaining place (split into literal
pieces and places), plus every expression the sheet evaluates (defaults, constraints, intermediate sizes, the
counts, each line's value) as Python code in exact rational arithmetic, generated from the same expressions
(:func:`flopcalc.exact.exact_code`). Patterns are enumerated in full: 2 states for a positive symbol (1 or
more) and for a 0/1 flag (0 or 1), 3 for the others (0, 1 or more).
"""

from __future__ import annotations

import builtins
import itertools
import keyword
import re
from typing import Any

import sympy as sp

from flopcalc.exact import EXACT_NAMES, exact_code
from flopcalc.formula import LayerFormula, is_flag
from flopcalc.printing import substituted_bodies
from flopcalc.render.formulas import sheet_header, sheet_rows, show_shape

_PLACEHOLDER = 9_876_543_210
"""The first placeholder number; place ``i`` is printed as ``_PLACEHOLDER + i`` (never 0 or 1, and no formula
has a constant like it), then cut out of the printed text."""


def _states(symbol: sp.Symbol) -> tuple[str, ...]:
    """What can change the printed structure: ``1`` and ``n`` (any other number) for a positive symbol, ``0``
    and ``1`` for a 0/1 flag, all three for the others."""
    if is_flag(symbol):
        return ("0", "1")
    return ("1", "n") if symbol.is_positive else ("0", "1", "n")


def _kind(symbol: sp.Symbol) -> str:
    """The values a symbol takes, as :func:`flopcalc.sheet_fast.render` checks them (``LayerFormula.check``):
    ``f`` a 0/1 flag, ``+`` an integer >= 1, ``0`` an integer >= 0, ``""`` any integer."""
    if is_flag(symbol):
        return "f"
    return "+" if symbol.is_positive else "0" if symbol.is_nonnegative else ""


def _template(text: str, places: int) -> list[str | int]:
    """``text`` cut at the placeholder numbers: literal pieces and place indices, e.g. ``["", 0, "·", 1, ""]``."""
    pattern = "|".join(str(_PLACEHOLDER + i) for i in range(places)) or "(?!)"
    parts = re.split(rf"(?<!\d)({pattern})(?!\d)", text)  # the placeholders at odd positions
    return [int(part) - _PLACEHOLDER if i % 2 else part for i, part in enumerate(parts)]


def _line(formula: LayerFormula, expr: sp.Expr) -> dict[str, Any]:
    """One expression line: its value's code, its symbols, and for each pattern of them the text and LaTeX."""
    symbols = sorted(sp.sympify(expr).free_symbols, key=lambda s: s.name)
    templates: list[list[str | int]] = []
    keys: dict[str, list[int]] = {}
    for states in itertools.product(*map(_states, symbols)):
        values = {s: sp.Integer(_PLACEHOLDER + i if state == "n" else int(state))
                  for i, (s, state) in enumerate(zip(symbols, states))}
        ids = []
        for body in substituted_bodies(expr, values):
            template = _template(body, len(symbols))
            if template not in templates:
                templates.append(template)
            ids.append(templates.index(template))
        keys["".join(states)] = ids
    return {"code": exact_code(formula.expand(expr)), "symbols": [s.name for s in symbols], "keys": keys,
            "templates": templates}


def _shape(formula: LayerFormula, shape: sp.Tuple) -> dict[str, Any]:
    """The output-shape line: each size's code, and the text and LaTeX of a tuple of numbers."""
    places = sp.Tuple(*(sp.Integer(_PLACEHOLDER + i) for i in range(len(shape))))
    return {"sizes": [exact_code(formula.expand(d)) for d in shape],
            "templates": [_template(show_shape(places, latex), len(shape)) for latex in (False, True)]}


def _names(expr: sp.Basic) -> list[str]:
    return sorted(symbol.name for symbol in sp.sympify(expr).free_symbols)


def _plannable(formula: LayerFormula) -> bool:
    """Whether every symbol's name can be a Python variable in the generated code (no keyword, builtin or name
    the code itself uses)."""
    names = [s.name for s in formula.symbols | set(formula.intermediates)]
    taken = EXACT_NAMES | set(dir(builtins))
    return all(n.isidentifier() and not keyword.iskeyword(n) and n not in taken for n in names)


def plan(formula: LayerFormula) -> dict[str, Any] | None:
    """Everything :func:`flopcalc.sheet_fast.render` needs to print this formula's sheet at any values that
    bind every symbol; ``None`` for a formula whose symbols cannot be Python names."""
    if not _plannable(formula):
        return None
    counts = ["params", "macs", "buffers", *map(str, formula.ops)]
    rows = {"text": sheet_rows(formula), "latex": sheet_rows(formula, latex=True)}
    return {
        "header": sheet_header(formula),
        "symbols": {s.name: _kind(s) for s in sorted(formula.symbols, key=lambda s: s.name)},
        "defaults": [[s.name, _names(d), exact_code(sp.sympify(d))] for s, d in formula.defaults.items()],
        "constraints": [exact_code(formula.expand(rule)) for rule in formula.constraints.values()],
        "intermediates": [[s.name, bool(s.is_positive), exact_code(formula.expand(s))]
                          for s in formula.intermediates],
        "counts": [exact_code(formula.expand(formula.field_expr(what))) for what in counts],
        "rows": {fmt: [[label, symbolic] for label, symbolic, _ in found] for fmt, found in rows.items()},
        "lines": [_shape(formula, expr) if isinstance(expr, sp.Tuple) else _line(formula, expr)
                  for _, _, expr in rows["text"]],
    }

