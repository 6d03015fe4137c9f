"""Pooling (max, average, adaptive), upsampling in every mode, and the layers that do no arithmetic.

Symbols: ``N`` batch, ``C`` channels; per spatial dimension ``X`` (``L``; ``H, W``; ``D, H, W``) the size ``X``,
kernel ``K_x``, stride ``s_x``, padding per side ``p_x``, dilation ``d_x`` (max pooling only), output size
``X_out``; ``c`` is 1 for ``ceil_mode``. Adaptive pools add ``T_x``, the window lengths along ``x`` summed over
the outputs; interpolation adds the scale ``sigma_x`` and ``P``, the taps per dimension.

Conventions (docs/conventions.md). A pool reduces a window of taps to one value: max pooling is
``taps − 1`` comparisons per output, average pooling ``taps − 1`` adds and 1 division per output. For
``MaxPool``/``AvgPool`` a window is the whole kernel, ``prod(K)`` taps, as the kernel is laid over every
output: taps that fall on padding or, with ``ceil_mode``, past the input are counted as if they were real
(they are a fixed-size share of the window, however the kernel skips them), and ``count_include_pad`` or
``divisor_override`` only change the divisor, never the one division. Adaptive pools count their exact,
unequal windows: output ``i`` of ``O`` over an input of ``I`` covers ``[floor(i·I/O), ceil((i+1)·I/O))``,
so ``T = Σ_i (ceil((i+1)·I/O) − floor(i·I/O))``, which equals ``I + O − gcd(I, O)`` and reduces to ``I`` when
``O`` divides ``I``. Windows are products over dimensions, so the total taps are ``N·C·prod(T)``.

Interpolation is a weighted sum of ``P^n`` neighbours per output element (``P = 2`` for linear, bilinear and
trilinear, ``P = 4`` for bicubic): ``P^n`` muls and ``P^n − 1`` adds. The weights, computed once per output
coordinate and shared by every channel, and ``align_corners`` (which moves the sample points, not their
number) are not counted; kernels that interpolate dimension by dimension execute more (torch's bilinear:
6 muls, 3 adds). Nearest and nearest-exact copy one input element per output: no arithmetic. ``area``
mode is adaptive average pooling to the target size. Backward: each output gradient times each of the ``P^n``
weights, added into that neighbour's gradient (``P^n`` mul + ``P^n`` add per output); nearest adds it into its
source (1 add per output).

Identity, Dropout (every variant; inference, where it is the identity), Flatten and Unflatten (views) do
no arithmetic: their formulas have no MACs and no operations.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

import sympy as sp

from flopcalc.formula import Gradient, LayerFormula, OpKind, dims, flag, g_x
from flopcalc.layers.activation import any_rank, elementwise, shape_symbols
from flopcalc.layers.conv import SPATIAL_NAMES, spatial_symbols
from flopcalc.registry import REGISTRY, Bound, FunctionBinder, argument

if TYPE_CHECKING:
    from torch import nn

N, C, P = dims("N C P")
c = flag("c")
U = flag("U")
"""1 when an adaptive pool's every output size is 1 (global pooling: torch computes a mean)."""
i = sp.Symbol("i", integer=True, nonnegative=True)


def _reduce(reduction: str, results: sp.Expr, merges: sp.Expr) -> dict[str, sp.Expr]:
    """Ops of reducing windows into ``results`` values with ``merges`` pairwise steps (taps − results)."""
    if reduction == "max":
        return {OpKind.COMPARE: merges}
    return {OpKind.ADD: merges, OpKind.DIV: results}


def _window_symbols(ndim: int) -> tuple[sp.Symbol, ...]:
    return tuple(sp.Symbol(f"T_{x.lower()}", integer=True, positive=True) for x in SPATIAL_NAMES[ndim])


def _scale_symbols(ndim: int) -> tuple[sp.Symbol, ...]:
    return tuple(sp.Symbol(f"sigma_{x.lower()}", positive=True) for x in SPATIAL_NAMES[ndim])


@cache
def pool_formula(ndim: int, reduction: str) -> LayerFormula:
    """``MaxPool``/``AvgPool`` over ``ndim`` dimensions (``reduction`` ``"max"`` or ``"avg"``)."""
    sym = spatial_symbols(ndim)
    dilation = sym["dilation"] if reduction == "max" else (1,) * ndim
    # floor, or ceil with c = 1 (adding s - 1); torch drops a last window that starts past the input and left
    # padding, i.e. caps X_out - 1 at floor((X + p - 1)/s). The cap never binds when c = 0 since p <= K/2.
    out_size = {
        o: sp.Min(sp.floor((x + 2 * p - d * (k - 1) - 1 + c * (s - 1)) / s), sp.floor((x + p - 1) / s)) + 1
        for o, x, k, s, p, d in zip(sym["out"], sym["size"], sym["kernel"], sym["stride"], sym["padding"], dilation)
    }
    results = N * C * sp.Mul(*sym["out"])
    full = "max" if reduction == "max" else "average"
    # Backward: max pooling adds each output gradient at its argmax; average pooling divides it by the window
    # and adds it into every tap.
    taps = sp.Mul(*sym["kernel"])
    backward = {OpKind.ADD: g_x * results} if reduction == "max" else {
        OpKind.DIV: g_x * results, OpKind.ADD: g_x * results * taps}
    return LayerFormula(
        grad_input=Gradient(ops=backward),
        name=f"{reduction}_pool{ndim}d",
        description=f"{ndim}-d {full} pooling (nn.{reduction.capitalize()}Pool{ndim}d), prod(K) taps per output",
        params=sp.Integer(0),
        macs=sp.Integer(0),
        ops=_reduce(reduction, results, results * (sp.Mul(*sym["kernel"]) - 1)),
        output_shape=(N, C, *sym["out"]),
        intermediates=out_size,
        defaults={  # nn.MaxPool*d/AvgPool*d's: stride = kernel size, no padding or dilation, floor; one sample
            N: 1, c: 0, **dict(zip(sym["stride"], sym["kernel"])), **dict.fromkeys(sym["padding"], 0),
            **(dict.fromkeys(sym["dilation"], 1) if reduction == "max" else {}),
        },
    )


@cache
def adaptive_formula(ndim: int, reduction: str) -> LayerFormula:
    """``AdaptiveMaxPool``/``AdaptiveAvgPool`` over ``ndim`` dimensions."""
    sym = spatial_symbols(ndim)
    windows = _window_symbols(ndim)
    taps = {
        t: sp.Sum(sp.ceiling((i + 1) * x / o) - sp.floor(i * x / o), (i, 0, o - 1))
        for t, x, o in zip(windows, sym["size"], sym["out"])
    }
    full = "max" if reduction == "max" else "average"
    results, inputs = N * C * sp.Mul(*sym["out"]), N * C * sp.Mul(*sym["size"])
    if reduction == "max":
        backward = {OpKind.ADD: g_x * results}  # each output gradient added at its argmax
    else:
        # Global pooling (U = 1, every output size 1) is a mean, whose gradient divides the output gradient
        # once per input element; otherwise each output gradient is divided by its window and added per tap.
        backward = {OpKind.DIV: g_x * (U * inputs + (1 - U) * results),
                    OpKind.ADD: g_x * (1 - U) * N * C * sp.Mul(*windows)}
    return LayerFormula(
        grad_input=Gradient(ops=backward),
        name=f"adaptive_{reduction}_pool{ndim}d",
        description=f"{ndim}-d adaptive {full} pooling (nn.Adaptive{reduction.capitalize()}Pool{ndim}d), exact windows",
        params=sp.Integer(0),
        macs=sp.Integer(0),
        ops=_reduce(reduction, N * C * sp.Mul(*sym["out"]), N * C * (sp.Mul(*windows) - sp.Mul(*sym["out"]))),
        output_shape=(N, C, *sym["out"]),
        intermediates=taps,
    )


@cache
def interpolation_formula(ndim: int) -> LayerFormula:
    """Interpolation of ``P`` taps per dimension over ``ndim`` dimensions."""
    sym = spatial_symbols(ndim)
    results = N * C * sp.Mul(*sym["out"])
    return LayerFormula(
        name=f"interpolate{ndim}d",
        description=f"{ndim}-d interpolation: a weighted sum of P^{ndim} neighbours per output element",
        params=sp.Integer(0),
        macs=sp.Integer(0),
        ops={OpKind.MUL: P**ndim * results, OpKind.ADD: (P**ndim - 1) * results},
        # Backward: each output gradient times each neighbour's weight, added into that neighbour's gradient.
        grad_input=Gradient(ops={OpKind.MUL: g_x * P**ndim * results, OpKind.ADD: g_x * P**ndim * results}),
        output_shape=(N, C, *sym["out"]),
        intermediates={o: sp.floor(x * f) for o, x, f in zip(sym["out"], sym["size"], _scale_symbols(ndim))},
    )


_UPSAMPLING = {  # name: dimensions, description, taps per dimension
    "upsample_linear": (1, "Linear upsampling: 2 neighbours", 2),
    "upsample_bilinear": (2, "Bilinear upsampling: 2×2 neighbours", 2),
    "upsample_bicubic": (2, "Bicubic upsampling: 4×4 neighbours", 4),
    "upsample_trilinear": (3, "Trilinear upsampling: 2×2×2 neighbours", 2),
}


@cache
def upsampling_formula(name: str) -> LayerFormula:
    """One of ``_UPSAMPLING``'s interpolations: the interpolation with its taps per dimension fixed."""
    ndim, description, taps = _UPSAMPLING[name]
    return interpolation_formula(ndim).specialize(name, description, {P: taps})


@cache
def nearest_formula(ndim: int) -> LayerFormula:
    """Nearest (and nearest-exact) upsampling over ``ndim`` dimensions: a copy per output, no arithmetic."""
    return dataclasses.replace(
        interpolation_formula(ndim), name=f"upsample_nearest{ndim}d", ops={},
        description=f"{ndim}-d nearest / nearest-exact upsampling: copies one input element per output, no arithmetic",
        # Backward: each output gradient is added into its source's.
        grad_input=Gradient(ops={OpKind.ADD: g_x * sp.Mul(N, C, *spatial_symbols(ndim)["out"])}),
    )


_FREE_BACKWARD = Gradient()
"""The gradient of a view or of the identity is the output gradient itself: no arithmetic."""
IDENTITY = dataclasses.replace(
    elementwise("identity", "Identity: returns its input, no arithmetic"), grad_input=_FREE_BACKWARD)
DROPOUT = dataclasses.replace(
    elementwise("dropout", "Dropout (every variant) at inference: the identity; training masks not counted"),
    grad_input=_FREE_BACKWARD,
)
FLATTEN = dataclasses.replace(
    elementwise("flatten", "Flatten: a view merging start_dim..end_dim, no arithmetic"), grad_input=_FREE_BACKWARD)
UNFLATTEN = dataclasses.replace(
    elementwise("unflatten", "Unflatten: a view splitting one dimension, no arithmetic"), grad_input=_FREE_BACKWARD)

_DIMS = (1, 2, 3)
REGISTRY.add_builders({  # each built on first use: their output sizes (Min of floors) take a while in sympy
    **{f"{r}_pool{n}d": functools.partial(pool_formula, n, r) for r in ("max", "avg") for n in _DIMS},
    **{f"adaptive_{r}_pool{n}d": functools.partial(adaptive_formula, n, r) for r in ("max", "avg") for n in _DIMS},
    **{f"interpolate{n}d": functools.partial(interpolation_formula, n) for n in _DIMS},
    **{name: functools.partial(upsampling_formula, name) for name in _UPSAMPLING},
    **{f"upsample_nearest{n}d": functools.partial(nearest_formula, n) for n in _DIMS},
})
REGISTRY.add_formula(IDENTITY, DROPOUT, FLATTEN, UNFLATTEN)


def _per_dim(value: Any, ndim: int) -> tuple[Any, ...]:
    """A module hyperparameter (an int or a tuple) as one value per spatial dimension."""
    return tuple(value) if isinstance(value, Sequence) else (value,) * ndim


_UNBATCHED: dict[str, LayerFormula] = {}


def _batch_values(formula: LayerFormula, shape: Sequence[int], ndim: int) -> tuple[LayerFormula, dict[str, Any]]:
    """``N``, ``C`` and sizes of a batched ``(N, C, *X)`` or unbatched ``(C, *X)`` input; the unbatched case
    is the formula with ``N = 1`` and no batch dimension in its output."""
    values = {"C": shape[-ndim - 1]} | {s.name: n for s, n in zip(spatial_symbols(ndim)["size"], shape[-ndim:])}
    if len(shape) == ndim + 2:
        return formula, values | {"N": shape[0]}
    if formula.name not in _UNBATCHED:
        single = formula.specialize(formula.name, formula.description, {N: 1})
        _UNBATCHED[formula.name] = dataclasses.replace(single, output_shape=single.output_shape[1:])
    return _UNBATCHED[formula.name], values


@cache
def _pools() -> dict[type[nn.Module], tuple[int, str]]:
    """Max and average pooling classes: their number of spatial dimensions and reduction."""
    from torch import nn

    return {
        nn.MaxPool1d: (1, "max"), nn.MaxPool2d: (2, "max"), nn.MaxPool3d: (3, "max"),
        nn.AvgPool1d: (1, "avg"), nn.AvgPool2d: (2, "avg"), nn.AvgPool3d: (3, "avg"),
    }


def bind_pool(module: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    ndim, reduction = _pools()[type(module)]
    return _pool_bound(pool_formula(ndim, reduction), ndim, tuple(args[0].shape), module.kernel_size, module.stride,
                       module.padding, getattr(module, "dilation", 1), module.ceil_mode)


def _pool_bound(formula: LayerFormula, ndim: int, shape: Sequence[int], kernel_size: Any, stride: Any, padding: Any,
                dilation: Any, ceil_mode: bool) -> Bound:
    """A max or average pool's formula on ``shape``; no ``stride`` (``None`` or empty) means the kernel size."""
    formula, values = _batch_values(formula, shape, ndim)
    sym = spatial_symbols(ndim)
    kernel = _per_dim(kernel_size, ndim)
    per_dim = {
        "kernel": kernel, "stride": _per_dim(stride or kernel, ndim),
        "padding": _per_dim(padding, ndim), "dilation": _per_dim(dilation, ndim),
    }
    for role, numbers in per_dim.items():
        values.update({s.name: n for s, n in zip(sym[role], numbers)})
    return Bound(formula, values | {"c": 1 if ceil_mode else 0})


@cache
def _adaptive() -> dict[type[nn.Module], tuple[int, str]]:
    """Adaptive pooling classes: their number of spatial dimensions and reduction."""
    from torch import nn

    return {
        nn.AdaptiveMaxPool1d: (1, "max"), nn.AdaptiveMaxPool2d: (2, "max"), nn.AdaptiveMaxPool3d: (3, "max"),
        nn.AdaptiveAvgPool1d: (1, "avg"), nn.AdaptiveAvgPool2d: (2, "avg"), nn.AdaptiveAvgPool3d: (3, "avg"),
    }


def _bind_adaptive(formula: LayerFormula, ndim: int, shape: Sequence[int], out: Sequence[int | None]) -> Bound:
    """An output size of ``None`` keeps the input size."""
    formula, values = _batch_values(formula, shape, ndim)
    sizes = shape[-ndim:]
    outs = spatial_symbols(ndim)["out"]
    out_sizes = [n if n is not None else x for n, x in zip(out, sizes)]
    return Bound(formula, values | {s.name: n for s, n in zip(outs, out_sizes)} | {"U": int(all(n == 1 for n in out_sizes))})


def bind_adaptive(module: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    ndim, reduction = _adaptive()[type(module)]
    formula = adaptive_formula(ndim, reduction)
    return _bind_adaptive(formula, ndim, tuple(args[0].shape), _per_dim(module.output_size, ndim))


def bind_upsample(module: nn.Upsample, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    return _interpolation_bound(tuple(args[0].shape), module.size, module.scale_factor, module.mode)


def _interpolation_bound(shape: Sequence[Any], size: Any, scale_factor: Any, mode: str) -> Bound:
    """Output sizes are ``size`` when given, else ``floor(X·sigma)`` as torch computes them (in double)."""
    ndim = len(shape) - 2
    sym = spatial_symbols(ndim)
    if mode == "area":
        if size is not None:
            out = _per_dim(size, ndim)
        else:
            out = tuple(math.floor(x * f) for x, f in zip(shape[2:], _per_dim(scale_factor, ndim)))
        return _bind_adaptive(adaptive_formula(ndim, "avg"), ndim, shape, out)
    formula = nearest_formula(ndim) if mode in ("nearest", "nearest-exact") else upsampling_formula(f"upsample_{mode}")
    formula, values = _batch_values(formula, shape, ndim)
    if size is not None:
        values.update({s.name: n for s, n in zip(sym["out"], _per_dim(size, ndim))})
    else:
        scales = (int(f) if float(f).is_integer() else float(f) for f in _per_dim(scale_factor, ndim))
        values.update({s.name: f for s, f in zip(_scale_symbols(ndim), scales)})
    return Bound(formula, values)


def bind_identity(module: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    from torch import nn

    return any_rank(IDENTITY if isinstance(module, nn.Identity) else DROPOUT, tuple(args[0].shape))


def bind_flatten(module: nn.Flatten, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    shape = tuple(args[0].shape)
    sizes = shape_symbols(len(shape))
    start, end = module.start_dim % len(shape), module.end_dim % len(shape)
    return any_rank(FLATTEN, shape, output_shape=(*sizes[:start], sp.Mul(*sizes[start : end + 1]), *sizes[end + 1 :]))


def bind_unflatten(module: nn.Unflatten, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    """A ``-1`` in ``unflattened_size`` is the split dimension divided by the other sizes."""
    shape = tuple(args[0].shape)
    sizes = shape_symbols(len(shape))
    dim = module.dim % len(shape)
    known = math.prod(n for n in module.unflattened_size if n != -1)
    parts = tuple(sizes[dim] / known if n == -1 else n for n in module.unflattened_size)
    return any_rank(UNFLATTEN, shape, output_shape=(*sizes[:dim], *parts, *sizes[dim + 1 :]))


def _f_pool(ndim: int, reduction: str) -> FunctionBinder:
    """Binder of ``F.max_pool{n}d(input, kernel_size, stride, padding, dilation, ceil_mode)`` or of
    ``F.avg_pool{n}d(input, kernel_size, stride, padding, ceil_mode)``."""
    names = ("input", "kernel_size", "stride", "padding")
    names += ("dilation", "ceil_mode") if reduction == "max" else ("ceil_mode",)

    def bind(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
        a = {name: argument(args, kwargs, i, name) for i, name in enumerate(names)}
        return _pool_bound(pool_formula(ndim, reduction), ndim, tuple(a["input"].shape), a["kernel_size"], a["stride"],
                           a["padding"] or 0, a.get("dilation") or 1, bool(a["ceil_mode"]))

    return bind


def _f_adaptive(ndim: int, reduction: str) -> FunctionBinder:
    """Binder of ``F.adaptive_{max,avg}_pool{n}d(input, output_size)``."""

    def bind(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
        shape = tuple(argument(args, kwargs, 0, "input").shape)
        formula = adaptive_formula(ndim, reduction)
        return _bind_adaptive(formula, ndim, shape, _per_dim(argument(args, kwargs, 1, "output_size"), ndim))

    return bind


def bind_f_interpolate(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound | None:
    """``F.interpolate(input, size, scale_factor, mode, align_corners, recompute_scale_factor, antialias)``;
    the output size is ``floor(X·scale)`` whether or not the scale is recomputed from it. Antialiasing filters
    over more neighbours than the formula's ``P``: such a call stays with its caller, measured."""
    names = ("input", "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias")
    a = {name: argument(args, kwargs, i, name) for i, name in enumerate(names)}
    if a["antialias"] or a["input"].dim() < 3:
        return None
    return _interpolation_bound(tuple(a["input"].shape), a["size"], a["scale_factor"], a["mode"] or "nearest")


@REGISTRY.on_first_lookup
def _bind() -> None:
    import torch.nn.functional as F
    from torch import nn

    REGISTRY.bind(tuple(_pools()), bind_pool)
    REGISTRY.bind(tuple(_adaptive()), bind_adaptive)
    REGISTRY.bind(nn.Upsample, bind_upsample)
    REGISTRY.bind(
        (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout),
        bind_identity,
    )
    REGISTRY.bind(nn.Flatten, bind_flatten)
    REGISTRY.bind(nn.Unflatten, bind_unflatten)
    for n in _DIMS:
        REGISTRY.bind_functions({getattr(F, f"max_pool{n}d"): f"F.max_pool{n}d"}, _f_pool(n, "max"))
        REGISTRY.bind_functions({getattr(F, f"avg_pool{n}d"): f"F.avg_pool{n}d"}, _f_pool(n, "avg"))
        for reduction in ("max", "avg"):
            name = f"adaptive_{reduction}_pool{n}d"
            REGISTRY.bind_functions({getattr(F, name): f"F.{name}"}, _f_adaptive(n, reduction))
    REGISTRY.bind_functions({F.interpolate: "F.interpolate"}, bind_f_interpolate)
