"""Rearrangements: nn.PixelShuffle, nn.PixelUnshuffle and nn.ChannelShuffle.

Symbols: ``S_1 … S_r`` the input's sizes (any leading batch dimensions, then ``C, H, W``), ``r`` the upscale or
downscale factor.

Conventions (docs/conventions.md): each output element is one input element moved to another place, so these
layers cost no MACs and no operations; what they cost is memory traffic, which the roofline measures as the
bytes their copy reads and writes (a data-movement op). PixelShuffle maps ``(*, C·r², H, W)`` to
``(*, C, H·r, W·r)``, PixelUnshuffle the reverse; ChannelShuffle permutes the channels within the shape.
Backward: the gradient of a rearrangement is the inverse rearrangement of the output gradient (PixelShuffle's
is PixelUnshuffle), again data movement: no arithmetic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

import sympy as sp

from flopcalc.formula import Gradient, LayerFormula, dims
from flopcalc.layers.activation import any_rank, elementwise, shape_symbols
from flopcalc.registry import REGISTRY, Bound

if TYPE_CHECKING:
    from torch import nn

r = dims("r")

_MOVED_BACK = Gradient()
"""The gradient of a rearrangement is the output gradient rearranged back: data movement, no arithmetic."""


def _rearrangement(name: str, description: str) -> LayerFormula:
    return dataclasses.replace(elementwise(name, description), grad_input=_MOVED_BACK)


PIXEL_SHUFFLE = _rearrangement(
    "pixel_shuffle", "PixelShuffle: (*, C·r², H, W) to (*, C, H·r, W·r), each element moved, no arithmetic")
PIXEL_UNSHUFFLE = _rearrangement(
    "pixel_unshuffle", "PixelUnshuffle: (*, C, H·r, W·r) to (*, C·r², H, W), each element moved, no arithmetic")
CHANNEL_SHUFFLE = _rearrangement(
    "channel_shuffle", "ChannelShuffle: the channels permuted across groups, each element moved, no arithmetic")

REGISTRY.add_formula(PIXEL_SHUFFLE, PIXEL_UNSHUFFLE, CHANNEL_SHUFFLE)


@cache
def _output_shape(rank: int, upscale: bool) -> tuple[sp.Expr, ...]:
    """The output sizes of a rank-``rank`` input, over its ``S_i`` and ``r``."""
    *batch, channels, height, width = shape_symbols(rank)
    if upscale:
        return (*batch, channels / r**2, height * r, width * r)
    return (*batch, channels * r**2, height / r, width / r)


def bind_pixel_shuffle(module: nn.PixelShuffle | nn.PixelUnshuffle, args: tuple[Any, ...],
                       kwargs: Mapping[str, Any]) -> Bound:
    from torch import nn

    shape = tuple(args[0].shape)
    if isinstance(module, nn.PixelShuffle):
        formula, factor = PIXEL_SHUFFLE, module.upscale_factor
    else:
        formula, factor = PIXEL_UNSHUFFLE, module.downscale_factor
    output = _output_shape(len(shape), formula is PIXEL_SHUFFLE)
    return any_rank(formula, shape, output_shape=output, values={"r": factor})


def bind_channel_shuffle(module: nn.ChannelShuffle, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    return any_rank(CHANNEL_SHUFFLE, tuple(args[0].shape))


@REGISTRY.on_first_lookup
def _bind() -> None:
    from torch import nn

    REGISTRY.bind((nn.PixelShuffle, nn.PixelUnshuffle), bind_pixel_shuffle)
    REGISTRY.bind(nn.ChannelShuffle, bind_channel_shuffle)
