"""What a forward pass is fed: shapes (with dtypes) to synthesise, or the user's own example inputs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from flopcalc.errors import InputError

Dim = int | str
"""A size: a positive integer, or a name such as ``"H"`` for a closed form over that size."""

DimResolver = Callable[[str, bool], Any]
"""Turns a named dimension into a symbolic size; the flag says whether it is the batch dimension."""


@dataclass(frozen=True)
class InputSpec:
    """One tensor to create: its full shape (batch included) and dtype. Subclasses may build another object
    from these in ``make`` (e.g. a KV cache holding tensors of this shape)."""

    shape: tuple[Dim, ...]
    dtype: torch.dtype = torch.float32

    @property
    def is_symbolic(self) -> bool:
        return any(isinstance(d, str) for d in self.shape)

    def make(
        self, device: torch.device | str, resolve: DimResolver | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """A tensor of this spec; integer tensors are zeros so they are valid indices for any embedding. Random
        values come from ``generator`` (the global RNG when ``None``)."""
        shape = [resolve(d, i == 0) if isinstance(d, str) and resolve else d for i, d in enumerate(self.shape)]
        try:
            if self.dtype.is_floating_point or self.dtype.is_complex:
                if torch.device(device).type == "meta" or self.is_symbolic:
                    return torch.empty(shape, dtype=self.dtype, device=device)
                return torch.randn(shape, dtype=self.dtype, device=device, generator=generator)
            return torch.zeros(shape, dtype=self.dtype, device=device)
        except (RuntimeError, MemoryError) as exc:  # out of memory, or a dtype the device cannot hold
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(
                f"cannot create the input {'x'.join(map(str, self.shape))} ({str(self.dtype).removeprefix('torch.')}) "
                f"on {device}: {first}; the meta device needs no memory for it"
            ) from None


@dataclass(frozen=True)
class InputLabel:
    """How one input tensor is passed: ``keyword`` (``""`` for a positional argument) and its ``dtype`` name."""

    keyword: str
    dtype: str


@dataclass(frozen=True)
class ModelInputs:
    """Positional and keyword arguments of one forward call, as specs or real tensors (or other values)."""

    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def materialize(
        self, device: torch.device | str, convert: Any = None, resolve: DimResolver | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Create the spec tensors on ``device`` (named dims through ``resolve``, random values from
        ``generator``); pass real tensors through ``convert`` (e.g. to fake tensors)."""

        def build(value: InputSpec | torch.Tensor) -> Any:
            if isinstance(value, InputSpec):
                return value.make(device, resolve, generator)
            return convert(value) if convert else value

        return self._map(build)

    @property
    def is_symbolic(self) -> bool:
        return any(isinstance(d, str) for shape in self.shapes for d in shape)

    def with_sizes(self, sizes: Mapping[str, int]) -> ModelInputs:
        """The same inputs with named dimensions replaced by ``sizes``."""

        def concrete(value: InputSpec | torch.Tensor) -> Any:
            if isinstance(value, InputSpec):
                return dataclasses.replace(value, shape=tuple(sizes[d] if isinstance(d, str) else d for d in value.shape))
            return value

        return ModelInputs(*self._map(concrete))

    @property
    def shapes(self) -> tuple[tuple[Dim, ...], ...]:
        """Shapes of every tensor or spec, in argument order."""
        found: list[tuple[Dim, ...]] = []

        def collect(value: InputSpec | torch.Tensor) -> Any:
            found.append(tuple(value.shape))
            return value

        self._map(collect)
        return tuple(found)

    @property
    def labels(self) -> tuple[InputLabel, ...]:
        """Per tensor or spec, in the order of :attr:`shapes`: the keyword it is passed as (``""`` when
        positional) and its dtype."""
        found: list[InputLabel] = []

        def collect(keyword: str) -> Callable[[InputSpec | torch.Tensor], Any]:
            def label(value: InputSpec | torch.Tensor) -> Any:
                found.append(InputLabel(keyword, str(value.dtype).removeprefix("torch.")))
                return value

            return label

        _map_leaves(self.args, collect(""))
        for keyword, value in self.kwargs.items():
            _map_leaves(value, collect(keyword))
        return tuple(found)

    def _map(self, leaf: Callable[[InputSpec | torch.Tensor], Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Arguments with every spec and tensor replaced by ``leaf(it)``, through nested lists, tuples and dicts."""
        return _map_leaves(self.args, leaf), {k: _map_leaves(v, leaf) for k, v in self.kwargs.items()}


def _map_leaves(value: Any, leaf: Callable[[InputSpec | torch.Tensor], Any]) -> Any:
    if isinstance(value, InputSpec | torch.Tensor):
        return leaf(value)
    if isinstance(value, list | tuple):
        return type(value)(_map_leaves(v, leaf) for v in value)
    if isinstance(value, Mapping):
        return {k: _map_leaves(v, leaf) for k, v in value.items()}
    return value


def _is_shape(value: Any) -> bool:
    return isinstance(value, torch.Size) or (
        isinstance(value, tuple | list) and len(value) > 0 and all(isinstance(d, int | str) for d in value)
    )


def to_model_inputs(inputs: Any, kwargs: Mapping[str, Any] | None = None) -> ModelInputs:
    """Normalise what a user passes to :func:`flopcalc.analyze`.

    Accepted: a shape with batch ``(1, 3, 224, 224)``; a list of shapes for several inputs; an
    :class:`InputSpec` or a list of them; a tensor or a tuple/list of tensors (and other values); a dict of
    keyword arguments; a :class:`ModelInputs`.
    """
    kwargs = dict(kwargs or {})
    if isinstance(inputs, ModelInputs):
        return ModelInputs(inputs.args, {**inputs.kwargs, **kwargs})
    if inputs is None:
        return ModelInputs((), kwargs)
    if _is_shape(inputs):
        return ModelInputs((_spec(inputs),), kwargs)
    if isinstance(inputs, InputSpec | torch.Tensor):
        return ModelInputs((inputs,), kwargs)
    if isinstance(inputs, Mapping):
        return ModelInputs((), {**inputs, **kwargs})
    if isinstance(inputs, Sequence) and not isinstance(inputs, str):
        return ModelInputs(tuple(_spec(v) if _is_shape(v) else v for v in inputs), kwargs)
    raise InputError(
        f"cannot use {type(inputs).__name__} as model input; pass a shape with batch such as (1, 3, 224, 224), "
        "a list of shapes, example tensors, or a dict of keyword arguments"
    )


def _spec(shape: Sequence[Dim]) -> InputSpec:
    dims = tuple(d if isinstance(d, str) else int(d) for d in shape)
    for d in dims:
        if isinstance(d, str) and not d.isidentifier():
            raise InputError(f"input shape {dims}: {d!r} is not a valid symbol name; use a name such as H or W")
        if isinstance(d, int) and d <= 0:
            raise InputError(f"input shape {dims} has a dimension <= 0; every dimension must be a positive integer")
    return InputSpec(dims)
