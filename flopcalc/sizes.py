"""Closed-form sizes as a person writes them: ``⌈H/2⌉`` instead of ``floor(H/2 - 1/2) + 1``, every distinct
intermediate size named once (``H₁ = ⌈H/2⌉, H₂ = ⌈H₁/2⌉``), and the leading term for large sizes.

Every rewrite is an identity for integer sizes (each rule below says why), and is also checked: the rewritten
size must equal the original at every sample point (all small sizes and random large ones), or the original is
kept. A wrong simplification is never printed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from itertools import product
from typing import Any

import sympy as sp

from flopcalc.exact import compile_exact

ROUNDING = (sp.floor, sp.ceiling)
SMALL_SIZES = range(1, 41)
"""Every size up to 40 is a sample point for one-symbol sizes: strides and kernels live in this range."""
RANDOM_POINTS = 48
MODERATE_LIMIT = 512
RANDOM_LIMIT = 10**5


def is_size_function(expr: sp.Basic) -> bool:
    """An integer-valued function of sizes that a polynomial cannot express: floor, ceiling, min, max, mod."""
    return isinstance(expr, ROUNDING) or type(expr).__name__ in ("Min", "Max", "Mod") and bool(expr.args)


def simplify_sizes(expr: Any) -> Any:
    """``expr`` with every floor, ceiling, min and max in its normal form, expanded; ints pass through.

    ``floor((x - 1)/k) + 1`` becomes ``ceiling(x/k)``, nested roundings merge (``⌈⌈H/2⌉/2⌉ = ⌈H/4⌉``), and a
    min or max whose order is provable keeps its smaller or larger argument.
    """
    if not isinstance(expr, sp.Basic):
        return expr
    return _simplified(expr)


@lru_cache(maxsize=8192)
def _simplified(expr: sp.Basic) -> Any:
    result = sp.expand(_normal(expr))
    return int(result) if result.is_Integer else result


@lru_cache(maxsize=8192)
def _normal(expr: sp.Basic) -> sp.Basic:
    if expr.is_Atom or not expr.args:
        return expr
    rebuilt = expr.func(*(_normal(arg) for arg in expr.args))
    if rebuilt.func is not expr.func:  # sympy evaluated it into another shape, e.g. floor(x - 1) = floor(x) - 1
        return _normal(rebuilt)
    if not is_size_function(rebuilt):
        return rebuilt
    if isinstance(rebuilt, ROUNDING):
        candidate = _rounding(type(rebuilt), rebuilt.args[0])
    elif type(rebuilt).__name__ in ("Min", "Max"):
        candidate = _extreme(type(rebuilt).__name__ == "Min", rebuilt.args)
    else:
        return rebuilt
    if candidate is None or candidate == rebuilt:
        return rebuilt
    return candidate if agrees(rebuilt, candidate) else rebuilt


def _integer_parts(arg: sp.Expr) -> tuple[int, dict[sp.Expr, int], int] | None:
    """``arg`` as ``(X + c)/q``: the smallest denominator ``q``, the integer coefficients of ``X``'s integer-
    valued terms, and the integer constant ``c``; ``None`` when ``arg`` is not of that shape."""
    terms = sp.expand(arg).as_coefficients_dict()
    if not all(c.is_Rational for c in terms.values()):
        return None
    if not all(t == 1 or t.is_integer for t in terms):
        return None
    q = math.lcm(*(int(c.q) for c in terms.values()))
    scaled = {t: int(c * q) for t, c in terms.items()}
    constant = scaled.pop(sp.Integer(1), 0)
    return q, scaled, constant


def _rounding(kind: type, arg: sp.Expr) -> sp.Expr | None:
    """``floor(arg)`` or ``ceiling(arg)`` in normal form, by these identities for integer ``X``, ``c`` and
    positive integer ``q``, ``m``, ``g``:

    - ``floor((q·m·t + X)/q) = m·t + floor(X/q)`` for an integer-valued term ``t`` (the same for ceiling);
    - ``floor((g·Y + c)/(g·q)) = floor((Y + floor(c/g))/q)``; ``ceiling`` the same with ``ceiling(c/g)``;
    - ``floor((X + q·m + q - 1)/q) = ceiling(X/q) + m`` and ``ceiling((X + q·m + 1)/q) = floor(X/q) + m + 1``;
    - ``floor(floor(z)/q) = floor(z/q)`` and ``ceiling(ceiling(z)/q) = ceiling(z/q)`` for real ``z``.
    """
    parts = _integer_parts(arg)
    if parts is None:
        return None
    q, terms, constant = parts
    if terms and all(c < 0 for c in terms.values()):  # floor(-z) = -ceiling(z), and the other way round
        flipped = _rounding(sp.ceiling if kind is sp.floor else sp.floor, -arg)
        return None if flipped is None else -flipped
    outside = sp.Integer(0)
    for term, coefficient in list(terms.items()):
        if coefficient >= q:
            outside += (coefficient // q) * term
            terms[term] = coefficient % q
    terms = {t: c for t, c in terms.items() if c}
    g = math.gcd(q, *terms.values()) if terms else q
    if g > 1:
        constant = -((-constant) // g) if kind is sp.ceiling else constant // g
        terms = {t: c // g for t, c in terms.items()}
        q //= g
    x = sp.Add(*(c * t for t, c in terms.items()))
    if q == 1:
        return outside + x + constant
    whole, rest = divmod(constant, q)
    if rest == 0:
        inner, shift = kind, 0
    elif kind is sp.floor and rest == q - 1:
        inner, shift = sp.ceiling, 0
    elif kind is sp.ceiling and rest == 1:
        inner, shift = sp.floor, 1
    else:
        return outside + whole + kind((x + rest) / q)
    nested = _as_rounding(inner, x)
    if nested is not None:  # a rounding of a rounding: one rounding of the product of the denominators
        merged = _rounding(inner, nested / q)
        if merged is not None:
            return outside + whole + shift + merged
    return outside + whole + shift + inner(x / q)


def _as_rounding(kind: type, x: sp.Expr) -> sp.Expr | None:
    """``z`` with ``x = kind(z)`` when ``x`` is one floor or ceiling: ``⌈X/a⌉ = ⌊(X + a - 1)/a⌋`` and
    ``⌊X/a⌋ = ⌈(X - a + 1)/a⌉`` for integer ``X`` turn one kind into the other."""
    if isinstance(x, kind):
        return x.args[0]
    if not isinstance(x, ROUNDING):
        return None
    parts = _integer_parts(x.args[0])
    if parts is None:
        return None
    a = parts[0]
    return x.args[0] + (sp.Rational(a - 1, a) if kind is sp.floor else -sp.Rational(a - 1, a))


def _extreme(smallest: bool, args: Sequence[sp.Expr]) -> sp.Expr | None:
    """The argument of a min (``smallest``) or max that is provably below (above) all others, else ``None``."""
    for arg in args:
        others = [a for a in args if a is not arg]
        if all(_at_most(arg, o) if smallest else _at_most(o, arg) for o in others):
            return arg
    return None


def _at_most(a: sp.Expr, b: sp.Expr) -> bool:
    """``a <= b`` for every size, provable from the shapes: a non-negative constant difference, or both sides
    written as ``floor(u)`` (a ceiling ``⌈X/q⌉`` is ``⌊(X + q - 1)/q⌋``) with ``u_b - u_a`` a non-negative
    constant, since floor is monotone."""
    difference = sp.expand(b - a)
    if difference.is_number:
        return bool(difference >= 0)
    u_a, u_b = _floor_argument(a), _floor_argument(b)
    if u_a is None or u_b is None:
        return False
    difference = sp.expand(u_b - u_a)
    return bool(difference.is_number and difference >= 0)


def _floor_argument(expr: sp.Expr) -> sp.Expr | None:
    """``u`` with ``expr = floor(u)``, for a rounding plus an integer, or an integer-valued polynomial."""
    constant, rest = sp.expand(expr).as_coeff_Add()
    if not constant.is_Integer:
        return None
    if isinstance(rest, sp.floor):
        return rest.args[0] + constant
    if isinstance(rest, sp.ceiling):
        parts = _integer_parts(rest.args[0])
        return None if parts is None else rest.args[0] + sp.Rational(parts[0] - 1, parts[0]) + constant
    return expr if not any(is_size_function(n) for n in sp.preorder_traversal(rest)) and expr.is_integer else None


def sample_points(symbols: Sequence[sp.Symbol]) -> list[tuple[int, ...]]:
    """Where two size expressions are compared: every combination of small sizes for one or two symbols
    (all of 1..40 for one), plus random large ones; deterministic."""
    rng = random.Random(len(symbols))
    if len(symbols) == 1:
        points = [(v,) for v in SMALL_SIZES]
    else:
        small = [v for v in SMALL_SIZES if v <= (12 if len(symbols) == 2 else 4)]
        points = list(product(small, repeat=len(symbols)))[:400]
    for limit in (MODERATE_LIMIT, RANDOM_LIMIT):
        points += [tuple(rng.randint(1, limit) for _ in symbols) for _ in range(RANDOM_POINTS)]
    return points


def agrees(a: sp.Expr, b: sp.Expr) -> bool:
    """Whether ``a`` and ``b`` are equal at every sample point of their sizes (undefined at the same points,
    e.g. a modulo by zero, counts as equal)."""
    symbols = tuple(sorted(sp.sympify(a).free_symbols | sp.sympify(b).free_symbols, key=lambda s: s.name))
    if not symbols:
        return bool(sp.simplify(a - b) == 0)
    evaluate = compile_exact(symbols, [a, b])
    for point in sample_points(symbols):
        try:
            left, right = evaluate(*(Fraction(v) for v in point))
        except (ArithmeticError, ValueError):
            continue
        if left != right:
            return False
    return True


def leading_term(expr: Any, symbols: Sequence[sp.Symbol]) -> sp.Expr | None:
    """The highest-degree part of ``expr`` for large sizes, with every rounding dropped (``⌈H/2⌉ ≈ H/2``):
    exact coefficients, e.g. ``36144*H*W``. ``None`` when ``expr`` is a constant or is not polynomial once
    roundings are dropped (a min, a mod, a division by a size)."""
    if not isinstance(expr, sp.Basic):
        return None
    real = sp.sympify(expr)
    while True:
        roundings = [a for a in sp.preorder_traversal(real) if isinstance(a, ROUNDING)]
        if not roundings:
            break
        real = real.xreplace({a: a.args[0] for a in roundings})
    if any(is_size_function(a) for a in sp.preorder_traversal(real)):
        return None
    used = [s for s in symbols if s in real.free_symbols]
    if not used or real.free_symbols - set(used):
        return None
    try:
        polynomial = sp.Poly(sp.expand(real), *used)
    except sp.PolificationFailed:
        return None
    top = polynomial.total_degree()
    return sp.Add(*(c * sp.Mul(*(s**e for s, e in zip(used, m))) for m, c in polynomial.terms() if sum(m) == top))


@dataclass(frozen=True)
class NamedSize:
    """One intermediate size: its name, the floor/ceiling/min/max/mod it is built on (in the user's sizes),
    the integer ``shift`` added to it (``⌊(H + 1)/4⌋ - 1``, as the layer's output size is), and its definition
    written with earlier names (``H₂ = ⌈H₁/2⌉``)."""

    symbol: sp.Symbol
    base: str
    index: int
    atom: sp.Expr
    shift: int
    definition: sp.Expr

    @property
    def value(self) -> sp.Expr:
        """The size in the user's sizes only."""
        return self.atom + self.shift


class SizeNames:
    """Every distinct intermediate size of some expressions, named in order of first appearance (``H₁, H₂, …``
    per input size), and the expressions rewritten in those names.

    ``sizes`` are tensor dimensions (layer output shapes): a dimension ``⌊(H + 1)/4⌋ - 1`` is named as a
    whole, so that a count over it reads ``64·H₁·W₁``. ``counts`` may hold further roundings, named as they are.
    """

    def __init__(self, sizes: Iterable[Any], counts: Iterable[Any], user_symbols: Sequence[sp.Symbol]):
        self.user_symbols = tuple(user_symbols)
        self._taken = {s.name for s in self.user_symbols}
        self.sizes: list[NamedSize] = []
        self._by_atom: dict[sp.Expr, NamedSize] = {}
        self._counters: dict[str, int] = {}
        for size in sizes:
            if isinstance(size, sp.Basic):
                shift, rest = sp.sympify(simplify_sizes(size)).as_coeff_Add()
                if shift.is_Integer and is_size_function(rest):
                    for arg in rest.args:
                        self._add_all(arg)
                    if rest not in self._by_atom:
                        self._add(rest, int(shift))
        for count in counts:
            if isinstance(count, sp.Basic):
                self._add_all(sp.sympify(simplify_sizes(count)))

    def _add_all(self, expr: sp.Basic) -> None:
        for atom in _size_functions(expr):
            if atom not in self._by_atom:
                self._add(atom, 0)

    def _add(self, atom: sp.Expr, shift: int) -> None:
        base = "".join(sorted(s.name for s in atom.free_symbols)) or "X"
        index = self._counters[base] = self._counters.get(base, 0) + 1
        separator = ""  # H1, or H_1 when the user already has a size called H1
        while f"{base}{separator}{index}" in self._taken:
            separator += "_"
        name = f"{base}{separator}{index}"
        self._taken.add(name)
        symbol = sp.Symbol(name, integer=True, positive=True)
        named = NamedSize(symbol, base, index, atom, shift, self._definition(atom, shift))
        self.sizes.append(named)
        self._by_atom[atom] = named

    def _definition(self, atom: sp.Expr, shift: int) -> sp.Expr:
        """``atom + shift`` written with earlier names where it is a rounding of one of them (the nearest):
        ``⌈H/4⌉ = ⌈H₁/2⌉`` for ``H₁ = ⌈H/2⌉``, ``⌊(H + 1)/8⌋ - 1 = ⌊(H₁ - 1)/2⌋`` for ``H₁ = ⌊(H + 1)/4⌋ - 1``,
        which is how stride after stride reads; the shift goes inside the rounding. A candidate is used only
        where it equals ``atom`` at every sample point (:func:`agrees`)."""
        if isinstance(atom, ROUNDING):
            for _, inner in self._roundings_of_earlier(atom):
                return _shifted(inner, shift)
            return _shifted(type(atom)(self._named_inside(atom.args[0]), evaluate=False), shift)
        return atom.func(*(self._named_inside(arg) for arg in atom.args), evaluate=False) + shift

    def _roundings_of_earlier(self, atom: sp.Expr) -> Iterable[tuple[NamedSize, sp.Expr]]:
        """``(E, r)`` with ``r`` a rounding of the earlier name ``E`` (``⌊(E + c)/k⌋`` or ``⌈(E + c)/k⌉``, with
        ``k`` the ratio of the denominators) equal to ``atom``; nearest names first."""
        parts = _integer_parts(atom.args[0])
        if parts is None:
            return
        for earlier in reversed(self.sizes):
            earlier_parts = _integer_parts(earlier.atom.args[0]) if isinstance(earlier.atom, ROUNDING) else None
            if earlier_parts is None or earlier.atom.free_symbols != atom.free_symbols:
                continue
            k, remainder = divmod(parts[0], earlier_parts[0])
            if k < 2 or remainder:
                continue
            for kind in (type(atom), *(r for r in ROUNDING if r is not type(atom))):
                for c in sorted(range(-k, k + 1), key=abs):
                    candidate = kind((earlier.atom + c) / k)
                    if agrees(candidate, atom):
                        yield earlier, kind((earlier.symbol - earlier.shift + c) / k, evaluate=False)
                        return

    def _named_inside(self, expr: sp.Expr) -> sp.Expr:
        known = {a: self._by_atom[a].symbol - self._by_atom[a].shift for a in _size_functions(expr) if a in self._by_atom}
        return expr.xreplace(known) if known else expr

    def named(self, expr: Any) -> Any:
        """``expr`` in normal form, every intermediate size replaced by its name; ints pass through."""
        if not isinstance(expr, sp.Basic):
            return expr
        normal = sp.sympify(simplify_sizes(expr))
        named = self._named_inside(normal)
        return sp.expand(named) if named is not normal else normal

    @property
    def symbols(self) -> tuple[sp.Symbol, ...]:
        """The user's sizes, then the names in order: the variables a named expression is a polynomial in."""
        return self.user_symbols + tuple(size.symbol for size in self.sizes)


def _shifted(rounding: sp.Expr, shift: int) -> sp.Expr:
    """``rounding + shift`` with the shift taken inside: ``⌊x⌋ + m = ⌊x + m⌋`` for integer ``m``."""
    return type(rounding)(sp.together(rounding.args[0] + shift), evaluate=False)


def _size_functions(expr: sp.Basic) -> list[sp.Expr]:
    """Floor, ceiling, min, max and mod sub-expressions, innermost first, in order of appearance."""
    found: list[sp.Expr] = []

    def visit(node: sp.Basic) -> None:
        for arg in node.args:
            visit(arg)
        if is_size_function(node) and node not in found:
            found.append(node)

    visit(expr)
    return found
