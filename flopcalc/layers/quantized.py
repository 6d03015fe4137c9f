"""torch.ao's quantized conv and linear modules: the conv and linear formulas, bound through a float view.

A quantized layer computes what its float counterpart does, on int8 weights; its hyperparameters have the
same names, except that ``bias`` is a method. No formula is written here: the binders of
:mod:`flopcalc.layers.conv` and :mod:`flopcalc.layers.linear` read the module through :class:`_FloatView`.
Fused modules (``ConvReLU2d``, ``LinearReLU``) override ``forward`` and are measured, not bound.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flopcalc.layers.conv import bind_conv
from flopcalc.layers.linear import bind_linear
from flopcalc.registry import REGISTRY, Bound

if TYPE_CHECKING:
    from torch import nn


class _FloatView:
    """A quantized module read as its float counterpart: ``bias`` is the packed bias (or ``None``)."""

    def __init__(self, module: nn.Module):
        self._module = module
        self.bias = module.bias()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def bind_quantized_conv(module: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    return bind_conv(_FloatView(module), args, kwargs)  # type: ignore[arg-type]


def bind_quantized_linear(module: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    return bind_linear(_FloatView(module), args, kwargs)  # type: ignore[arg-type]


@REGISTRY.on_first_lookup
def _bind_modules() -> None:
    import torch.ao.nn.quantized as nnq
    import torch.ao.nn.quantized.dynamic as nnqd

    REGISTRY.bind(
        (nnq.Conv1d, nnq.Conv2d, nnq.Conv3d, nnq.ConvTranspose1d, nnq.ConvTranspose2d, nnq.ConvTranspose3d),
        bind_quantized_conv,
    )
    REGISTRY.bind((nnq.Linear, nnqd.Linear), bind_quantized_linear)
