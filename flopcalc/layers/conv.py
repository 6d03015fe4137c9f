"""Convolution in every form: standard, depthwise, pointwise, group, dilated, strided, transposed; 1-, 2- and 3-d.

One general formula per (dimensionality, transposed) pair; depthwise (``G = C_in``) and pointwise
(``K = 1``) are substitutions into it, and group convolution is the general formula itself.

Symbols: ``N`` batch, ``C_in``/``C_out`` channels, ``G`` groups, ``B`` 1 if the layer has a bias; per spatial
dimension ``X`` (``L``; ``H, W``; ``D, H, W``): size ``X``, kernel ``K_x``, stride ``s_x``, padding per side
``p_x``, dilation ``d_x``, output padding ``o_x`` (transposed only) and output size ``X_out``.

Conventions (docs/conventions.md): a MAC is one multiply-accumulate of a weight with an input; the bias is
``N·C_out·prod(X_out)`` separate adds. A transposed convolution scatters every *input* position through the
kernel, so its MACs follow the input volume: ``N·C_in·prod(X)·(C_out/G)·prod(K)``.

Backward (docs/conventions.md, "Backward"): grad-input and grad-weight each cost the forward's MACs (the
flags ``g_x``, ``g_W`` say whether autograd computes them), the bias gradient ``C_out·(N·prod(X_out) − 1)`` adds.

>>> CONV2D.substituted("params", {"C_in": 3, "C_out": 64, "K_h": 11, "K_w": 11, "G": 1, "B": 1})
'3·64·11·11 + 64 = 23,296'
>>> from flopcalc.printing import to_text
>>> to_text(depthwise_separable_ratio())
'1/M + 1/K**2'
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import sympy as sp

from flopcalc.formula import Gradient, LayerFormula, OpKind, dims, flag, g_b, g_W, g_x, ratio
from flopcalc.registry import REGISTRY, Bound, argument

if TYPE_CHECKING:
    from torch import nn

N, C_in, C_out, G = dims("N C_in C_out G")
B = flag("B")

SPATIAL_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


@functools.cache
def spatial_symbols(ndim: int) -> Mapping[str, tuple[sp.Symbol, ...]]:
    """Per-dimension symbols of an ``ndim``-d convolution, keyed by role (made once per ``ndim``: every
    conv call binds through them)."""
    names = SPATIAL_NAMES[ndim]
    suffixes = [name.lower() for name in names]
    padding = tuple(sp.Symbol(f"p_{x}", integer=True, nonnegative=True) for x in suffixes)
    output_padding = tuple(sp.Symbol(f"o_{x}", integer=True, nonnegative=True) for x in suffixes)
    return MappingProxyType({
        "size": tuple(sp.Symbol(name, integer=True, positive=True) for name in names),
        "kernel": tuple(sp.Symbol(f"K_{x}", integer=True, positive=True) for x in suffixes),
        "stride": tuple(sp.Symbol(f"s_{x}", integer=True, positive=True) for x in suffixes),
        "padding": padding,
        "dilation": tuple(sp.Symbol(f"d_{x}", integer=True, positive=True) for x in suffixes),
        "output_padding": output_padding,
        "out": tuple(sp.Symbol(f"{name}_out", integer=True, positive=True) for name in names),
    })


@functools.cache
def conv_formula(ndim: int, transposed: bool) -> LayerFormula:
    """The ``ndim``-d convolution, or transposed convolution; built once, on first use but for ``CONV2D``."""
    sym = spatial_symbols(ndim)
    kernel_volume = sp.Mul(*sym["kernel"])
    out_volume = sp.Mul(*sym["out"])
    in_volume = sp.Mul(*sym["size"])
    if transposed:
        # Each input position is multiplied by the whole (C_out/G)·prod(K) slice of the kernel.
        macs = N * in_volume * C_in * (C_out / G) * kernel_volume
        out_size = {
            o: (x - 1) * s - 2 * p + d * (k - 1) + op + 1
            for o, x, s, p, d, k, op in zip(
                sym["out"], sym["size"], sym["stride"], sym["padding"], sym["dilation"], sym["kernel"],
                sym["output_padding"],
            )
        }
        kind = "conv_transpose"
    else:
        # Each output position is a dot product over a (C_in/G)·prod(K) window.
        macs = N * out_volume * C_out * (C_in / G) * kernel_volume
        out_size = {
            o: sp.floor((x + 2 * p - d * (k - 1) - 1) / s) + 1
            for o, x, s, p, d, k in zip(
                sym["out"], sym["size"], sym["stride"], sym["padding"], sym["dilation"], sym["kernel"]
            )
        }
        kind = "conv"
    return LayerFormula(
        name=f"{kind}{ndim}d",
        description=f"{'Transposed ' if transposed else ''}{ndim}-d convolution (nn.{'ConvTranspose' if transposed else 'Conv'}{ndim}d)",
        params=C_in * (C_out / G) * kernel_volume + B * C_out,
        macs=macs,
        ops={OpKind.BIAS_ADD: B * N * C_out * out_volume},
        output_shape=(N, C_out, *sym["out"]),
        intermediates=out_size,
        # Grad-input pairs every output gradient with the weights it was made from, grad-weight with the
        # inputs: each the forward's MACs. The bias gradient sums dY over batch and output positions.
        grad_input=Gradient(macs=g_x * macs),
        grad_weight=Gradient(macs=g_W * macs, ops={OpKind.ADD: g_b * C_out * (N * out_volume - 1)}),
        defaults={  # nn.Conv*d's: stride 1, no padding, no dilation, one group, a bias; one sample
            N: 1, G: 1, B: 1, **dict.fromkeys((*sym["stride"], *sym["dilation"]), 1),
            **dict.fromkeys((*sym["padding"], *(sym["output_padding"] if transposed else ())), 0),
        },
        constraints={  # torch refuses other group counts
            "C_in divisible by G": sp.Eq(sp.Mod(C_in, G), 0), "C_out divisible by G": sp.Eq(sp.Mod(C_out, G), 0),
        },
    )


CONV2D = conv_formula(2, transposed=False)

_K2 = spatial_symbols(2)["kernel"]
DEPTHWISE_CONV2D = CONV2D.specialize(
    "depthwise_conv2d", "Depthwise 2-d convolution: one filter group per input channel (G = C_in)", {G: C_in}
)
POINTWISE_CONV2D = CONV2D.specialize(
    "pointwise_conv2d", "Pointwise (1×1) 2-d convolution (K_h = K_w = 1)", {_K2[0]: 1, _K2[1]: 1}
)
GROUP_CONV2D = CONV2D.specialize("group_conv2d", "Group 2-d convolution (G groups)", {})

M, K = dims("M K")
"""The symbols of seed report 003's derivation: M output channels, K the (square) kernel size."""


def depthwise_separable_ratio(what: str = "macs") -> sp.Expr:
    """Depthwise (K×K, G = C_in) then pointwise (1×1) over a standard K×K conv, for ``macs`` or ``params``.

    Both sides use the same output size, so H·W·N cancels: HWN(K² + M) / HWNK²M = 1/M + 1/K² for MACs.
    Bias terms are left out (``B = 0``), as in the textbook derivation.
    """
    square = {_K2[0]: K, _K2[1]: K, C_out: M, B: 0}
    depthwise = DEPTHWISE_CONV2D.field_expr(what).xreplace({C_out: C_in})
    pointwise = POINTWISE_CONV2D.field_expr(what).xreplace({G: 1})
    standard = CONV2D.field_expr(what).xreplace({G: 1})
    return ratio((depthwise + pointwise).xreplace(square), standard.xreplace(square))


def group_ratio(what: str = "macs") -> sp.Expr:
    """Group conv (G groups) over a standard conv of the same shape: 1/G for MACs and weights."""
    standard = CONV2D.field_expr(what).xreplace({G: 1, B: 0})
    return ratio(GROUP_CONV2D.field_expr(what).xreplace({B: 0}), standard)


REGISTRY.add_builders({  # the others are built on first use
    **{f"conv{n}d": functools.partial(conv_formula, n, False) for n in (1, 2, 3)},
    **{f"conv_transpose{n}d": functools.partial(conv_formula, n, True) for n in (1, 2, 3)},
})
REGISTRY.add_formula(DEPTHWISE_CONV2D, POINTWISE_CONV2D, GROUP_CONV2D)


def _per_side_padding(padding: Any, kernel: Sequence[int], dilation: Sequence[int]) -> Sequence[sp.Rational]:
    """Padding per side; 'same' pads d·(K−1) in total, which torch may split unevenly (kept exact as a half)."""
    if padding == "valid":
        return [sp.Integer(0)] * len(kernel)
    if padding == "same":
        return [sp.Rational(d * (k - 1), 2) for d, k in zip(dilation, kernel)]
    return [sp.Integer(p) for p in _per_dim(padding, len(kernel))]


def _per_dim(value: Any, ndim: int) -> tuple[Any, ...]:
    """A hyperparameter given as one int or one value per spatial dimension."""
    return tuple(value) if isinstance(value, Sequence) else (value,) * ndim


def _values(input_shape: Sequence[int], c_in: int, c_out: int, groups: int, bias: bool, kernel: Sequence[int],
            stride: Any, padding: Any, dilation: Any, output_padding: Any = None) -> dict[str, Any]:
    """Symbol values of a (transposed, when ``output_padding`` is given) convolution on ``input_shape``."""
    ndim = len(kernel)
    sym = spatial_symbols(ndim)
    spatial = tuple(input_shape[-ndim:])
    batch = input_shape[0] if len(input_shape) == ndim + 2 else 1
    values: dict[str, Any] = {"N": batch, "C_in": c_in, "C_out": c_out, "G": groups, "B": int(bias)}
    dilation = _per_dim(dilation, ndim)
    per_dim = {
        "size": spatial, "kernel": kernel, "stride": _per_dim(stride, ndim), "dilation": dilation,
        "padding": _per_side_padding(padding, kernel, dilation),
    }
    if output_padding is not None:
        per_dim["output_padding"] = _per_dim(output_padding, ndim)
    for role, numbers in per_dim.items():
        values.update({s.name: v for s, v in zip(sym[role], numbers)})
    return values


def conv_values(module: nn.modules.conv._ConvNd, input_shape: Sequence[int]) -> dict[str, Any]:
    """Symbol values of a conv or transposed-conv module applied to ``input_shape`` (batched or not)."""
    return _values(
        input_shape, module.in_channels, module.out_channels, module.groups, module.bias is not None,
        module.kernel_size, module.stride, module.padding, module.dilation,
        module.output_padding if module.transposed else None,
    )


def _pick(ndim: int, transposed: bool, groups: int, c_in: int, kernel: Sequence[int]) -> LayerFormula:
    """The formula of a convolution; a 2-d one is named by its form, so the report says 'depthwise' or
    'pointwise' where it is one."""
    if transposed or ndim != 2:
        return conv_formula(ndim, transposed)
    if groups == c_in and c_in > 1:
        return DEPTHWISE_CONV2D
    if tuple(kernel) == (1, 1):
        return POINTWISE_CONV2D
    return GROUP_CONV2D if groups > 1 else CONV2D


def bind_conv(module: nn.modules.conv._ConvNd, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    ndim = len(module.kernel_size)
    values = conv_values(module, tuple(args[0].shape))
    if module.transposed:
        # An explicit output_size= argument changes the output padding torch uses.
        output_size = args[1] if len(args) > 1 else kwargs.get("output_size")
        if output_size is not None:
            sym = spatial_symbols(ndim)
            padding = module._output_padding(
                args[0], output_size, list(module.stride), list(module.padding), list(module.kernel_size),
                ndim, list(module.dilation),
            )
            values.update({s.name: v for s, v in zip(sym["output_padding"], padding)})
    formula = _pick(ndim, module.transposed, module.groups, module.in_channels, module.kernel_size)
    return Bound(formula, values)


def _bind_f_conv(transposed: bool) -> Callable[[tuple[Any, ...], Mapping[str, Any]], Bound]:
    """Binder of ``F.conv{n}d(input, weight, bias, stride, padding, dilation, groups)`` or of
    ``F.conv_transpose{n}d(input, weight, bias, stride, padding, output_padding, groups, dilation)``."""
    names = ("input", "weight", "bias", "stride", "padding")
    names += ("output_padding", "groups", "dilation") if transposed else ("dilation", "groups")
    defaults = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "output_padding": 0}

    def bind(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
        a = {name: argument(args, kwargs, i, name, defaults.get(name)) for i, name in enumerate(names)}
        weight, groups = a["weight"], a["groups"]
        kernel = tuple(weight.shape[2:])
        # weight is (C_out, C_in/G, *K) for a convolution, (C_in, C_out/G, *K) for a transposed one
        c_in, c_out = (weight.shape[0], weight.shape[1] * groups) if transposed else (weight.shape[1] * groups, weight.shape[0])
        values = _values(tuple(a["input"].shape), c_in, c_out, groups, a["bias"] is not None, kernel, a["stride"],
                         a["padding"], a["dilation"], a["output_padding"] if transposed else None)
        return Bound(_pick(len(kernel), transposed, groups, c_in, kernel), values)

    return bind


@REGISTRY.on_first_lookup
def _bind() -> None:
    import torch.nn.functional as F
    from torch import nn

    convolutions = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    REGISTRY.bind(convolutions, bind_conv)
    REGISTRY.bind_functions({F.conv1d: "F.conv1d", F.conv2d: "F.conv2d", F.conv3d: "F.conv3d"}, _bind_f_conv(False))
    REGISTRY.bind_functions(
        {F.conv_transpose1d: "F.conv_transpose1d", F.conv_transpose2d: "F.conv_transpose2d",
         F.conv_transpose3d: "F.conv_transpose3d"},
        _bind_f_conv(True),
    )
