"""What a report keeps about each module call beyond its counts, so that other counters' conventions can be
applied to it afterwards (:mod:`flopcalc.conventions`) without a second forward pass.

Two small records per call: the module's :class:`ModuleFacts` (class lineage, plain hyperparameters, parameter
names) read when the call opens, and one :class:`OpTally` per aten op the call itself executed (calls, first
argument and result elements, the count flopcalc's rule gave). Both are cheap: a scan of the module's
``__dict__`` per call and a few integer additions per op.
"""

from __future__ import annotations

import functools
import math
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.parameter import is_lazy

from flopcalc.measure.core import ZERO, Count, RuleFailed

_PLAIN = frozenset({bool, int, float, str, type(None)})


def _plain(value: Any) -> bool:
    kind = type(value)
    return kind in _PLAIN or (kind is tuple and all(type(v) in _PLAIN for v in value))


@dataclass(frozen=True)
class ModuleFacts:
    """The module of a call, as the conventions of other counters see it.

    ``classes`` is the class lineage (most derived first) as ``module.QualName``; ``attributes`` the plain
    hyperparameters (numbers, strings, flags, tuples of those) in the module's ``__dict__``; ``parameters`` its
    own parameters (not its children's) as ``(name, numel)``; ``leaf`` whether it has no child modules at all;
    ``tree_paths`` the number of paths from the model to the module through ``children()`` (2 for a module
    that two parents hold), which is how often a counter that sums its totals parent by parent counts it.
    """

    classes: tuple[str, ...]
    attributes: Mapping[str, Any]
    parameters: tuple[tuple[str, int], ...]
    leaf: bool
    tree_paths: int = 1
    held_functionals: frozenset[str] = frozenset()
    """Functions of ``torch.nn.functional`` the module keeps as attributes (transformers' GELUActivation keeps
    ``F.gelu``): taken at construction, before a counter patched ``F``, so calling them counts nothing there."""

    @property
    def type(self) -> str:
        return self.classes[0].rsplit(".", 1)[-1]

    def is_exactly(self, *qualified: str) -> bool:
        """The module's own class is one of ``qualified`` (e.g. ``torch.nn.modules.conv.Conv2d``)."""
        return self.classes[0] in qualified

    def derives_from(self, *qualified: str) -> bool:
        """Some class in the lineage is one of ``qualified``."""
        return any(cls in qualified for cls in self.classes)

    def get(self, name: str, default: Any = None) -> Any:
        return self.attributes.get(name, default)

    def has_parameter(self, name: str) -> bool:
        return any(own == name for own, _ in self.parameters)


@functools.cache
def _lineage(cls: type) -> tuple[str, ...]:
    return tuple(f"{base.__module__}.{base.__qualname__}" for base in cls.__mro__)


def module_facts(module: nn.Module, tree_paths: int = 1) -> ModuleFacts:
    """Read ``module``'s :class:`ModuleFacts` (never changes the module)."""
    classes = _lineage(type(module))
    attributes: dict[str, Any] = {}
    held: list[str] = []
    for name, value in vars(module).items():  # one scan of the module's attributes for both
        if name[0] != "_" and _plain(value):
            attributes[name] = value
        elif id(value) in _FUNCTIONALS:
            held.append(_FUNCTIONALS[id(value)])
    parameters = tuple(  # a lazy module's parameters have no size until its first call materialises them
        (name, 0 if is_lazy(p) else p.numel()) for name, p in module._parameters.items() if p is not None
    )
    return ModuleFacts(classes, MappingProxyType(attributes), parameters, not module._modules, tree_paths,
                       frozenset(held))


_FUNCTIONALS = {id(value): name for name, value in vars(F).items()
                if isinstance(value, types.FunctionType | types.BuiltinFunctionType) and not name.startswith("_")}
"""``torch.nn.functional``'s public functions by identity (``gelu`` for ``F.gelu``)."""


def tree_paths(model: nn.Module) -> dict[int, int]:
    """Per module (by ``id``), the number of paths from ``model`` to it through ``children()``, which lists a
    child once per parent. 1 everywhere in a tree; a module held by two parents has 2, and so do its children.
    Only modules with more than one path are listed."""
    order: list[nn.Module] = []  # every module after all of its parents
    seen: set[int] = set()

    def children(module: nn.Module) -> Iterable[nn.Module]:  # module.children(), without its generators
        return dict.fromkeys(child for child in module._modules.values() if child is not None)

    def visit(module: nn.Module) -> None:
        seen.add(id(module))
        for child in children(module):
            if id(child) not in seen:
                visit(child)
        order.append(module)

    visit(model)
    paths = {id(model): 1}
    for module in reversed(order):
        for child in children(module):
            paths[id(child)] = paths.get(id(child), 0) + paths[id(module)]
    return {key: count for key, count in paths.items() if count > 1}


def _numel(value: Any) -> int:
    if isinstance(value, list | tuple) and value:
        value = value[0]
    if isinstance(value, torch.Tensor) and not is_lazy(value):
        return value.numel() if value.is_nested else math.prod(value.shape)  # a nested tensor has no one shape
    return 0


@dataclass
class OpTally:
    """Every run of one aten op (by overload packet, e.g. ``aten.convolution``) inside one module call.

    ``input_elements`` sums the elements of each run's first tensor argument, ``output_elements`` those of its
    (first) result, ``pooled_input_elements`` the input elements of the runs whose result keeps the input's
    rank (3 or more) with its last two dimensions 1: a ``mean`` with ``keepdim`` that is what
    ``adaptive_avg_pool2d(x, 1)`` becomes, not a norm's mean over the last dimension. ``count`` is what
    flopcalc's rule counted (MACs and other ops), ``uncounted`` the runs that had no rule.
    """

    calls: int = 0
    input_elements: int = 0
    output_elements: int = 0
    pooled_input_elements: int = 0
    count: Count = ZERO
    uncounted: int = 0

    def add(self, count: Count | RuleFailed | None, args: Sequence[Any], out: Any) -> None:
        self.calls += 1
        tensor = next((a for a in args if isinstance(a, torch.Tensor)), None)
        first = 0 if tensor is None else _numel(tensor)
        self.input_elements += first
        self.output_elements += _numel(out)
        if tensor is not None and isinstance(out, torch.Tensor) and out.dim() == tensor.dim() >= 3 \
                and not out.is_nested and tuple(out.shape[-2:]) == (1, 1):
            self.pooled_input_elements += first
        if not isinstance(count, Count):
            self.uncounted += 1
        else:
            self.count = self.count + count


@functools.cache
def op_name(func: Any) -> str:
    """``aten.addmm`` for any overload of ``aten::addmm``."""
    return str(getattr(func, "overloadpacket", func))
