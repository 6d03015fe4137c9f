"""How a formula is written for people: plain text that sympy reads back (:func:`to_text`), text as a person
writes it (:func:`to_math`: ``⌊(H + 2·p_h − 1)/s_h⌋ + 1``), LaTeX (:func:`to_latex`), and a formula with numbers
in place of its symbols followed by its value (:func:`render_substituted`: ``3·11·11·64 + 64 = 23,296``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

from flopcalc.sheet_layout import with_total


class _TextPrinter(StrPrinter):
    """sympy's plain text, with larger terms first and ``1/K**2`` rather than ``K**(-2)``."""

    def __init__(self) -> None:
        super().__init__({"order": "grlex"})

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        if expr.exp.is_Integer and expr.exp < 0:
            return f"1/{self._print(expr.base ** -expr.exp)}"
        return super()._print_Pow(expr, rational)


def to_text(expr: sp.Expr) -> str:
    """Plain text that ``sympy.parse_expr`` reads back, e.g. ``1/M + 1/K**2``."""
    return _TextPrinter().doprint(sp.sympify(expr))


_SUPERSCRIPT_DIGITS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


class _TermsPositiveFirst:
    """Terms added before terms subtracted, as a person writes ``H + 2·p_h − 1`` and ``32 + 1 - 3``; mixed into
    the text and the LaTeX printers, so that both write a sum's terms in one order."""

    def _as_ordered_terms(self, expr: sp.Expr, order: Any = None) -> list[sp.Expr]:
        terms = super()._as_ordered_terms(expr, order)  # type: ignore[misc]
        return sorted(terms, key=lambda term: term.could_extract_minus_sign())


class _PositiveFirst(_TermsPositiveFirst, _TextPrinter):
    """The text printer with terms added before terms subtracted."""


class _MathPrinter(_PositiveFirst):
    """Floors and ceilings as ``⌊x⌋`` and ``⌈x⌉``, a sum as ``Σ_{i=0}^{n - 1} (x)``, ``max(0, N - B)``."""

    def _print_floor(self, expr: sp.floor) -> str:
        return f"⌊{self._print(expr.args[0])}⌋"

    def _print_ceiling(self, expr: sp.ceiling) -> str:
        return f"⌈{self._print(expr.args[0])}⌉"

    def _print_Sum(self, expr: sp.Sum) -> str:
        bounds = "".join(
            f"Σ_{{{self._print(index)}={self._print(low)}}}^{{{self._print(high)}}} " for index, low, high in expr.limits
        )
        return f"{bounds}({self._print(expr.function)})"

    def _print_Max(self, expr: sp.Max) -> str:
        return f"max({self.stringify(expr.args, ', ')})"

    def _print_Min(self, expr: sp.Min) -> str:
        return f"min({self.stringify(expr.args, ', ')})"


def _human(text: str) -> str:
    """``**2`` as ``²`` (``^`` for other powers) and ``*`` as ``·``."""
    text = re.sub(r"\*\*(\d+)\b", lambda power: power.group(1).translate(_SUPERSCRIPT_DIGITS), text)
    return text.replace("**", "^").replace("*", "·")


def to_math(expr: sp.Expr) -> str:
    """The expression as a person writes it: ``1/M + 1/K²``, ``⌊(H + 2·p_h − 1)/s_h⌋ + 1``."""
    return _human(_MathPrinter().doprint(sp.sympify(expr)))


class _NumberStrPrinter(_MathPrinter):
    """Prints each bound symbol as its number, keeping the formula's structure (floors as ``⌊x⌋``); a symbol
    bound to an expression (a closed form's ``H_out = ⌈H/2⌉ - 1``) is written as the expression, in parentheses
    where it is not a single term."""

    def __init__(self, numbers: Mapping[sp.Symbol, sp.Expr]):
        super().__init__()
        self._numbers = numbers

    def _print_Symbol(self, expr: sp.Symbol) -> str:
        if expr not in self._numbers:
            return super()._print_Symbol(expr)
        value = self._numbers[expr]
        if value.is_Number:
            return sp.sstr(value)
        text = _MathPrinter().doprint(value)
        return f"({text})" if value.is_Add else text


class _TotalPrinter(_MathPrinter):
    """A value left symbolic, as a sheet writes its totals: whole numbers with thousands separators
    (``51,840·W_out``, as ``= 1,792`` for a number)."""

    def _print_Integer(self, expr: sp.Integer) -> str:
        return f"{int(expr):,}"

    def _print_Rational(self, expr: sp.Rational) -> str:
        return f"{expr.p:,}/{expr.q:,}"


class _MathLatexPrinter(_TermsPositiveFirst, LatexPrinter):
    """sympy's LaTeX with a word as subscript set upright: ``H_out`` is ``H_{\\mathrm{out}}`` (not H sub o, then
    "ut"); a one-letter subscript stays a variable (``K_{h}``). Terms come in the text's order: larger first
    (``grlex``), those added before those subtracted."""

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        super().__init__({"order": "grlex", **(settings or {})})

    def _print_Symbol(self, expr: sp.Symbol, style: str = "plain") -> str:
        base, underscore, subscript = expr.name.partition("_")
        if underscore and len(subscript) > 1 and subscript.isalpha():
            return f"{super()._print_Symbol(sp.Symbol(base), style)}_{{\\mathrm{{{subscript}}}}}"
        return super()._print_Symbol(expr, style)


def to_latex(expr: sp.Expr) -> str:
    """LaTeX for math mode, subscripts as words upright: ``\\frac{C_{\\mathrm{in}} K_{h}}{G}``."""
    return _MathLatexPrinter().doprint(sp.sympify(expr))


class _NumberLatexPrinter(_MathLatexPrinter):
    """LaTeX twin of :class:`_NumberStrPrinter`, with explicit ``\\cdot`` between numbers."""

    def __init__(self, numbers: Mapping[sp.Symbol, sp.Expr]):
        super().__init__({"mul_symbol": "dot", "order": "grlex"})
        self._numbers = numbers

    def _print_Symbol(self, expr: sp.Symbol, style: str = "plain") -> str:
        if expr not in self._numbers:
            return super()._print_Symbol(expr)
        value = self._numbers[expr]
        if value.is_Number:
            return sp.latex(value)
        text = _MathLatexPrinter().doprint(value)
        return f"\\left({text}\\right)" if value.is_Add else text


class _TotalLatexPrinter(_MathLatexPrinter):
    """LaTeX twin of :class:`_TotalPrinter`: ``51{,}840 W_{\\mathrm{out}}``."""

    def _print_Integer(self, expr: sp.Integer) -> str:
        return f"{int(expr):,}".replace(",", "{,}")


def _structural(expr: sp.Expr, values: Mapping[sp.Symbol, int | sp.Expr]) -> tuple[dict[sp.Symbol, sp.Expr], sp.Expr]:
    """The values as sympy numbers, and ``expr`` with the symbols bound to 0 or 1 (flags such as ``B`` for bias,
    or ``G = 1``) applied, so that the shown arithmetic has no ``·1`` or ``0·…`` terms."""
    values = {symbol: sp.sympify(value) for symbol, value in values.items()}
    trivial = {s: v for s, v in values.items() if v in (sp.Integer(0), sp.Integer(1))}
    return values, sp.sympify(expr).xreplace(trivial)


def _body(structural: sp.Expr, values: Mapping[sp.Symbol, sp.Expr], latex: bool) -> str:
    if latex:
        return _NumberLatexPrinter(values).doprint(structural)
    text = _NumberStrPrinter(values).doprint(structural)
    return re.sub(r"\*\*", "^", text).replace("*", "·")  # numbers: 2^10 reads better than a superscript


def substituted_bodies(expr: sp.Expr, values: Mapping[sp.Symbol, int | sp.Expr]) -> tuple[str, str]:
    """``expr`` printed with numbers for symbols, keeping its structure (``3·64·⌊(32 - 3)/2⌋``), as text and
    as LaTeX. The structure depends on which symbols are 0 or 1 (see :func:`_structural`) and otherwise only on
    the numbers printed in the symbols' places, which :mod:`flopcalc.sheet_plan` relies on."""
    values, structural = _structural(expr, values)
    return _body(structural, values, False), _body(structural, values, True)


def render_substituted(expr: sp.Expr, values: Mapping[sp.Symbol, int | sp.Expr], latex: bool = False) -> str:
    """``expr`` printed with numbers for symbols (as :func:`substituted_bodies`), then ``= value``."""
    values, structural = _structural(expr, values)
    body = _body(structural, values, latex)
    total = structural.xreplace(values).doit()
    if total.is_Integer:
        return with_total(body, int(total), latex)
    if latex:  # a value left symbolic (symbols unbound), written as the whole-number totals are
        return f"{body} = {_TotalLatexPrinter().doprint(total)}"
    if body == _body(total, {}, latex):
        return body
    return f"{body} = {_human(_TotalPrinter().doprint(total))}"
