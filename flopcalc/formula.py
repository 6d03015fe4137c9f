"""The formula core: one symbolic definition per layer family, from which every number and rendering comes.

A :class:`LayerFormula` holds sympy expressions over named dimension symbols for the parameter count, the
multiply-accumulates (MACs) and the non-MAC operations by kind. The same expressions give the integer counts
(:meth:`LayerFormula.evaluate`), the plain text and LaTeX of the formula, the formula with numbers substituted
(``3·11·11·64 + 64 = 23,296``) and derived results such as cost ratios (:func:`ratio`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from functools import cached_property
from types import MappingProxyType
from typing import Any

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.pycode import PythonCodePrinter
from sympy.printing.str import StrPrinter

Number = int | sp.Expr
"""A count: a plain ``int`` for a concrete input, a sympy expression for a symbolic one."""


class OpKind(StrEnum):
    """Kinds of non-MAC work. Each is counted one per scalar operation and never folded into MACs."""

    BIAS_ADD = "bias_add"  # adding a learned bias after a MAC reduction (conv, linear, attention projections)
    ADD = "add"  # additions and subtractions, including reductions (a sum of n terms is n adds, see conventions)
    MUL = "mul"  # elementwise multiplications that are not part of a multiply-accumulate
    DIV = "div"  # divisions (means, softmax normalisation, reciprocal of a standard deviation)
    COMPARE = "compare"  # max/min/clamp comparisons (ReLU, max pooling)
    EXP = "exp"  # transcendental evaluations: exp, log, tanh, erf
    SQRT = "sqrt"  # square roots (norm layers)


_EVALUATED_LIMIT = 4096
"""Concrete points kept per formula; the memo starts afresh beyond that, so memory stays bounded."""


def dims(names: str) -> tuple[sp.Symbol, ...]:
    """Positive integer symbols, e.g. ``dims("N C_in H W")``; underscores render as LaTeX subscripts."""
    return sp.symbols(names, integer=True, positive=True)


def flag(name: str) -> sp.Symbol:
    """A 0/1 symbol such as ``B`` (the layer has a bias), so one formula covers both cases."""
    return sp.Symbol(name, integer=True, nonnegative=True)


class FormulaError(ValueError):
    """A formula was evaluated with missing values or gave a non-integer count."""


def _as_int(value: sp.Expr, what: str) -> Number:
    """The count as an ``int``; an expression if it still holds size symbols (a closed form)."""
    value = sp.nsimplify(value) if isinstance(value, sp.Float) else value
    if value.free_symbols and all(s.is_integer for s in value.free_symbols):
        return value
    if not (value.is_Integer or (value.is_Rational and value.q == 1)):
        raise FormulaError(f"{what} evaluated to {value}, not an integer; are all symbols bound?")
    return int(value)


class CountTotals:
    """What follows from ``macs`` and ``ops`` wherever counts are kept (formula, measurement, report)."""

    macs: Number
    ops: Mapping[str, Number]

    @property
    def other_ops(self) -> Number:
        """All non-MAC operations together."""
        return sum(self.ops.values(), 0)

    @property
    def flops(self) -> Number:
        """FLOPs: two per MAC plus one per non-MAC operation."""
        return 2 * self.macs + self.other_ops


@dataclass(frozen=True)
class Evaluation(CountTotals):
    """Integer counts of one formula at one set of values (expressions, for a closed form)."""

    params: Number
    macs: Number
    ops: Mapping[str, Number]
    output_shape: tuple[Number, ...]
    buffers: Number = 0


g_x, g_W, g_b = flag("g_x"), flag("g_W"), flag("g_b")
"""Backward flags: the layer's input needs a gradient; its weights are trainable; its bias is trainable."""
g_x1, g_x2 = flag("g_x1"), flag("g_x2")
"""Backward flags of a layer with two inputs (Bilinear): its first, its second input needs a gradient."""


@dataclass(frozen=True)
class Gradient:
    """One part of a layer's backward pass, the gradient with respect to its input or to its parameters:
    MACs and other operations as sympy expressions over the forward formula's symbols and the backward flags
    ``g_x``, ``g_W``, ``g_b`` (a part that autograd skips is 0 through its flag)."""

    macs: sp.Expr = sp.Integer(0)
    ops: Mapping[str, sp.Expr] = field(default_factory=dict)

    def substituted(self, subs: Mapping[sp.Symbol, sp.Expr]) -> Gradient:
        return Gradient(
            sp.sympify(self.macs).xreplace(dict(subs)),
            {kind: sp.sympify(expr).xreplace(dict(subs)) for kind, expr in self.ops.items()},
        )


GRADIENT_PARTS = ("grad_input", "grad_weight")


@dataclass(frozen=True)
class LayerFormula:
    """Parameters, MACs and other operations of one layer family, each a sympy expression.

    ``intermediates`` names derived sizes (e.g. ``H_out``) that the other expressions use; they are written
    as their own formula so that a table can show ``H_out = 55`` and a closed form can expand them.
    ``defaults`` are the module's defaults for symbols a caller may leave out (``s_h = 1``, ``G = 1``; an
    expression may name other symbols, as a pooling stride defaults to the kernel size). ``constraints`` are the
    conditions the module itself enforces, by what they say (``"C_in divisible by G": Eq(Mod(C_in, G), 0)``).
    """

    name: str
    description: str
    params: sp.Expr
    macs: sp.Expr
    ops: Mapping[str, sp.Expr] = field(default_factory=dict)
    output_shape: tuple[sp.Expr, ...] = ()
    intermediates: Mapping[sp.Symbol, sp.Expr] = field(default_factory=dict)
    buffers: sp.Expr = sp.Integer(0)
    defaults: Mapping[sp.Symbol, sp.Expr] = field(default_factory=dict)
    constraints: Mapping[str, sp.Basic] = field(default_factory=dict)
    grad_input: Gradient | None = None
    grad_weight: Gradient | None = None

    @property
    def has_backward(self) -> bool:
        """Whether this family's backward pass has a formula (``grad_weight`` may be absent: no parameters)."""
        return self.grad_input is not None

    @cached_property
    def _gradients(self) -> dict[str, LayerFormula]:
        parts = {"grad_input": self.grad_input, "grad_weight": self.grad_weight or Gradient()}
        return {
            part: LayerFormula(
                name=f"{self.name}.{part}", description=f"{self.description}: {part.replace('_', '-')}",
                params=sp.Integer(0), macs=sp.sympify(gradient.macs), ops=dict(gradient.ops),
                intermediates=self.intermediates,
            )
            for part, gradient in parts.items()
            if gradient is not None
        }

    @cached_property
    def gradient_symbols(self) -> frozenset[sp.Symbol]:
        """The symbols of the backward formulas (none without one)."""
        parts = [p for p in (self.grad_input, self.grad_weight) if p is not None]
        exprs = [sp.sympify(e) for p in parts for e in (p.macs, *p.ops.values())]
        return frozenset().union(*(e.free_symbols for e in exprs))

    def gradient(self, part: str) -> LayerFormula:
        """``grad_input`` or ``grad_weight`` as a formula of its own, over the same symbols and intermediates
        as the forward one (plus the backward flags), so it evaluates and renders like any formula."""
        if not self.has_backward:
            raise KeyError(f"{self.name} has no backward formula")
        return self._gradients[part]

    def specialize(self, name: str, description: str, subs: Mapping[sp.Symbol, sp.Expr]) -> LayerFormula:
        """A variant of this formula with some symbols fixed, e.g. depthwise conv is conv with ``G = C_in``."""

        def sub(expr: sp.Expr) -> sp.Expr:
            return sp.sympify(expr).xreplace(dict(subs))

        return LayerFormula(
            name=name,
            description=description,
            params=sub(self.params),
            macs=sub(self.macs),
            ops={kind: sub(expr) for kind, expr in self.ops.items()},
            output_shape=tuple(sub(d) for d in self.output_shape),
            intermediates={s: sub(e) for s, e in self.intermediates.items() if s not in subs},
            buffers=sub(self.buffers),
            grad_input=self.grad_input.substituted(subs) if self.grad_input else None,
            grad_weight=self.grad_weight.substituted(subs) if self.grad_weight else None,
            defaults={s: sub(e) for s, e in self.defaults.items() if s not in subs},
            constraints={text: c for text, rule in self.constraints.items() if (c := sub(rule)) is not sp.true},
        )

    @property
    def symbols(self) -> set[sp.Symbol]:
        """Free symbols a caller must bind (intermediates excluded)."""
        exprs = [self.params, self.macs, self.buffers, *self.ops.values(), *self.output_shape]
        exprs += list(self.intermediates.values())
        free: set[sp.Symbol] = set()
        for expr in exprs:
            free |= sp.sympify(expr).free_symbols
        return free - set(self.intermediates)

    def expand(self, expr: sp.Expr) -> sp.Expr:
        """``expr`` with every intermediate replaced by its definition (in terms of input sizes only)."""
        expr = sp.sympify(expr)
        for _ in range(len(self.intermediates) + 1):
            replaced = expr.xreplace(dict(self.intermediates))
            if replaced == expr:
                return expr
            expr = replaced
        return expr

    def resolve(self, values: Mapping[str | sp.Symbol, Number]) -> dict[sp.Symbol, Number]:
        """Bound symbol values plus the intermediates evaluated from them."""
        by_name = {s.name: s for s in self.symbols | set(self.intermediates)}
        resolved: dict[sp.Symbol, Number] = {}
        for key, value in values.items():
            symbol = by_name.get(key, key) if isinstance(key, str) else key
            if isinstance(symbol, sp.Symbol):
                resolved[symbol] = value
        from flopcalc.sizes import simplify_sizes  # sizes builds on this module

        for symbol in self.intermediates:
            if symbol not in resolved:
                value = self.expand(symbol).xreplace(_sympify_values(resolved)).doit()
                resolved[symbol] = sp.sympify(simplify_sizes(value) if value.free_symbols else value)
        return resolved

    @cached_property
    def _compiled(self) -> tuple[tuple[str, ...], Callable[..., list[Fraction]]]:
        """Every field with intermediates expanded, compiled once to exact rational Python arithmetic."""
        args = tuple(sorted(self.symbols, key=lambda s: s.name))
        fields = [self.params, self.macs, self.buffers, *self.ops.values(), *self.output_shape]
        return tuple(s.name for s in args), compile_exact(args, [self.expand(e) for e in fields])

    def evaluate(self, values: Mapping[str | sp.Symbol, Number]) -> Evaluation:
        """Integer counts at concrete values (or expressions at symbolic ones, for a closed form).

        Raises :class:`FormulaError` if a symbol is left unbound or a count is not an integer.
        """
        by_name = {str(k): v for k, v in values.items()}
        names, function = self._compiled
        point = tuple(by_name.get(n) for n in names)
        exact = all(isinstance(v, int | sp.Rational) for v in point)
        if not exact:  # a closed form: given intermediates are used as they are
            point += tuple(by_name.get(s.name) for s in self.intermediates)
        found = self._evaluated.get((exact, point))
        if found is None:
            if exact:
                found = self._evaluate_exactly(function, [_fraction(v) for v in point])
            else:
                found = self._evaluate_symbolically(values)
            if len(self._evaluated) >= _EVALUATED_LIMIT:
                self._evaluated.clear()
            self._evaluated[(exact, point)] = found
        return found

    @cached_property
    def _evaluated(self) -> dict[tuple[bool, tuple[Any, ...]], Evaluation]:
        """Evaluations by point: a network repeats the same layer configuration many times."""
        return {}

    def _evaluate_exactly(self, function: Callable[..., list[Fraction]], args: list[Fraction]) -> Evaluation:
        results = function(*args)
        for result in results:
            if Fraction(result).denominator != 1:
                raise FormulaError(f"{self.name} gave the non-integer count {result}")
        counts = [int(r) for r in results]
        n_ops = len(self.ops)
        ops = {str(kind): n for kind, n in zip(self.ops, counts[3 : 3 + n_ops]) if n != 0}
        return Evaluation(  # read-only, as it is shared by every call at the same point
            params=counts[0], macs=counts[1], buffers=counts[2], ops=MappingProxyType(ops),
            output_shape=tuple(counts[3 + n_ops :]),
        )

    def _evaluate_symbolically(self, values: Mapping[str | sp.Symbol, Number]) -> Evaluation:
        resolved = _sympify_values(self.resolve(values))

        def count(expr: sp.Expr, what: str) -> int:
            return _as_int(sp.sympify(expr).xreplace(resolved).doit(), f"{self.name}.{what}")

        return Evaluation(
            params=count(self.params, "params"),
            macs=count(self.macs, "macs"),
            ops=MappingProxyType({str(kind): n for kind, expr in self.ops.items() if (n := count(expr, kind)) != 0}),
            output_shape=tuple(count(d, "output_shape") for d in self.output_shape),
            buffers=count(self.buffers, "buffers"),
        )

    def with_defaults(self, values: Mapping[str, int]) -> tuple[dict[str, int], dict[str, int]]:
        """``values`` completed with the defaults of the symbols left out, and the defaults that were used
        (a default naming a symbol that is itself unbound stays unused)."""
        completed = dict(values)
        used: dict[str, int] = {}
        for symbol, default in self.defaults.items():
            if symbol.name in completed:
                continue
            default = sp.sympify(default)
            bound = {s: sp.Integer(completed[s.name]) for s in default.free_symbols if s.name in completed}
            value = default.xreplace(bound)
            if value.is_Integer:
                completed[symbol.name] = used[symbol.name] = int(value)
        return completed, used

    def check(self, values: Mapping[str, int]) -> None:
        """Refuse values no module could have: a size, kernel, stride or group count below 1, a padding or
        flag below 0, a broken constraint (``C_in`` not divisible by ``G``), a derived size below 1 or a count
        that is negative or not a whole number. Checks what the given values determine; the rest stays symbolic.

        Raises:
            FormulaError: naming the value and the range it must be in.
        """
        by_name = {s.name: s for s in self.symbols}
        for name, value in values.items():
            symbol = by_name.get(name)
            if symbol is not None and symbol.is_positive and value < 1:
                raise FormulaError(f"{self.name}: {name} = {value}, but {name} must be a positive integer (>= 1)")
            if symbol is not None and symbol.is_nonnegative and value < 0:
                raise FormulaError(f"{self.name}: {name} = {value}, but {name} must be an integer >= 0")
        numbers = _sympify_values(self.resolve(values))
        for text, rule in self.constraints.items():
            if sp.sympify(rule).xreplace(numbers) is sp.false:
                given = ", ".join(f"{s.name}={numbers[s]}" for s in sorted(rule.free_symbols, key=str))
                raise FormulaError(f"{self.name}: {text} is required, but {given}")
        for symbol in self.intermediates:
            size = numbers[symbol]
            if symbol.is_positive and size.is_number and not (size.is_Integer and size >= 1):
                raise FormulaError(
                    f"{self.name}: {symbol.name} = {size} with these values, but a size must be at least 1 "
                    "(is the input smaller than the kernel, or a stride or padding too large?)"
                )
        for what in ("params", "macs", "buffers", *map(str, self.ops)):
            count = self.field_expr(what).xreplace(numbers).doit()
            if count.is_number and not (count.is_Integer and count >= 0):
                raise FormulaError(
                    f"{self.name}: {what} = {count} with these values, not a whole number >= 0; check that the "
                    "values fit together"
                )

    def field_expr(self, what: str) -> sp.Expr:
        """One of ``params``, ``macs``, ``buffers`` or an op kind, as a sympy expression."""
        if what in ("params", "macs", "buffers"):
            return sp.sympify(getattr(self, what))
        if what in self.ops:
            return sp.sympify(self.ops[what])
        raise KeyError(f"{self.name} has no field {what!r}; it has params, macs, buffers, {', '.join(self.ops)}")

    def to_text(self, what: str = "macs") -> str:
        """Plain-text formula, e.g. ``C_in*C_out*K_h*K_w/G + B*C_out``."""
        return to_text(self.field_expr(what))

    def to_latex(self, what: str = "macs") -> str:
        """LaTeX formula, e.g. ``\\frac{C_{\\mathrm{in}} C_{\\mathrm{out}} K_{h} K_{w}}{G} + B C_{\\mathrm{out}}``."""
        return to_latex(self.field_expr(what))

    def substituted(self, what: str, values: Mapping[str | sp.Symbol, int], latex: bool = False) -> str:
        """The formula with numbers in place of symbols, and its value: ``3·11·11·64 + 64 = 23,296``."""
        return render_substituted(self.field_expr(what), self.resolve(values), latex=latex)


_EXACT_NAMESPACE = {"Fraction": Fraction, "math": math}


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


def _fraction(value: int | sp.Rational) -> Fraction:
    return Fraction(value) if isinstance(value, int) else Fraction(int(value.p), int(value.q))


def _sympify_values(values: Mapping[sp.Symbol, Number]) -> dict[sp.Symbol, sp.Expr]:
    return {s: sp.sympify(v) for s, v in values.items()}


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


class _PositiveFirst(_TextPrinter):
    """Terms added before terms subtracted, as a person writes ``H + 2·p_h − 1`` and ``32 - 3 + 1``."""

    def _as_ordered_terms(self, expr: sp.Expr, order: Any = None) -> list[sp.Expr]:
        terms = super()._as_ordered_terms(expr, order)
        return sorted(terms, key=lambda term: term.could_extract_minus_sign())


class _MathPrinter(_PositiveFirst):
    """Floors and ceilings as ``⌊x⌋`` and ``⌈x⌉``."""

    def _print_floor(self, expr: sp.floor) -> str:
        return f"⌊{self._print(expr.args[0])}⌋"

    def _print_ceiling(self, expr: sp.ceiling) -> str:
        return f"⌈{self._print(expr.args[0])}⌉"


def _human(text: str) -> str:
    """``**2`` as ``²`` (``^`` for other powers) and ``*`` as ``·``."""
    text = re.sub(r"\*\*(\d+)\b", lambda power: power.group(1).translate(_SUPERSCRIPT_DIGITS), text)
    return text.replace("**", "^").replace("*", "·")


def to_math(expr: sp.Expr) -> str:
    """The expression as a person writes it: ``1/M + 1/K²``, ``⌊(H + 2·p_h − 1)/s_h⌋ + 1``."""
    return _human(_MathPrinter().doprint(sp.sympify(expr)))


class _NumberStrPrinter(_PositiveFirst):
    """Prints each bound symbol as its number, keeping the formula's structure."""

    def __init__(self, numbers: Mapping[sp.Symbol, sp.Expr]):
        super().__init__()
        self._numbers = numbers

    def _print_Symbol(self, expr: sp.Symbol) -> str:
        return sp.sstr(self._numbers[expr]) if expr in self._numbers else super()._print_Symbol(expr)


class _MathLatexPrinter(LatexPrinter):
    """sympy's LaTeX with a word as subscript set upright: ``H_out`` is ``H_{\\mathrm{out}}`` (not H sub o, then
    "ut"); a one-letter subscript stays a variable (``K_{h}``)."""

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
        return sp.latex(self._numbers[expr]) if expr in self._numbers else super()._print_Symbol(expr)


def render_substituted(expr: sp.Expr, values: Mapping[sp.Symbol, Number], latex: bool = False) -> str:
    """``expr`` printed with numbers for symbols, then ``= value``.

    Symbols bound to 0 or 1 (flags such as ``B`` for bias, or ``G = 1``) are applied first so that the shown
    arithmetic has no ``·1`` or ``0·…`` terms.
    """
    values = _sympify_values(values)
    trivial = {s: v for s, v in values.items() if v in (sp.Integer(0), sp.Integer(1))}
    structural = sp.sympify(expr).xreplace(trivial)
    total = structural.xreplace(values).doit()
    total_text = f"{int(total):,}" if total.is_Integer else sp.sstr(total)
    if latex:
        body = _NumberLatexPrinter(values).doprint(structural)
        return f"{body} = {total_text.replace(',', '{,}') if total.is_Integer else to_latex(total)}"
    body = _NumberStrPrinter(values).doprint(structural)
    body = re.sub(r"\*\*", "^", body).replace("*", "·")  # numbers: 2^10 reads better than a superscript
    return body if body == total_text.replace(",", "") else f"{body} = {total_text}"


def ratio(numerator: sp.Expr, denominator: sp.Expr) -> sp.Expr:
    """The simplified ratio of two formulas, as a sum of simple terms where sympy can write it so."""
    return sp.expand(sp.simplify(sp.sympify(numerator) / sp.sympify(denominator)))
