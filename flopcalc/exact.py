"""Formulas compiled to plain Python: exact rational arithmetic (:func:`compile_exact`), or plain integers where
every division is a floor or ceiling of an integer (:func:`compile_integer`, several times faster). Evaluating a
compiled expression is how a formula gives its counts at thousands of sizes without sympy's substitution."""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

_EXACT_NAMESPACE = {"Fraction": Fraction, "math": math}
EXACT_NAMES = frozenset(_EXACT_NAMESPACE)
"""The names the generated code uses besides the symbols' and Python's builtins."""


class _ExactPrinter(PythonCodePrinter):
    """Python code in which rational constants stay exact (``Fraction(7, 4)``, not ``1.75``)."""

    def _print_Rational(self, expr: sp.Rational) -> str:
        return f"Fraction({expr.p}, {expr.q})"

    _print_Half = _print_Rational

    def _print_Mod(self, expr: sp.Mod) -> str:
        # sympy's own printing drops the parentheses around an unevaluated product divisor.
        return f"(({self._print(expr.args[0])}) % ({self._print(expr.args[1])}))"

    def _print_Sum(self, expr: sp.Sum) -> str:
        """A generator sum; the bounds are Fractions with denominator 1, so ``range`` gets ``int``s."""
        loops = " ".join(
            f"for {self._print(i)} in range(int({self._print(a)}), int({self._print(b)}) + 1)"
            for i, a, b in expr.limits[::-1]
        )
        return f"sum({self._print(expr.function)} {loops})"


def compile_exact(args: tuple[sp.Symbol, ...], exprs: list[sp.Basic]) -> Callable[..., list[Any]]:
    """``exprs`` as one Python function of ``args`` in exact rational arithmetic; call it with Fractions."""
    return sp.lambdify(args, exprs, modules=[_EXACT_NAMESPACE], printer=_ExactPrinter)


def exact_code(expr: sp.Basic) -> str:
    """``expr`` as a Python expression over its symbols' names in exact rational arithmetic (the code
    :func:`compile_exact` runs), for :mod:`flopcalc.sheet_plan` to store and evaluate later without sympy."""
    return _ExactPrinter().doprint(expr)


class _IntegerPrinter(_ExactPrinter):
    """Python code in plain integers: ``floor(p/q)`` of an integer-valued ``p`` becomes ``p // q``."""

    def _print_floor(self, expr: sp.floor) -> str:
        numerator, denominator = _scaled(expr.args[0])
        return f"(({self._print(numerator)}) // {denominator})"

    def _print_ceiling(self, expr: sp.ceiling) -> str:
        numerator, denominator = _scaled(expr.args[0])
        return f"(-((-({self._print(numerator)})) // {denominator}))"


def _scaled(expr: sp.Expr) -> tuple[sp.Expr, int]:
    """``expr`` as ``numerator / q`` with ``q`` the common denominator of its rational coefficients."""
    denominator = 1
    for number in expr.atoms(sp.Rational):
        denominator = math.lcm(denominator, int(number.q))
    return sp.expand(expr * denominator), denominator


def compile_integer(args: tuple[sp.Symbol, ...], exprs: list[sp.Basic]) -> Callable[..., list[Any]] | None:
    """Like :func:`compile_exact` but in ``int`` arithmetic, several times faster; ``None`` when some true
    division or fraction would remain (then use :func:`compile_exact`)."""
    printer = _IntegerPrinter()
    code = " ".join(printer.doprint(e) for e in exprs)
    if "Fraction(" in code or "/" in code.replace("//", "") or "Sum" in code or "sum(" in code:
        return None
    return sp.lambdify(args, exprs, modules=[_EXACT_NAMESPACE], printer=_IntegerPrinter)
