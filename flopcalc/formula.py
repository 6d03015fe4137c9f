"""The formula core: one symbolic definition per layer family, from which every number and rendering comes.

A :class:`LayerFormula` holds sympy expressions over named dimension symbols for the parameter count, the
multiply-accumulates (MACs) and the non-MAC operations by kind. The same expressions give the integer counts
(:meth:`LayerFormula.evaluate`), the plain text and LaTeX of the formula and the formula with numbers substituted
(``3·11·11·64 + 64 = 23,296``; written by :mod:`flopcalc.printing`), and derived results such as cost ratios
(:func:`ratio`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from fractions import Fraction
from functools import cached_property
from types import MappingProxyType
from typing import Any

import sympy as sp

from flopcalc.exact import compile_exact
from flopcalc.printing import render_substituted, to_latex, to_text

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
    """A 0/1 symbol such as ``B`` (the layer has a bias), so one formula covers both cases. It carries the
    assumption ``flag`` (sympy keeps it and derives nothing from it), which tells it from a count of the same
    name that may be any integer >= 0 (an elementwise layer's ``A`` learned parameters): :func:`is_flag`."""
    return sp.Symbol(name, integer=True, nonnegative=True, flag=True)


def is_flag(symbol: sp.Symbol) -> bool:
    """Whether ``symbol`` was made by :func:`flag`, so that its only values are 0 and 1."""
    return bool(symbol.assumptions0.get("flag"))


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
g_h = flag("g_h")
"""Backward flag of a recurrent cell: the state passed to it needs a gradient (``g_x`` is then its first input's)."""
g_y, g_hn, g_cn, g_aw = flag("g_y"), flag("g_hn"), flag("g_cn"), flag("g_aw")
OUTPUT_FLAGS = ((g_y,), (g_hn, g_aw), (g_cn,))
"""Backward flags of a call's floating-point outputs, by position (a recurrent stack's output, final hidden state
and final cell state; MultiheadAttention's returned weights, its second output): 1 when that output receives a
gradient in the backward pass (the model uses it)."""


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
    conditions the module itself enforces, by what they say (``"C_in divisible by G": Eq(Mod(C_in, G), 0)``);
    their symbols are the formula's own (:attr:`symbols`), so that binding them decides the rule.
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
        """A variant of this formula with some symbols fixed, e.g. depthwise conv is conv with ``G = C_in``; a
        constraint is restated in the variant's symbols (``C_out divisible by C_in``), or dropped where it holds,
        and a default is kept only for a symbol the variant still has (a 1×1 convolution has no dilation)."""

        def sub(expr: sp.Expr) -> sp.Expr:
            return sp.sympify(expr).xreplace(dict(subs))

        variant = LayerFormula(
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
            constraints={
                _restated(text, subs): c for text, rule in self.constraints.items() if (c := sub(rule)) is not sp.true
            },
        )
        kept = variant.symbols | variant.gradient_symbols
        return replace(variant, defaults={s: d for s, d in variant.defaults.items() if s in kept})

    @cached_property
    def symbols(self) -> frozenset[sp.Symbol]:
        """Free symbols a caller binds (intermediates excluded): those the counts, the output shape and the
        sizes depend on (:meth:`_counted_symbols`), and those a constraint names (a depthwise convolution's
        ``C_in`` appears only in ``C_out divisible by C_in``). Worked out once: every evaluation resolves by it."""
        free = self._counted_symbols()
        for rule in self.constraints.values():
            free |= sp.sympify(rule).free_symbols
        return frozenset(free - set(self.intermediates))

    @cached_property
    def rule_only_symbols(self) -> frozenset[sp.Symbol]:
        """The symbols only a constraint names (a depthwise convolution's ``C_in``, in ``C_out divisible by
        C_in``): every count is known without them; only the rule waits for them."""
        return self.symbols - self._counted_symbols()

    def _counted_symbols(self) -> set[sp.Symbol]:
        """The symbols the counts, the output shape and the intermediate sizes depend on (intermediates excluded)."""
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
        args = tuple(sorted(self._counted_symbols(), key=lambda s: s.name))
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
        """Refuse values no module could have: a size, kernel, stride or group count below 1, a padding below 0,
        a flag other than 0 or 1, a broken constraint (``C_in`` not divisible by ``G``), a derived size below 1
        or a count that is negative or not a whole number. Checks what the given values determine; the rest stays
        symbolic.

        Raises:
            FormulaError: naming the value and the range it must be in.
        """
        by_name = {s.name: s for s in self.symbols}
        for name, value in values.items():
            symbol = by_name.get(name)
            if symbol is not None and is_flag(symbol) and value not in (0, 1):
                raise FormulaError(
                    f"{self.name}: {name} = {value}, but {name} is a 0/1 flag; give {name}=0 or {name}=1"
                )
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


def _restated(text: str, subs: Mapping[sp.Symbol, sp.Expr]) -> str:
    """A constraint's description with each substituted symbol written as what replaces it."""
    if not subs:
        return text
    by_name = {symbol.name: to_text(sp.sympify(expr)) for symbol, expr in subs.items()}
    names = "|".join(re.escape(name) for name in sorted(by_name, key=len, reverse=True))
    return re.sub(rf"(?<!\w)({names})(?!\w)", lambda found: by_name[found[1]], text)


def _fraction(value: int | sp.Rational) -> Fraction:
    return Fraction(value) if isinstance(value, int) else Fraction(int(value.p), int(value.q))


def _sympify_values(values: Mapping[sp.Symbol, Number]) -> dict[sp.Symbol, sp.Expr]:
    return {s: sp.sympify(v) for s, v in values.items()}


def ratio(numerator: sp.Expr, denominator: sp.Expr) -> sp.Expr:
    """The simplified ratio of two formulas, as a sum of simple terms where sympy can write it so."""
    return sp.expand(sp.simplify(sp.sympify(numerator) / sp.sympify(denominator)))
