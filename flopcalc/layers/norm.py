"""Normalisation layers: BatchNorm1d/2d/3d (and SyncBatchNorm), InstanceNorm1d/2d/3d, GroupNorm, LayerNorm, RMSNorm.

Every one normalises groups of ``M`` elements by a spread statistic and optionally applies a learned scale and
shift. Their costs are assembled from the pieces below, so each convention is written once.

Symbols: ``N`` batch (LayerNorm/RMSNorm: rows, the product of the leading dimensions ``N_1, N_2, …``), ``C``
channels, ``G`` groups, ``S`` spatial size per channel (``L``; ``H·W``; ``D·H·W``; or ``S_1·S_2·…``), ``D``
normalised size (``D_1·D_2·…`` for a multi-dimensional ``normalized_shape``), ``A`` 1 with a learned scale
(``affine``/``elementwise_affine``), ``B`` 1 with a learned shift (LayerNorm's ``bias``), ``R`` 1 when the layer
tracks running statistics.

Conventions (docs/conventions.md, "Norms"), per statistics group of ``M`` elements:

- mean, when computed at run time: ``M − 1`` adds and 1 div (RMSNorm has none);
- spread, when computed at run time: the mean of the squared centred values (of ``x`` for RMSNorm): ``M`` muls,
  ``M − 1`` adds, 1 div; the centred values are reused for the output, so centring is counted once;
- ``rstd = 1/√(var + ε)``: 1 add, 1 sqrt, 1 div — per channel when the statistics are running ones;
- per element: ``(x − mean)·rstd`` is 1 add (not for RMSNorm) and 1 mul; the scale 1 mul, the shift 1 add
  (``add``, not ``bias_add``: no MAC reduction precedes it).

Inference BatchNorm is counted as written, not folded into a preceding conv nor precomputed into one
scale-and-shift per channel (which would leave 1 mul and 1 add per element). In training mode with running
statistics the running mean and variance are each blended ``a·old + b·new`` (2 muls, 1 add per channel; the
scalars from momentum and Bessel's correction are not counted); BatchNorm adds 1 for ``num_batches_tracked``
and InstanceNorm averages the per-instance statistics over the batch (``N − 1`` adds and 1 div per channel and
statistic). Not counted: dtype conversions.

Backward (docs/conventions.md, "Backward"), for ``T`` elements in groups of ``M``: x̂ = (x − mean)·rstd is
recomputed once (1 add + 1 mul per element, charged to grad-weight when it runs, else to grad-input);
grad-bias Σg and grad-weight Σg·x̂ sum over the positions sharing a parameter (``n − 1`` adds per parameter,
+ 1 mul per element); grad-input with batch statistics is ``(γ·rstd/M)·(M·g − Σg − x̂·Σg·x̂)``: 3 mul + 2 add
per element, 1 div per group, the two group sums (over ``g·γ`` when γ varies inside a group, LayerNorm and
GroupNorm, 1 mul per element more; shared with the parameter gradients when γ is per group, BatchNorm and
InstanceNorm) and 1 mul per group for γ·rstd (γ per group). With running statistics (BatchNorm, InstanceNorm
at inference): ``g·(γ·rstd)``, 1 mul per element, with rstd from the running variance (1 add, 1 sqrt, 1 div per
group) and 1 mul per group for γ. InstanceNorm is BatchNorm over N·C channels with γ and β repeated per
sample: their gradients add the N copies. RMSNorm's backward is autograd's chain through its decomposition
(see :func:`rms_norm`).

Each formula is built by a cached function named as it (sympy's ``factor`` of every total takes a while), on
first use: an analysis builds only the norms its layers need.

>>> batch_norm().substituted("buffers", {"C": 64})
'2·64 + 1 = 129'
>>> layer_norm().substituted("add", {"N": 6, "D": 20, "B": 1})
'6·(4·20 - 1) = 474'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

import sympy as sp

from flopcalc.formula import Gradient, LayerFormula, OpKind, dims, flag, g_b, g_W, g_x
from flopcalc.layers.conv import SPATIAL_NAMES
from flopcalc.layers.linear import numbered, split_parts, split_size, split_values
from flopcalc.registry import REGISTRY, Bound, argument

if TYPE_CHECKING:
    from torch import nn
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.modules.instancenorm import _InstanceNorm

N, C, G, S, D = dims("N C G S D")
A, B, R = flag("A"), flag("B"), flag("R")

Ops = dict[OpKind, sp.Expr]


def _total(*parts: Mapping[OpKind, sp.Expr]) -> Ops:
    total: Ops = {}
    for part in parts:
        for kind, expr in part.items():
            total[kind] = total.get(kind, 0) + expr
    return {kind: sp.factor(expr) for kind, expr in total.items()}


def _times(factor: sp.Expr, part: Mapping[OpKind, sp.Expr]) -> Ops:
    return {kind: factor * expr for kind, expr in part.items()}


def statistics(groups: sp.Expr, size: sp.Expr, centred: bool = True) -> Ops:
    """Run-time mean (if ``centred``) and mean of squares of ``groups`` groups of ``size`` elements."""
    mean = {OpKind.ADD: groups * (size - 1), OpKind.DIV: groups} if centred else {}
    squares = {OpKind.MUL: groups * size, OpKind.ADD: groups * (size - 1), OpKind.DIV: groups}
    return _total(mean, squares)


def rstd(groups: sp.Expr) -> Ops:
    """``1/√(var + ε)`` per group: the ε add, the square root, the reciprocal."""
    return {OpKind.ADD: groups, OpKind.SQRT: groups, OpKind.DIV: groups}


def normalise(elements: sp.Expr, scale: sp.Expr, shift: sp.Expr, centred: bool = True) -> Ops:
    """Per element: subtract the mean (if ``centred``), multiply by rstd, then the learned scale and shift."""
    return _total({OpKind.ADD: elements} if centred else {}, {OpKind.MUL: elements},
                  {OpKind.MUL: scale * elements, OpKind.ADD: shift * elements})


def running_update(channels: sp.Expr) -> Ops:
    """Training-mode blend ``a·old + b·new`` of the running mean and of the running variance, per channel."""
    return {OpKind.MUL: 4 * channels, OpKind.ADD: 2 * channels}


_BN_ELEMENTS = N * C * S


def _param_gradients(elements: sp.Expr, positions: sp.Expr, per_param: sp.Expr) -> Gradient:
    """Σg for β and Σg·x̂ for γ over ``positions`` per parameter, plus x̂ itself when γ is trainable."""
    sums = (positions - 1) * per_param
    return Gradient(ops=_total(
        {OpKind.ADD: g_b * sums},
        {OpKind.MUL: g_W * elements, OpKind.ADD: g_W * sums},
        _times(g_W, {OpKind.ADD: elements, OpKind.MUL: elements}),
    ))


def _batch_stats_input_gradient(elements: sp.Expr, groups: sp.Expr, positions: sp.Expr) -> Gradient:
    """Grad-input with batch statistics and γ per group (BatchNorm, InstanceNorm); the group sums Σg and Σg·x̂
    are shared with grad-bias/grad-weight when those ran."""
    sums = groups * (positions - 1)
    ops = _total(
        _times(1 - g_W, {OpKind.ADD: elements, OpKind.MUL: elements}),  # x̂, unless grad-weight made it
        {OpKind.ADD: sums * ((1 - g_b) + (1 - g_W)), OpKind.MUL: (1 - g_W) * elements},
        {OpKind.MUL: A * groups + 3 * elements, OpKind.ADD: 2 * elements, OpKind.DIV: groups},
    )
    return Gradient(ops=_times(g_x, ops))


def _repeated(gradient: Gradient, copies: sp.Expr, size: sp.Expr) -> Gradient:
    """``gradient`` of parameters repeated ``copies`` times (InstanceNorm repeats γ and β per sample), plus the
    sum of the copies' gradients: ``(copies − 1)·size`` adds for each of γ and β that is trainable."""
    return Gradient(ops=_total(gradient.ops, {OpKind.ADD: (g_W + g_b) * (copies - 1) * size}))


def _running_stats_gradients(
    elements: sp.Expr, groups: sp.Expr, positions: sp.Expr, copies: sp.Expr = 1
) -> tuple[Gradient, Gradient]:
    """Grad-input ``g·(γ·rstd)`` with rstd from the running variance (charged to grad-input when it runs) and
    γ·rstd per group; the parameter gradients (of γ and β repeated ``copies`` times), with rstd when only they
    need it."""
    grad_input = Gradient(ops=_times(g_x, _total(rstd(groups), {OpKind.MUL: elements + A * groups})))
    params = _repeated(_param_gradients(elements, positions, groups), copies, groups / copies)
    return grad_input, Gradient(ops=_total(params.ops, _times(g_W * (1 - g_x), rstd(groups))))


@cache
def batch_norm() -> LayerFormula:
    grad_input, grad_weight = _running_stats_gradients(_BN_ELEMENTS, C, N * S)
    return LayerFormula(
        name="batch_norm",
        description="Batch normalisation in inference (nn.BatchNorm1d/2d/3d, eval): running statistics per channel",
        params=2 * A * C,
        macs=sp.Integer(0),
        ops=_total(rstd(C), normalise(_BN_ELEMENTS, A, A)),
        output_shape=(N, C, S),
        buffers=2 * C + 1,
        grad_input=grad_input,
        grad_weight=grad_weight,
    )


@cache
def batch_norm_batch_stats() -> LayerFormula:
    return LayerFormula(
        name="batch_norm_batch_stats",
        description="Batch normalisation with statistics of the batch (training mode, or track_running_stats=False)",
        params=2 * A * C,
        macs=sp.Integer(0),
        ops=_total(
            statistics(C, N * S), rstd(C), normalise(_BN_ELEMENTS, A, A),
            _times(R, _total(running_update(C), {OpKind.ADD: 1})),
        ),
        output_shape=(N, C, S),
        buffers=R * (2 * C + 1),
        grad_input=_batch_stats_input_gradient(_BN_ELEMENTS, C, N * S),
        grad_weight=_param_gradients(_BN_ELEMENTS, N * S, C),
    )


@cache
def instance_norm() -> LayerFormula:
    return LayerFormula(
        name="instance_norm",
        description="Instance normalisation (nn.InstanceNorm1d/2d/3d): statistics per sample and channel",
        params=2 * A * C,
        macs=sp.Integer(0),
        ops=_total(
            statistics(N * C, S), rstd(N * C), normalise(N * C * S, A, A),
            _times(R, _total(running_update(N * C), {OpKind.ADD: 2 * C * (N - 1), OpKind.DIV: 2 * C})),
        ),
        output_shape=(N, C, S),
        buffers=R * (2 * C + 1),
        # BatchNorm's backward over N·C channels of S positions, γ and β repeated per sample.
        grad_input=_batch_stats_input_gradient(N * C * S, N * C, S),
        grad_weight=_repeated(_param_gradients(N * C * S, S, N * C), N, C),
    )


@cache
def instance_norm_running_stats() -> LayerFormula:
    grad_input, grad_weight = _running_stats_gradients(N * C * S, N * C, S, copies=N)
    return LayerFormula(
        name="instance_norm_running_stats",
        description="Instance normalisation in inference with track_running_stats: running statistics per channel",
        params=2 * A * C,
        macs=sp.Integer(0),
        ops=_total(rstd(N * C), normalise(N * C * S, A, A)),
        output_shape=(N, C, S),
        buffers=2 * C + 1,
        grad_input=grad_input,
        grad_weight=grad_weight,
    )


@cache
def group_norm() -> LayerFormula:
    return LayerFormula(
        name="group_norm",
        description="Group normalisation (nn.GroupNorm): statistics per sample over each group of C/G channels",
        params=2 * A * C,
        macs=sp.Integer(0),
        ops=_total(statistics(N * G, C * S / G), rstd(N * G), normalise(N * C * S, A, A)),
        output_shape=(N, C, S),
        # γ varies within a group: ĝ = g·γ, the group sums Σĝ and Σĝ·x̂, then (rstd/M)·(M·ĝ − Σĝ − x̂·Σĝ·x̂); the
        # parameter gradients sum over the N·S positions of each channel.
        grad_input=Gradient(ops=_times(g_x, _total(
            _times(1 - g_W, {OpKind.ADD: N * C * S, OpKind.MUL: N * C * S}),
            {OpKind.MUL: (A + 4) * N * C * S, OpKind.ADD: 2 * N * (C * S - G) + 2 * N * C * S, OpKind.DIV: N * G},
        ))),
        grad_weight=_param_gradients(N * C * S, N * S, C),
        constraints={"C divisible by G": sp.Eq(sp.Mod(C, G), 0)},  # nn.GroupNorm refuses other counts
    )


@cache
def layer_norm() -> LayerFormula:
    return LayerFormula(
        name="layer_norm",
        description="Layer normalisation (nn.LayerNorm): statistics per row over the last D elements",
        params=(A + B) * D,
        macs=sp.Integer(0),
        ops=_total(statistics(N, D), rstd(N), normalise(N * D, A, B)),
        output_shape=(N, D),
        # ĝ = g·γ, the row sums Σĝ and Σĝ·x̂, then (rstd/D)·(D·ĝ − Σĝ − x̂·Σĝ·x̂); x̂ when grad-weight did not make it.
        grad_input=Gradient(ops=_times(g_x, _total(
            _times(1 - g_W, {OpKind.ADD: N * D, OpKind.MUL: N * D}),
            {OpKind.MUL: A * N * D + N * D + 3 * N * D, OpKind.ADD: 2 * N * (D - 1) + 2 * N * D, OpKind.DIV: N},
        ))),
        grad_weight=_param_gradients(N * D, N, D),
    )


@cache
def rms_norm() -> LayerFormula:
    return LayerFormula(
        name="rms_norm",
        description="RMS normalisation (nn.RMSNorm): x / √(mean(x²) + ε) per row over the last D elements",
        params=A * D,
        macs=sp.Integer(0),
        ops=_total(statistics(N, D, centred=False), rstd(N), normalise(N * D, A, 0, centred=False)),
        output_shape=(N, D),
        # Autograd differentiates the decomposition x·rsqrt(mean(x²) + ε)·γ op by op (no fused backward on CPU or
        # meta): g·γ; g·rstd and the row sum Σg·x; rsqrt's −½·rstd³·g, 4 mul per row; the mean's g/D per element;
        # the square's 2·x·g, 2 mul; x's two gradients summed. Grad-weight Σ g·x̂ over the rows.
        grad_input=Gradient(ops=_times(g_x, {
            OpKind.MUL: (A + 4) * N * D + 4 * N, OpKind.ADD: N * (D - 1) + N * D, OpKind.DIV: N * D})),
        grad_weight=Gradient(ops={OpKind.MUL: g_W * N * D, OpKind.ADD: g_W * (N - 1) * D}),
    )

_FORMULAS = {build.__name__: build for build in (
    batch_norm, batch_norm_batch_stats, instance_norm, instance_norm_running_stats, group_norm, layer_norm, rms_norm,
)}
REGISTRY.add_builders(_FORMULAS)


@cache
def _spatial_symbols(count: int) -> tuple[sp.Symbol, ...]:
    """``L``; ``H, W``; ``D, H, W`` as in conv, else ``S_1 … S_count``; none for a ``(N, C)`` input."""
    if count in SPATIAL_NAMES:
        return tuple(sp.Symbol(name, integer=True, positive=True) for name in SPATIAL_NAMES[count])
    return numbered("S", count) if count else ()


@cache
def _shaped(name: str, batched: bool, spatial: int) -> LayerFormula:
    """A channel norm's formula for an input of shape ``(N, C, *spatial)``, or ``(C, *spatial)`` unbatched."""
    formula = split_size(_FORMULAS[name](), S, _spatial_symbols(spatial))
    return formula if batched else split_size(formula, N, ())


@cache
def _rows(name: str, leading: int, normalised: int) -> LayerFormula:
    """LayerNorm's or RMSNorm's formula for ``leading`` row dimensions and ``normalised`` normalised ones."""
    return split_size(split_size(_FORMULAS[name](), N, split_parts(N, leading)), D, split_parts(D, normalised))


def _spatial_values(sizes: Sequence[int]) -> dict[str, int]:
    return {s.name: v for s, v in zip(_spatial_symbols(len(sizes)), sizes)}


def bind_batch_norm(module: _BatchNorm, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    """Running statistics in eval mode when tracked (as torch decides); otherwise the batch's."""
    shape = tuple(args[0].shape)
    tracked = module.running_mean is not None
    name = "batch_norm_batch_stats" if module.training or not tracked else "batch_norm"
    values = {"N": shape[0], "C": module.num_features, "A": int(module.affine), "R": int(tracked)}
    return Bound(_shaped(name, True, len(shape) - 2), {**values, **_spatial_values(shape[2:])})


def bind_instance_norm(module: _InstanceNorm, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    """Inputs ``(N, C, *spatial)`` or unbatched ``(C, *spatial)``; spatial rank 1, 2, 3 for the 1d/2d/3d modules."""
    shape = tuple(args[0].shape)
    batched = len(shape) == module._get_no_batch_dim() + 1
    spatial = shape[2:] if batched else shape[1:]
    tracked = module.track_running_stats
    name = "instance_norm" if module.training or not tracked else "instance_norm_running_stats"
    values = {"N": shape[0] if batched else 1, "C": module.num_features, "A": int(module.affine), "R": int(tracked)}
    return Bound(_shaped(name, batched, len(spatial)), {**values, **_spatial_values(spatial)})


def bind_group_norm(module: nn.GroupNorm, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    shape = tuple(args[0].shape)
    values = {"N": shape[0], "C": module.num_channels, "G": module.num_groups, "A": int(module.affine)}
    return Bound(_shaped("group_norm", True, len(shape) - 2), {**values, **_spatial_values(shape[2:])})


def bind_layer_norm(module: nn.LayerNorm | nn.RMSNorm, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    """Rows are every position of the dimensions before ``normalized_shape``."""
    shape = tuple(args[0].shape)
    normalised = tuple(module.normalized_shape)
    leading = shape[: len(shape) - len(normalised)]
    from torch import nn

    name = "rms_norm" if isinstance(module, nn.RMSNorm) else "layer_norm"
    values = {"A": int(module.weight is not None), "B": int(getattr(module, "bias", None) is not None)}
    values.update(split_values("N", leading))
    values.update(split_values("D", normalised))
    return Bound(_rows(name, len(leading), len(normalised)), values)


def bind_f_layer_norm(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    """``F.layer_norm(input, normalized_shape, weight, bias)``: the LayerNorm formula."""
    return _bind_rows("layer_norm", args, kwargs)


def bind_f_rms_norm(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    """``F.rms_norm(input, normalized_shape, weight)``: the RMSNorm formula."""
    return _bind_rows("rms_norm", args, kwargs)


def _bind_rows(name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    x, normalised = argument(args, kwargs, 0, "input"), argument(args, kwargs, 1, "normalized_shape")
    normalised = (normalised,) if isinstance(normalised, int) else tuple(normalised)
    shape = tuple(x.shape)
    leading = shape[: len(shape) - len(normalised)]
    weight, bias = argument(args, kwargs, 2, "weight"), argument(args, kwargs, 3, "bias")
    values = {"A": int(weight is not None), "B": int(name == "layer_norm" and bias is not None)}
    values.update(split_values("N", leading))
    values.update(split_values("D", normalised))
    return Bound(_rows(name, len(leading), len(normalised)), values)


def bind_f_group_norm(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound | None:
    """``F.group_norm(input, num_groups, weight, bias)``; an affine group norm has both weight and bias."""
    x, groups = argument(args, kwargs, 0, "input"), argument(args, kwargs, 1, "num_groups")
    weight, bias = argument(args, kwargs, 2, "weight"), argument(args, kwargs, 3, "bias")
    if (weight is None) != (bias is None) or x.dim() < 2:
        return None
    shape = tuple(x.shape)
    # B (the last tensor argument is a bias) tells the backward pass which argument is β's.
    values = {"N": shape[0], "C": shape[1], "G": groups, "A": int(weight is not None), "B": int(bias is not None)}
    return Bound(_shaped("group_norm", True, len(shape) - 2), {**values, **_spatial_values(shape[2:])})


def bind_f_batch_norm(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound | None:
    """``F.batch_norm(input, running_mean, running_var, weight, bias, training)``: running statistics unless
    ``training``; a training call that updates running statistics is left to its caller (the module, not the
    function, counts ``num_batches_tracked``)."""
    names = ("input", "running_mean", "running_var", "weight", "bias", "training")
    x, mean, _, weight, bias, training = (argument(args, kwargs, i, n, False if n == "training" else None)
                                          for i, n in enumerate(names))
    if (weight is None) != (bias is None) or x.dim() < 2 or (training and mean is not None):
        return None
    name = "batch_norm_batch_stats" if training or mean is None else "batch_norm"
    shape = tuple(x.shape)
    values = {"N": shape[0], "C": shape[1], "A": int(weight is not None), "B": int(bias is not None), "R": 0}
    return Bound(_shaped(name, True, len(shape) - 2), {**values, **_spatial_values(shape[2:])})


@REGISTRY.on_first_lookup
def _bind() -> None:
    import torch.nn.functional as F
    from torch import nn
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.modules.instancenorm import _InstanceNorm

    REGISTRY.bind((_BatchNorm, nn.SyncBatchNorm), bind_batch_norm)  # SyncBatchNorm: the same single-process pass
    REGISTRY.bind(_InstanceNorm, bind_instance_norm)
    REGISTRY.bind(nn.GroupNorm, bind_group_norm)
    REGISTRY.bind((nn.LayerNorm, nn.RMSNorm), bind_layer_norm)
    REGISTRY.bind_functions({F.layer_norm: "F.layer_norm"}, bind_f_layer_norm)
    REGISTRY.bind_functions({F.rms_norm: "F.rms_norm"}, bind_f_rms_norm)
    REGISTRY.bind_functions({F.group_norm: "F.group_norm"}, bind_f_group_norm)
    REGISTRY.bind_functions({F.batch_norm: "F.batch_norm"}, bind_f_batch_norm)
