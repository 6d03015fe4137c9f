"""Closed-form counts over symbolic input sizes, on top of torch's own symbolic shapes.

A dimension written as a name (``3xHxW``) becomes a backed ``SymInt`` of a ``ShapeEnv``: torch's fake-tensor
kernels propagate it through the model, the operator rules and the layer formulas multiply it like a number,
and every count comes out as an expression in the user's symbols. Each symbol has a *hint* (a concrete value
torch uses where the model branches on a size); every branch taken is recorded as a guard, and the closed form
is exact wherever all guards hold. :meth:`ClosedForm.evaluate` checks them and refuses a point outside them.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from typing import Any

import sympy as sp
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv
from torch.utils._sympy import functions as torch_sympy

from flopcalc.errors import FlopcalcError
from flopcalc.exact import compile_exact, compile_integer

DEFAULT_HINTS = (229, 233, 239, 241, 251, 257)
"""Hints for spatial or sequence symbols: distinct, odd and prime, so that no divisibility or equality between
two sizes is taken for granted, and near 224 so that typical models accept them."""

BATCH_HINT = 3

_LAYOUT_ONLY = ("fake_impls.py", " in conv")
"""Guards raised where fake convolution picks a memory layout (e.g. ``N >= 16``); they do not change counts."""

_SCAN_LIMIT = 4096


class ConditionError(FlopcalcError, ValueError):
    """A closed form was evaluated at a point where one of its conditions does not hold."""


class SymbolicTraceError(FlopcalcError):
    """The model cannot be counted in closed form (it fixes a size, or branches on data).

    ``concrete`` holds the report at the hints instead (``None`` if even that failed): a concrete count, never
    a wrong formula.
    """

    def __init__(self, message: str, concrete: Any = None):
        super().__init__(message)
        self.concrete = concrete


def user_symbol(name: str) -> sp.Symbol:
    return sp.Symbol(name, integer=True, positive=True)


def _floor_division(a: sp.Expr, b: sp.Expr) -> sp.Expr:
    return sp.floor(a / b)


_PLAIN_REWRITES: dict[type, Callable[..., sp.Expr]] = {
    torch_sympy.FloorDiv: _floor_division,
    torch_sympy.CleanDiv: _floor_division,  # a FloorDiv known to divide exactly: written like any other
    torch_sympy.PythonMod: lambda a, b: sp.Mod(a, b),
    torch_sympy.IntTrueDiv: lambda a, b: a / b,
}
_TORCH_FUNCTIONS = tuple(_PLAIN_REWRITES)


def _to_plain_sympy(expr: sp.Expr) -> sp.Expr:
    """torch's integer-division functions rewritten as sympy ``floor``/``Mod``, which print and lambdify."""
    return _rewritten(expr) if expr.has(*_TORCH_FUNCTIONS) else expr


def _rewritten(expr: sp.Basic) -> sp.Basic:
    """``expr`` rebuilt bottom-up with each torch function replaced (one pass, as ``Basic.replace`` would do it
    once per function)."""
    args = expr.args
    if not args:
        return expr
    new_args = tuple(_rewritten(arg) for arg in args)
    rewrite = _PLAIN_REWRITES.get(type(expr))
    if rewrite is not None:
        return rewrite(*new_args)
    return expr.func(*new_args) if new_args != args else expr


class SymbolicShapes:
    """The ShapeEnv and fake-tensor mode of one symbolic analysis, and the map back to the user's names."""

    def __init__(self, hints: Mapping[str, int] | None = None):
        self.shape_env = ShapeEnv(duck_shape=False)
        self.fake_mode = FakeTensorMode(shape_env=self.shape_env, allow_non_fake_inputs=True)
        # The op counter's memo (flopcalc.measure.repeats) replays repeated ops above this mode, so torch's own
        # cache of fake ops would only add work: on a first run it builds and checks an entry (the output
        # rebuilt with symbolic stride arithmetic), about a third of a language model's closed form.
        self.fake_mode.cache_enabled = False
        self._requested_hints = dict(hints or {})
        self._symints: dict[str, torch.SymInt] = {}
        self._names: dict[sp.Symbol, sp.Symbol] = {}
        self.hints: dict[str, int] = {}
        self._exprs: dict[sp.Basic, Any] = {}

    def symint(self, name: str, batch: bool = False) -> torch.SymInt:
        """The size named ``name`` (one SymInt per name, so ``3xSxS`` means a square input)."""
        if name not in self._symints:
            default = BATCH_HINT if batch else DEFAULT_HINTS[len(self.hints) % len(DEFAULT_HINTS)]
            hint = self._requested_hints.get(name, default)
            if hint < 2:
                raise ConditionError(f"the hint for {name} must be at least 2 (torch specialises sizes 0 and 1)")
            from torch._dynamo.source import ConstantSource  # imports all of torch._dynamo: closed forms only

            source = ConstantSource(name)
            symbol = self.shape_env.create_symbol(hint, source=source, dynamic_dim=DimDynamic.DYNAMIC)
            self._symints[name] = self.shape_env.create_symintnode(symbol, hint=hint, source=source)
            self._names[symbol] = user_symbol(name)
            self.hints[name] = hint
        return self._symints[name]

    def specialized(self) -> dict[str, str]:
        """Names the model pinned to one value (e.g. ViT asserts H == 224)."""
        pinned = {}
        for symbol, user in self._names.items():
            replacement = self.shape_env.replacements.get(symbol)
            value_range = self.shape_env.var_to_range.get(symbol)
            if replacement is not None and replacement.is_number:  # torch's recorded location is our tracer's frame
                pinned[user.name] = f"{user.name} = {replacement}"
            elif value_range is not None and value_range.is_singleton():
                pinned[user.name] = f"{user.name} = {value_range.lower}"
        return pinned

    def to_expr(self, value: Any) -> Any:
        """A SymInt (or int, or sympy expression over torch's symbols) as an expression in the user's names."""
        if isinstance(value, torch.SymInt):
            value = value.node.expr
        if not isinstance(value, sp.Basic):
            return value
        found = self._exprs.get(value)
        if found is None:  # the same sizes recur in every layer of a stage: each is rewritten once
            expr = _to_plain_sympy(value.xreplace(self._names))
            found = self._exprs[value] = int(expr) if expr.is_Integer else expr
        return found

    def conditions(self) -> tuple[sp.Basic, ...]:
        """The guards torch recorded, in the user's names, without layout-only ones; deduplicated."""
        found: list[sp.Basic] = []
        for guard in self.shape_env.guards:
            if all(part in str(guard.sloc) for part in _LAYOUT_ONLY):
                continue
            parts = sp.And.make_args(guard.expr)
            for part in parts:
                condition = _to_plain_sympy(part.xreplace(self._names))
                if condition not in found and condition is not sp.true:
                    found.append(condition)
        return tuple(found)


@dataclass(frozen=True)
class ClosedForm:
    """Totals as expressions in the user's symbols, the conditions under which they hold, and the hints used."""

    expressions: Mapping[str, sp.Expr]
    conditions: tuple[sp.Basic, ...]
    hints: Mapping[str, int]

    @property
    def symbols(self) -> tuple[sp.Symbol, ...]:
        return tuple(user_symbol(name) for name in self.hints)

    @cached_property
    def _compiled(self) -> tuple[Callable[[list[int]], list[Any]], Callable[[list[int]], list[Any]]]:
        """The totals and the conditions as functions of one point's sizes."""
        values = _compile(self.symbols, [sp.sympify(e) for e in self.expressions.values()])
        checks = _compile(self.symbols, list(self.conditions) or [sp.true])
        return values, checks

    @cached_property
    def _each_condition(self) -> list[Callable[[list[int]], list[Any]]]:
        """Each condition on its own, for points where one of them cannot be evaluated."""
        return [_compile(self.symbols, [condition]) for condition in self.conditions]

    def violated(self, values: Mapping[str, int]) -> list[str]:
        """The conditions that do not hold at ``values``. A condition that cannot be evaluated there (a guard
        such as ``Mod(1, H//4) != 0`` divides by zero for H < 4) does not hold either."""
        point = self._point(values)
        try:
            results = self._compiled[1](point)
        except ArithmeticError:
            results = [_holds(check, point) for check in self._each_condition]
        return [str(c) for c, ok in zip(self.conditions, results) if not ok]

    def _point(self, values: Mapping[str, int]) -> list[int]:
        missing = [name for name in self.hints if name not in values]
        unknown = [name for name in values if name not in self.hints]
        if missing or unknown:
            raise ConditionError(
                f"evaluate needs exactly the symbols {', '.join(self.hints)}"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unknown {', '.join(unknown)}" if unknown else "")
            )
        wrong = {name: values[name] for name in self.hints if not _is_positive_integer(values[name])}
        if wrong:
            listed = ", ".join(f"{name}={value!r}" for name, value in wrong.items())
            raise ConditionError(f"sizes must be positive integers, got {listed}")
        return [int(values[name]) for name in self.hints]

    def evaluate(self, **values: int) -> dict[str, int]:
        """Every total at one point, e.g. ``evaluate(H=224, W=224)["macs"]``; exact integers.

        Raises :class:`ConditionError` where a condition of the closed form fails there: the model takes
        another branch at that size, so analyse that size concretely instead.
        """
        broken = self.violated(values)
        if broken:
            raise ConditionError(
                f"the closed form does not hold at {values}: {'; '.join(broken)}; analyse that size concretely"
            )
        try:
            results = self._compiled[0](self._point(values))
        except ArithmeticError as exc:
            raise ConditionError(f"the closed form is undefined at {values} ({exc}); analyse that size concretely") from None
        return {key: _exact(value) for key, value in zip(self.expressions, results)}

    def bounds(self) -> dict[str, tuple[int, int | None]]:
        """Per symbol, the range of values (others at their hints) where every condition holds, scanned up to
        4096; ``None`` as the upper end means the scan found no upper limit."""
        return dict(self._bounds)

    @cached_property
    def _bounds(self) -> dict[str, tuple[int, int | None]]:
        """The scan behind :meth:`bounds`, done once: every renderer of a report lists the conditions."""
        found: dict[str, tuple[int, int | None]] = {}
        for name in self.hints:
            if not self.conditions:
                found[name] = (1, None)
                continue
            valid = [v for v in range(1, _SCAN_LIMIT + 1) if not self.violated({**self.hints, name: v})]
            if valid:
                found[name] = (valid[0], None if valid[-1] == _SCAN_LIMIT else valid[-1])
        return found

    def describe_conditions(self) -> list[str]:
        """Human-readable conditions: a lower (and upper) bound per symbol, e.g. ``H >= 63``."""
        lines = []
        for name, (low, high) in self.bounds().items():
            lines.append(f"{name} >= {low}" if high is None else f"{low} <= {name} <= {high}")
        return lines


def _compile(args: tuple[sp.Symbol, ...], exprs: list[sp.Basic]) -> Callable[[list[int]], list[Any]]:
    """Plain integer arithmetic where the expressions allow it (several times faster), else exact rationals."""
    integer = compile_integer(args, exprs)
    if integer is not None:
        return lambda point: integer(*point)
    exact = compile_exact(args, exprs)
    return lambda point: exact(*(Fraction(v) for v in point))


def _holds(check: Callable[[list[int]], list[Any]], point: list[int]) -> bool:
    try:
        return bool(check(point)[0])
    except ArithmeticError:
        return False


def _is_positive_integer(value: Any) -> bool:
    """An integral number (int, numpy or sympy integer; not bool, not 2.0 or 2.9) of at least 1."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 1


def _exact(value: Any) -> int:
    if Fraction(value).denominator != 1:
        raise ConditionError(f"the closed form gave a non-integer {value}")
    return int(value)
