"""Squeeze-and-excitation: ``x ⊙ σ(W_2·δ(W_1·avgpool(x) + b_1) + b_2)`` (torchvision.ops.SqueezeExcitation).

Composed from the other families, never restated: global average pooling is ``adaptive_avg_pool2d`` with a
1×1 output, the two fully connected layers are ``POINTWISE_CONV2D`` on a 1×1 map (with bias, as torchvision
builds them), ``δ`` and ``σ`` are the activation formulas (ReLU and Sigmoid by default; Hardsigmoid in
MobileNetV3, SiLU in EfficientNet), and the rescaling is one mul per input element.

Symbols: ``N`` batch, ``C`` channels, ``C_sq`` squeeze channels, ``H``, ``W`` the spatial size.

Convention: the block's formula counts the whole block; torchvision calls its parts as modules, so a
per-layer report also has a row for each part, and the block's row is their sum plus the final multiply.

Backward: each part's backward formula, with the flags the block's own flags give it (a part's input needs a
gradient when the block's input or a trainable parameter before it does: ``g_fc1_weight``, ``g_fc1_bias``,
``g_fc2_weight``, ``g_fc2_bias``, a PReLU's ``g_activation_weight``, one per parameter), then the multiply
``x ⊙ s``: ``dx = g·s`` (1 mul per input element, when the input needs a gradient) and ``ds = Σ_{H,W} g·x``
(1 mul per input element and ``H·W − 1`` adds per channel, when ``s`` does). The input's two gradients
(through the pooling and through the multiply) are summed by the autograd engine between nodes, which is
charged to the enclosing row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

import sympy as sp

from flopcalc.formula import Gradient, LayerFormula, Number, OpKind, dims, flag, g_b, g_W, g_x
from flopcalc.layers import activation, conv, pooling
from flopcalc.layers.activation import HARDSIGMOID, RELU, SIGMOID, SILU
from flopcalc.registry import REGISTRY, Bound

if TYPE_CHECKING:
    from torch import nn
    from torchvision.ops import SqueezeExcitation

N, C, C_sq, H, W = dims("N C C_sq H W")
g_fc1_W, g_fc1_b, g_fc2_W, g_fc2_b, g_act_W, g_scale_W = (flag(f"g_{name}") for name in (
    "fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias", "activation_weight", "scale_activation_weight"))
"""Backward flags, one per parameter (``fc1.weight`` is trainable, …; a PReLU activation's slopes)."""

_SPATIAL = conv.spatial_symbols(2)
_ONE_BY_ONE = dict(zip(_SPATIAL["out"], (1, 1)))

_ADAPTIVE_AVG_POOL2D = pooling.adaptive_formula(2, "avg")
POOL = _ADAPTIVE_AVG_POOL2D.specialize(
    "global_avg_pool2d", "Global average pooling to 1×1: H·W taps per channel",
    # window sums T_h, T_w; every output size is 1 (U: torch's mean, whose backward divides per input element)
    {**_ONE_BY_ONE, **dict(zip(_ADAPTIVE_AVG_POOL2D.intermediates, (H, W))), pooling.U: 1},
)


def _fully_connected(c_in: sp.Expr, c_out: sp.Expr) -> LayerFormula:
    """A biased 1×1 convolution on a 1×1 map: a fully connected layer."""
    ones = {**dict(zip(_SPATIAL["size"], (1, 1))), **_ONE_BY_ONE, **dict(zip(_SPATIAL["stride"], (1, 1))),
            **dict(zip(_SPATIAL["padding"], (0, 0))), **dict(zip(_SPATIAL["dilation"], (1, 1)))}
    subs = {conv.C_in: c_in, conv.C_out: c_out, conv.G: 1, conv.B: 1, **ones}
    return conv.POINTWISE_CONV2D.specialize("fully_connected", "", subs)


def _on(formula: LayerFormula, elements: sp.Expr) -> LayerFormula:
    """An elementwise formula applied to ``elements`` values."""
    return formula.specialize(formula.name, formula.description, {activation.E: elements})


def _any_needed(*needed: sp.Expr) -> sp.Expr:
    """1 if any of the 0/1 flags is set."""
    none = sp.Integer(1)
    for each in needed:
        none *= 1 - each
    return 1 - none


def _backward(parts: list[LayerFormula]) -> tuple[Gradient, Gradient]:
    """The block's backward from its parts' (pool, fc1, act, fc2, scale) and the final multiply's."""
    # Whether each part's output needs a gradient: the block's input's, or a trainable parameter up to it.
    after_fc1 = _any_needed(g_x, g_fc1_W, g_fc1_b)
    after_act = _any_needed(after_fc1, g_act_W)
    after_fc2 = _any_needed(after_act, g_fc2_W, g_fc2_b)
    scale = _any_needed(after_fc2, g_scale_W)
    flags = [{g_x: g_x}, {g_x: g_x, g_W: g_fc1_W, g_b: g_fc1_b}, {g_x: after_fc1, g_W: g_act_W},
             {g_x: after_act, g_W: g_fc2_W, g_b: g_fc2_b}, {g_x: after_fc2, g_W: g_scale_W}]
    grad_input: dict[str, sp.Expr] = {OpKind.MUL.value: (g_x + scale) * N * C * H * W,  # g·s and g·x
                                      OpKind.ADD.value: scale * N * C * (H * W - 1)}  # Σ_{H,W} g·x
    grad_weight: dict[str, sp.Expr] = {}
    macs = [sp.Integer(0), sp.Integer(0)]
    for part, subs in zip(parts, flags):
        for i, gradient in enumerate((part.grad_input, part.grad_weight or Gradient())):
            assert gradient is not None
            flagged = gradient.substituted(subs)
            macs[i] += sp.sympify(flagged.macs)
            total = grad_weight if i else grad_input
            for kind, expr in flagged.ops.items():
                total[str(kind)] = total.get(str(kind), sp.Integer(0)) + expr
    return Gradient(macs[0], grad_input), Gradient(macs[1], grad_weight)


def squeeze_excitation(act: LayerFormula, scale: LayerFormula, name: str, description: str) -> LayerFormula:
    """The block with activation ``act`` after the first layer and ``scale`` before the multiply."""
    parts = [POOL, _fully_connected(C, C_sq), _on(act, N * C_sq), _fully_connected(C_sq, C), _on(scale, N * C)]
    ops: dict[str, sp.Expr] = {OpKind.MUL.value: N * C * H * W}  # x ⊙ scale, broadcast over H·W
    for part in parts:
        for kind, expr in part.ops.items():
            ops[str(kind)] = ops.get(str(kind), sp.Integer(0)) + expr
    grad_input, grad_weight = _backward(parts) if all(p.has_backward for p in parts) else (None, None)
    return LayerFormula(
        name=name,
        description=description,
        params=sum((p.params for p in parts), sp.Integer(0)),
        macs=sum((p.macs for p in parts), sp.Integer(0)),
        ops=ops,
        output_shape=(N, C, H, W),
        grad_input=grad_input,
        grad_weight=grad_weight,
    )


SQUEEZE_EXCITATION = squeeze_excitation(
    RELU, SIGMOID, "se", "Squeeze-and-excitation block SE(C, C_sq) with ReLU and Sigmoid (torchvision default)"
)
SQUEEZE_EXCITATION_HARDSIGMOID = squeeze_excitation(
    RELU, HARDSIGMOID, "se_hardsigmoid", "Squeeze-and-excitation with ReLU and Hardsigmoid (MobileNetV3)"
)
SQUEEZE_EXCITATION_SILU = squeeze_excitation(
    SILU, SIGMOID, "se_silu", "Squeeze-and-excitation with SiLU and Sigmoid (EfficientNet)"
)
_BUILT = {(f.name, g.name): se for f, g, se in (
    (RELU, SIGMOID, SQUEEZE_EXCITATION), (RELU, HARDSIGMOID, SQUEEZE_EXCITATION_HARDSIGMOID),
    (SILU, SIGMOID, SQUEEZE_EXCITATION_SILU),
)}

REGISTRY.add_formula(POOL, SQUEEZE_EXCITATION, SQUEEZE_EXCITATION_HARDSIGMOID, SQUEEZE_EXCITATION_SILU)


def _activation(module: nn.Module) -> tuple[LayerFormula, dict[str, Number]]:
    """The registered elementwise formula of an activation module, and the values of its own flags."""
    import torch

    binder = REGISTRY.binder_for(module)
    if binder is None:
        raise TypeError(f"no formula for the activation {type(module).__name__}")
    bound = binder(module, (torch.empty(1, device="meta"),), {})
    own = {s.name for s in bound.formula.symbols} - {s.name for s in activation.shape_symbols(1)}
    return bound.formula, {k: v for k, v in bound.values.items() if k in own}


@cache
def _composed(act_name: str, scale_name: str) -> LayerFormula:
    act, scale = REGISTRY.formula(act_name), REGISTRY.formula(scale_name)
    return _BUILT.get((act_name, scale_name)) or squeeze_excitation(
        act, scale, f"se_{act_name}_{scale_name}",
        f"Squeeze-and-excitation with the {act_name} and {scale_name} formulas",
    )


def bind_squeeze_excitation(module: SqueezeExcitation, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    """A batched ``(N, C, H, W)`` or unbatched ``(C, H, W)`` input."""
    shape = tuple(args[0].shape)
    act, act_values = _activation(module.activation)
    scale, scale_values = _activation(module.scale_activation)
    formula = _composed(act.name, scale.name)
    values = {"N": shape[0] if len(shape) == 4 else 1, "C": shape[-3], "H": shape[-2], "W": shape[-1],
              "C_sq": module.fc1.out_channels, **act_values, **scale_values}
    if len(shape) == 3:
        formula = dataclasses.replace(formula, output_shape=formula.output_shape[1:])
    return Bound(formula, values)


# By name: torchvision is optional, and only a model built from it can contain this class.
REGISTRY.bind("torchvision.ops.misc.SqueezeExcitation", bind_squeeze_excitation)
