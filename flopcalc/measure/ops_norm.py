"""Normalisation ops (batch, instance, layer, group and RMS norm), counted from shapes.

Convention (docs/conventions.md, "Norms"), for ``R`` statistics groups of ``M`` elements:

- mean, when computed at run time: ``M − 1`` adds and 1 div per group (RMS norm has none);
- spread, when computed at run time: the mean of the squared centred values (of ``x`` itself for RMS norm):
  ``M`` muls for the squares, ``M − 1`` adds and 1 div per group; the centred values are the ones the output
  uses, so centring is counted once, below;
- ``rstd = 1/√(var + ε)``: 1 add, 1 sqrt, 1 div per group — per channel when the statistics are running ones;
- normalise ``(x − mean)·rstd``: 1 add (none for RMS norm) and 1 mul per element;
- affine: 1 mul per element with a weight, 1 add per element with a bias;
- training with running statistics: running mean and running variance are each blended as ``a·old + b·new``
  (2 muls and 1 add per channel; the scalars ``a``, ``b`` from momentum and Bessel's correction are computed
  once and not counted).

In training mode ``nn.BatchNorm`` also increments ``num_batches_tracked`` and ``nn.InstanceNorm`` averages the
updated per-instance statistics over the batch; those are separate ``add_``/``mean`` ops counted by
:mod:`ops_elementwise`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from flopcalc.formula import Number, OpKind
from flopcalc.measure.core import Count, numel, op_rule, shape_of

aten = torch.ops.aten

ADD, MUL, DIV, SQRT = OpKind.ADD.value, OpKind.MUL.value, OpKind.DIV.value, OpKind.SQRT.value


def _present(value: Any) -> bool:
    return isinstance(value, torch.Tensor)


def normalisation(
    elements: Number, groups: Number, *, batch_stats: bool, centred: bool = True, scale: bool, shift: bool,
    updated_channels: Number = 0,
) -> Count:
    """The cost of normalising ``elements`` values in ``groups`` groups (see the module docstring)."""
    size = elements // groups
    ops: dict[str, Number] = {ADD: 0, MUL: 0, DIV: 0, SQRT: 0}

    def add(**kinds: Number) -> None:
        for kind, value in kinds.items():
            ops[kind] += value

    if batch_stats:
        if centred:
            add(add=groups * (size - 1), div=groups)  # the mean
        add(mul=elements, add=groups * (size - 1), div=groups)  # mean of squares
    add(add=groups, sqrt=groups, div=groups)  # rstd = 1 / sqrt(var + eps)
    add(add=elements if centred else 0, mul=elements)  # (x - mean) * rstd
    add(mul=elements if scale else 0, add=elements if shift else 0)  # affine
    add(mul=4 * updated_channels, add=2 * updated_channels)  # running mean and var blends
    return Count(0, {kind: value for kind, value in ops.items() if value})


def _batch_norm(x: Any, weight: Any, bias: Any, running_mean: Any, training: bool) -> Count:
    """Statistics per channel (dim 1); in training they come from the batch, otherwise from running buffers."""
    shape = shape_of(x)
    channels = shape[1]
    batch_stats = training or not _present(running_mean)
    updated = channels if training and _present(running_mean) else 0
    return normalisation(
        numel(shape), channels, batch_stats=batch_stats, scale=_present(weight), shift=_present(bias),
        updated_channels=updated,
    )


@op_rule(aten.native_batch_norm, aten._native_batch_norm_legit_functional, aten.cudnn_batch_norm,
         aten.miopen_batch_norm)
def count_native_batch_norm(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(input, weight, bias, running_mean, running_var, training, momentum, eps)``."""
    return _batch_norm(args[0], args[1], args[2], args[3], bool(args[5]))


@op_rule(aten._native_batch_norm_legit)
def count_native_batch_norm_legit(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(input, weight, bias, running_mean, running_var, training, …)``, or ``.no_stats`` without the buffers."""
    if len(args) > 3 and _present(args[3]):
        return _batch_norm(args[0], args[1], args[2], args[3], bool(args[5]))
    return _batch_norm(args[0], args[1], args[2], None, True)


@op_rule(aten._native_batch_norm_legit_no_training)
def count_batch_norm_no_training(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """Inference with running statistics: ``(input, weight, bias, running_mean, running_var, momentum, eps)``."""
    return _batch_norm(args[0], args[1], args[2], args[3], False)


@op_rule(aten._batch_norm_with_update, aten._batch_norm_with_update_functional)
def count_batch_norm_with_update(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """Training with running statistics: ``(input, weight, bias, running_mean, running_var, momentum, eps)``."""
    return _batch_norm(args[0], args[1], args[2], args[3], True)


@op_rule(aten._batch_norm_no_update)
def count_batch_norm_no_update(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """Running statistics when given, otherwise the batch's, never updated."""
    return _batch_norm(args[0], args[1], args[2], args[3], False)


@op_rule(aten.native_layer_norm)
def count_native_layer_norm(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(input, normalized_shape, weight, bias, eps)``: one group per position of the leading dimensions."""
    elements = numel(shape_of(args[0]))
    groups = elements // numel(args[1])
    return normalisation(elements, groups, batch_stats=True, scale=_present(args[2]), shift=_present(args[3]))


@op_rule(aten.native_group_norm)
def count_native_group_norm(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(input, weight, bias, N, C, HxW, group, eps)``: ``N·group`` groups of ``C/group·HxW`` elements."""
    batch, group = args[3], args[6]
    return normalisation(
        numel(shape_of(args[0])), batch * group, batch_stats=True, scale=_present(args[1]), shift=_present(args[2]),
    )


@op_rule(aten._fused_rms_norm)
def count_fused_rms_norm(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(input, normalized_shape, weight, eps)``: the same count as the pow/mean/add/rsqrt/mul decomposition."""
    elements = numel(shape_of(args[0]))
    groups = elements // numel(args[1])
    weight = args[2] if len(args) > 2 else kwargs.get("weight")
    return normalisation(elements, groups, batch_stats=True, centred=False, scale=_present(weight), shift=False)


@op_rule(aten._weight_norm_interface)
def count_weight_norm(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``w = g · v / ‖v‖`` (``weight_norm``'s recomputation, ``(v, g, dim)``): the 2-norm of each slice along
    ``dim`` (a vector norm: M mul, M − 1 add, 1 sqrt), ``g / ‖v‖`` (1 div per slice), then 1 mul per element."""
    elements = numel(shape_of(args[0]))
    slices = numel(shape_of(args[1]))
    size = elements // slices
    return Count(0, {MUL: 2 * elements, ADD: slices * (size - 1), SQRT: slices, DIV: slices})
