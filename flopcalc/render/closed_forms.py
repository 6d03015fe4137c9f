"""Closed forms printed as a person writes them, in three styles: ``unicode`` for the terminal, Markdown and
HTML (``9,408·H₁·W₁``, ``H₁ = ⌈H/2⌉``), ``text`` for plain ASCII (``9408*H1*W1``, ``H1 = ceil(H/2)``) and
``latex`` (``9408 H_{1} W_{1}``, ``H_{1} = \\left\\lceil \\frac{H}{2} \\right\\rceil``).

The names come from :class:`flopcalc.sizes.SizeNames`, built once per report over its shapes and counts.
"""

from __future__ import annotations

import math
from fractions import Fraction
import weakref
from functools import lru_cache
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import sympy as sp

from flopcalc.exact import compile_exact
from flopcalc.report import Report
from flopcalc.sizes import ROUNDING, SizeNames, leading_term, sample_points, simplify_sizes
from flopcalc.symbolic import user_symbol

SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


class Style(StrEnum):
    UNICODE = "unicode"
    TEXT = "text"
    LATEX = "latex"


_NAMES: dict[int, SizeNames] = {}


def size_names(report: Report) -> SizeNames:
    """The intermediate sizes of a closed-form ``report``, named once (computed on first use, then cached)."""
    key = id(report)
    if key not in _NAMES:
        ordered = [row for row in report.rows if row.is_leaf] + [row for row in report.rows if not row.is_leaf]
        shapes = [d for row in ordered for shape in row.output_shapes for d in shape]  # leaves: stride by stride
        counts: list[Any] = []
        for row in report.rows:
            counts += [row.params, row.macs, *row.ops.values(), row.measured.macs, *row.measured.ops.values()]
        t = report.totals
        counts += [t.macs, *t.ops.values(), t.measured_macs, t.measured_flops]
        symbols = [user_symbol(name) for name in report.closed_form.hints] if report.closed_form else []
        _NAMES[key] = SizeNames(shapes, counts, symbols)
        weakref.finalize(report, _NAMES.pop, key, None)
    return _NAMES[key]


def format_count(value: Any, names: SizeNames, style: Style = Style.UNICODE) -> str:
    """A count in the report's size names: ``9,408·H₁·W₁ + 147,456·H₂·W₂`` (a common size factor such as the
    batch ``N`` is pulled out, and a product of simple factors stays a product)."""
    if not isinstance(value, sp.Basic):
        return _number(int(value), style)
    return _named_polynomial(value, names, style)


@lru_cache(maxsize=4096)
def _named_polynomial(value: sp.Basic, names: SizeNames, style: Style) -> str:
    return _polynomial(names.named(value), names, style)


def format_plain(value: Any, style: Style = Style.UNICODE) -> str:
    """A count in normal form without names (``9408*ceiling(H/2)*ceiling(W/2)``), for CSV and JSON cells
    that must stand alone."""
    if not isinstance(value, sp.Basic):
        return str(value)
    return _plain(value)


@lru_cache(maxsize=4096)
def _plain(value: sp.Basic) -> str:
    return str(simplify_sizes(value))


def same(a: Any, b: Any, names: SizeNames) -> bool:
    """Whether two counts are the same expression in normal form, hence equal at every size."""
    return sp.expand(names.named(a) - names.named(b)) == 0


def agreement(report: Report, names: SizeNames) -> tuple[bool, int]:
    """Whether the measured MACs and FLOPs equal the formula's: ``(True, 0)`` when both are the same
    expression in normal form (equal at every size); otherwise ``(equal, n)``, compared at the ``n`` sample
    sizes where the closed form's conditions hold."""
    t = report.totals
    pairs = ((t.measured_macs, t.macs), (t.measured_flops, t.flops))
    if all(same(a, b, names) for a, b in pairs):
        return True, 0
    closed_form = report.closed_form
    assert closed_form is not None
    symbols = closed_form.symbols
    evaluate = compile_exact(symbols, [sp.sympify(v) for pair in pairs for v in pair])
    tested = 0
    for point in sample_points(symbols):
        sizes = dict(zip(closed_form.hints, point))
        if closed_form.violated(sizes):
            continue
        tested += 1
        values = evaluate(*(Fraction(v) for v in point))
        if values[0] != values[1] or values[2] != values[3]:
            return False, tested
    return tested > 0, tested


def definitions(names: SizeNames, style: Style = Style.UNICODE) -> list[str]:
    """``["H₁ = ⌈H/2⌉", "W₁ = ⌈W/2⌉", "H₂ = ⌈H₁/2⌉", …]``, in order of first appearance."""
    return [f"{_symbol(size.symbol, names, style)} = {_expr(size.definition, names, style)}" for size in names.sizes]


def leading(value: Any, names: SizeNames, style: Style = Style.UNICODE) -> str | None:
    """The leading term of a count for large sizes, ``36,144·H·W``, or ``None`` when the count is already a
    polynomial in the user's sizes (nothing to approximate) or has no polynomial leading term."""
    if not isinstance(value, sp.Basic):
        return None
    normal = sp.sympify(simplify_sizes(value))
    if not any(isinstance(a, ROUNDING) for a in sp.preorder_traversal(normal)):
        return None
    term = leading_term(normal, names.user_symbols)
    return None if term is None else _polynomial(term, names, style)


def shape_dim(value: Any, names: SizeNames, style: Style = Style.UNICODE) -> str:
    """One dimension of a shape: ``64``, ``H₁``, or a compound size in parentheses ``(H₁+1)``."""
    text = format_count(value, names, style)
    if style is not Style.LATEX:
        text = text.replace(" ", "")
    if _single_factor(text):
        return text
    return f"\\left({text}\\right)" if style is Style.LATEX else f"({text})"


def _single_factor(text: str) -> bool:
    """Whether ``text`` has no operator outside parentheses (``H₁``, ``(H₁−2)``, ``\\left(H_{1}-2\\right)``)."""
    depth = 0
    for char in text.replace("\\left", "").replace("\\right", ""):
        if char in "()":
            depth += 1 if char == "(" else -1
        elif depth == 0 and char in " +-−·*/":
            return False
    return True


def _polynomial(expr: sp.Expr, names: SizeNames, style: Style) -> str:
    expr = sp.expand(expr)
    if expr.is_Integer:
        return _number(int(expr), style)
    generators = [s for s in names.symbols if s in expr.free_symbols]
    generators += sorted(expr.free_symbols - set(generators), key=lambda s: s.name)
    generators += [a for a in _functions(expr)]
    try:
        poly = sp.Poly(expr, *generators)
    except sp.PolynomialError:
        return _expr(expr, names, style)
    terms = sorted(poly.terms(), key=lambda t: (-sum(t[0]), [-e for e in t[0]]))
    if _may_be_product([m for m, _ in terms]):
        product = _as_product(expr, names, style)
        if product is not None:
            return product
    common = [min(m[i] for m, _ in terms) for i in range(len(generators))] if len(terms) > 1 else []
    prefix = [_power(g, e, names, style) for g, e in zip(generators, common) if e]
    if prefix:
        terms = [(tuple(e - c for e, c in zip(m, common)), k) for m, k in terms]
    body = _sum([_term(k, [(g, e) for g, e in zip(generators, m) if e], names, style) for m, k in terms], style)
    if not prefix:
        return body
    return _join(prefix + [f"\\left({body}\\right)" if style is Style.LATEX else f"({body})"], style)


def _may_be_product(monomials: Sequence[tuple[int, ...]]) -> bool:
    """Whether the terms can expand a product of binomials ``c·(a + b)·…`` with a linear one among them: 2, 4
    or 8 terms, and two of them differing in one size only, to the first power (a cheap test before
    factoring)."""
    if len(monomials) not in (2, 4, 8):
        return False
    return any(
        sum(abs(x - y) for x, y in zip(m, n)) == 1 for i, m in enumerate(monomials) for n in monomials[i + 1:]
    )


def _as_product(expr: sp.Expr, names: SizeNames, style: Style) -> str | None:
    """``expr`` as ``c·(H−2)·(W−2)`` when it factors into monomials and sums of at most two terms."""
    content, factors = sp.factor_list(expr)
    sums = [f for f, _ in factors if f.is_Add]
    if not sums or any(len(f.args) > 2 or sp.Poly(f).total_degree() != 1 for f in sums):
        return None
    if len(factors) == 1 and factors[0][1] == 1:
        return None  # a number times one binomial reads better as the sum: 512·N + 4,800, not 64·(8·N+75)
    order = {s: i for i, s in enumerate(names.symbols)}

    def position(item: tuple[sp.Expr, int]) -> tuple[int, int]:
        factor = item[0]
        return (factor.is_Add, min((order.get(s, len(order)) for s in factor.free_symbols), default=0))

    parts = [] if content == 1 else [_coefficient(content, style)]
    for factor, exponent in sorted(factors, key=position):
        if factor.is_Add:
            inner = _sum([_term(k, list(m), names, style) for m, k in _flat_terms(factor, names)], style, tight=True)
            text = f"\\left({inner}\\right)" if style is Style.LATEX else f"({inner})"
            parts.append(text + _exponent(exponent, style))
        else:
            parts.append(_power(factor, exponent, names, style))
    return _join(parts, style)


def _flat_terms(expr: sp.Expr, names: SizeNames) -> list[tuple[list[tuple[sp.Expr, int]], sp.Rational]]:
    found = []
    for term in sp.Add.make_args(expr):
        coefficient, rest = term.as_coeff_Mul()
        powers = [(b, int(e)) for b, e in (f.as_base_exp() for f in sp.Mul.make_args(rest)) if rest != 1]
        found.append((powers, coefficient))
    order = {s: i for i, s in enumerate(names.symbols)}
    return sorted(found, key=lambda t: (-sum(e for _, e in t[0]), [order.get(b, 0) for b, _ in t[0]]))


def _functions(expr: sp.Expr) -> list[sp.Expr]:
    return [a for a in sp.preorder_traversal(expr) if isinstance(a, sp.Function) and a.args]


def _term(coefficient: Any, powers: Sequence[tuple[sp.Expr, int]], names: SizeNames, style: Style) -> str:
    """One signed term: ``-64·H₁`` (the sign is read off by :func:`_sum`)."""
    coefficient = sp.Rational(coefficient)
    factors = [_power(base, exponent, names, style) for base, exponent in powers]
    if not factors:
        return _coefficient(coefficient, style)
    if abs(coefficient) != 1:
        factors.insert(0, _coefficient(abs(coefficient), style))
    return ("-" if coefficient < 0 else "") + _join(factors, style)


def _sum(terms: Sequence[str], style: Style, tight: bool = False) -> str:
    """Terms joined by `` + `` and `` - `` (without spaces inside a factor, so a line breaks only between
    terms)."""
    minus = "−" if style is Style.UNICODE else "-"
    plus_sep, minus_sep = ("+", minus) if tight else (" + ", f" {minus} ")
    text = ""
    for i, term in enumerate(terms):
        negative = term.startswith("-")
        body = term[1:] if negative else term
        if i == 0:
            text = (minus if negative else "") + body
        else:
            text += (minus_sep if negative else plus_sep) + body
    return text


def _join(factors: Sequence[str], style: Style) -> str:
    return {Style.UNICODE: "·", Style.TEXT: "*", Style.LATEX: " "}[style].join(factors)


def _power(base: sp.Expr, exponent: int, names: SizeNames, style: Style) -> str:
    text = _symbol(base, names, style) if isinstance(base, sp.Symbol) else _expr(base, names, style)
    return text + _exponent(exponent, style)


def _exponent(exponent: int, style: Style) -> str:
    if exponent == 1:
        return ""
    return {Style.UNICODE: str(exponent).translate(SUPERSCRIPTS), Style.TEXT: f"**{exponent}",
            Style.LATEX: f"^{{{exponent}}}"}[style]


def _number(value: int, style: Style) -> str:
    if style is Style.TEXT:
        return str(value)
    return f"{value:,}".replace(",", "{,}") if style is Style.LATEX else f"{value:,}"


def _coefficient(value: sp.Rational, style: Style) -> str:
    """An exact coefficient: an integer, a terminating decimal (``771.5625``) or a fraction (``5/3``)."""
    value = sp.Rational(value)
    if value.q == 1:
        return _number(int(value), style)
    q = int(value.q)
    while q % 2 == 0:
        q //= 2
    while q % 5 == 0:
        q //= 5
    if q == 1:
        whole, fraction = divmod(abs(int(value.p)) * 10**40 // int(value.q), 10**40)
        digits = str(fraction).rjust(40, "0").rstrip("0")
        return ("-" if value < 0 else "") + _number(whole, style) + "." + digits
    if style is Style.LATEX:
        return f"\\frac{{{value.p}}}{{{value.q}}}"
    return f"{value.p}/{value.q}"


def _symbol(symbol: sp.Symbol, names: SizeNames, style: Style) -> str:
    size = next((s for s in names.sizes if s.symbol == symbol), None)
    if size is None:
        return sp.latex(symbol) if style is Style.LATEX else symbol.name
    if style is Style.UNICODE:
        return size.base + str(size.index).translate(SUBSCRIPTS)
    if style is Style.LATEX:
        return f"{sp.latex(sp.Symbol(size.base))}_{{{size.index}}}"
    return symbol.name


def _expr(expr: sp.Expr, names: SizeNames, style: Style) -> str:
    """A size expression: roundings as ``⌈x/q⌉``, min/max/mod spelled out, anything else as a polynomial."""
    constant, rest = expr.as_coeff_Add() if expr.is_Add else (sp.Integer(0), expr)
    if constant != 0 and _is_function(rest):
        return _sum([_expr(rest, names, style), _coefficient(constant, style)], style)
    if isinstance(expr, ROUNDING):
        argument = sp.expand(expr.args[0])
        denominator = sp.Integer(math.lcm(*(int(c.q) for c in argument.as_coefficients_dict().values() if c.is_Rational)))
        numerator = sp.expand(argument * denominator)
        top = _polynomial(numerator, names, style).replace(" ", "")
        if style is Style.LATEX:
            left, right = ("\\lceil", "\\rceil") if isinstance(expr, sp.ceiling) else ("\\lfloor", "\\rfloor")
            fraction = top if denominator == 1 else f"\\frac{{{top}}}{{{_polynomial(denominator, names, style)}}}"
            return f"\\left{left} {fraction} \\right{right}"
        if not _single_factor(top):
            top = f"({top})"
        fraction = top if denominator == 1 else f"{top}/{_polynomial(denominator, names, style)}"
        if style is Style.TEXT:
            return f"{'ceil' if isinstance(expr, sp.ceiling) else 'floor'}({fraction})"
        return f"⌈{fraction}⌉" if isinstance(expr, sp.ceiling) else f"⌊{fraction}⌋"
    kind = type(expr).__name__
    if kind in ("Min", "Max"):
        inner = ", ".join(_polynomial(arg, names, style) for arg in expr.args)
        return f"\\{kind.lower()}\\left({inner}\\right)" if style is Style.LATEX else f"{kind.lower()}({inner})"
    if kind == "Mod":
        a, b = (_polynomial(arg, names, style) for arg in expr.args)
        return f"{a} \\bmod {b}" if style is Style.LATEX else f"({a} mod {b})"
    return _polynomial(expr, names, style)


def _is_function(expr: sp.Expr) -> bool:
    return isinstance(expr, ROUNDING) or type(expr).__name__ in ("Min", "Max", "Mod")
