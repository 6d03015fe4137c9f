"""Which formula applies to which module: a registry keyed by module type, resolved along the MRO.

Each layer family registers its formulas (so ``flopcalc formula NAME`` can list them), one *binder* per
module type and one *function binder* per functional call (``F.linear``, ``torch.matmul``, ...) that the
family covers. A binder is the only code that reads a torch module or a call's arguments: it picks the
formula and returns the values of its symbols for one call. A module binder and a function binder of the
same family bind the same formula, so a functional call is checked by the formula that checks its module.

Formulas are plain sympy and register when a family module is imported; binders need torch, so each family
registers them in a function run on the first binder lookup (:meth:`FormulaRegistry.on_first_lookup`). That
keeps ``flopcalc formula`` and ``flopcalc ratio`` free of the torch import. A class from an optional package
(torchvision's ``SqueezeExcitation``) is bound by its qualified name, so that package is never imported for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from flopcalc.formula import Evaluation, LayerFormula, Number

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Bound:
    """A formula with the values of its symbols for one module call; ``backward_flags``, backward flags only
    the binder can read from the module (which layers of a recurrent stack train), join the tracer's."""

    formula: LayerFormula
    values: Mapping[str, Number]
    backward_flags: Mapping[str, int] = field(default_factory=dict)

    def evaluate(self) -> Evaluation:
        return self.formula.evaluate(self.values)


Binder = Callable[["nn.Module", tuple[Any, ...], Mapping[str, Any]], Bound]
FunctionBinder = Callable[[tuple[Any, ...], Mapping[str, Any]], Bound | None]
"""Binds one functional call from its arguments; ``None`` for a form the formula does not cover."""


def argument(args: Sequence[Any], kwargs: Mapping[str, Any], index: int, name: str, default: Any = None) -> Any:
    """A call's argument given by position or by keyword."""
    return args[index] if len(args) > index else kwargs.get(name, default)


class RegistryError(ValueError):
    """A duplicate registration or an unknown formula name."""


class FormulaRegistry:
    """Formulas by name and binders by module type; lookup walks ``type(module).__mro__``."""

    def __init__(self) -> None:
        self._formulas: dict[str, LayerFormula | Callable[[], LayerFormula]] = {}  # a builder until first use
        self._binders: dict[type, Binder] = {}
        self._functions: dict[Any, tuple[str, FunctionBinder]] = {}
        self._named: dict[str, Binder] = {}
        self._pending: list[Callable[[], None]] = []
        self._by_class: dict[type, tuple[Any, Binder | None]] = {}  # binder_for's answer per class and forward

    def add_formula(self, *formulas: LayerFormula) -> None:
        for formula in formulas:
            self._add(formula.name, formula)

    def add_builders(self, builders: Mapping[str, Callable[[], LayerFormula]]) -> None:
        """Register formulas costly to build (sympy factoring totals, ``Min`` of floors) by name and a cached
        builder, in the order given: each is built on first use (:meth:`formula`, :attr:`formulas`, a binder
        calling its builder), so an analysis builds only the formulas its layers need."""
        for name, build in builders.items():
            self._add(name, build)

    def _add(self, name: str, formula: LayerFormula | Callable[[], LayerFormula]) -> None:
        if name in self._formulas:
            raise RegistryError(f"duplicate formula name {name!r}")
        self._formulas[name] = formula

    def bind(self, module_types: Iterable[type | str] | type | str, binder: Binder) -> Binder:
        """Use ``binder`` for these module classes, given as classes or as qualified names
        (``"torchvision.ops.misc.SqueezeExcitation"``) for classes of packages that may not be installed."""
        types = (module_types,) if isinstance(module_types, type | str) else tuple(module_types)
        for module_type in types:
            table: dict[Any, Binder] = self._named if isinstance(module_type, str) else self._binders
            if module_type in table:
                raise RegistryError(f"duplicate binder for {getattr(module_type, '__qualname__', module_type)}")
            table[module_type] = binder
        self._by_class.clear()
        return binder

    def bind_functions(self, functions: Mapping[Any, str], binder: FunctionBinder) -> FunctionBinder:
        """Register ``binder`` for each function, shown in reports under its label (``{F.linear: "F.linear"}``)."""
        for function, label in functions.items():
            if function in self._functions:
                raise RegistryError(f"duplicate binder for {label}")
            self._functions[function] = (label, binder)
        return binder

    def function_binders(self) -> Mapping[Any, tuple[str, FunctionBinder]]:
        """Every registered function's label and binder, read-only (for a caller that looks up many calls)."""
        self._ready()
        return MappingProxyType(self._functions)

    def on_first_lookup(self, register: Callable[[], None]) -> Callable[[], None]:
        """Run ``register`` (which imports torch and calls :meth:`bind` and :meth:`bind_functions`) before the first
        binder lookup."""
        self._pending.append(register)
        return register

    def _ready(self) -> None:
        while self._pending:
            self._pending.pop(0)()

    def _lookup(self, klass: type) -> Binder | None:
        found = self._binders.get(klass)
        if found is None and self._named:
            found = self._named.get(f"{klass.__module__}.{klass.__qualname__}")
        return found

    def binder_for(self, module: nn.Module) -> Binder | None:
        """The binder of the nearest registered class in the MRO, if the module still runs that class's
        ``forward``: a subclass that overrides ``forward`` (torchvision's ``LayerNorm2d`` permutes around
        ``F.layer_norm``) computes something else, so it gets no inherited formula and is measured instead."""
        self._ready()
        cls = type(module)
        known = self._by_class.get(cls)
        if known is None or known[0] is not cls.forward:  # a class whose forward was replaced is looked up again
            known = self._by_class[cls] = (cls.forward, self._binder_for_class(cls))
        return known[1]

    def _binder_for_class(self, cls: type) -> Binder | None:
        for klass in cls.__mro__:
            binder = self._lookup(klass)
            if binder is not None:
                return binder if cls.forward is klass.forward else None
        return None

    @property
    def formulas(self) -> Mapping[str, LayerFormula]:
        """Every formula by name, in registration order (building those not built yet)."""
        for name in self._formulas:
            self.formula(name)
        return MappingProxyType(self._formulas)  # type: ignore[arg-type]  (every entry is built now)

    def formula(self, name: str) -> LayerFormula:
        try:
            found = self._formulas[name]
        except KeyError:
            known = ", ".join(sorted(self._formulas))
            raise RegistryError(f"unknown formula {name!r}; known formulas: {known}") from None
        if not isinstance(found, LayerFormula):
            found = self._formulas[name] = found()
            if found.name != name:
                raise RegistryError(f"the builder {name!r} made the formula {found.name!r}")
        return found

    def extended(self, extra: Mapping[type, Binder]) -> FormulaRegistry:
        """A copy with ``extra`` binders taking precedence; the original is left untouched."""
        self._ready()
        copy = FormulaRegistry()
        copy._formulas = dict(self._formulas)
        copy._binders = dict(self._binders)
        copy._named = dict(self._named)
        copy._binders.update(extra)
        copy._functions = dict(self._functions)
        return copy


REGISTRY = FormulaRegistry()
"""The default registry, filled by the modules of :mod:`flopcalc.layers` when they are imported."""
