"""Quantized kernels (``torch.ao``: static, dynamic and QAT-converted models), counted as the float ops they
stand for, each through the float op's own rule.

A quantized conv or linear is its float counterpart on the packed weight (MACs plus bias adds); rescaling
the integer accumulator to the output's scale belongs to the number format, like a dtype cast, and is not
counted. Fused ``_relu`` variants add the ReLU's compare. Converting into and out of the format is arithmetic:
``quantize`` is ``clamp(x / scale + zero_point)`` (1 div, 1 add, 2 compares per element) and ``dequantize``
``(q − zero_point) · scale`` (1 add, 1 mul per element).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from flopcalc.measure.core import Count, cost_of, op_rule, per_element, zero_cost

aten = torch.ops.aten
quantized = torch.ops.quantized


def _relu(out: Any) -> Count:
    return per_element(out, compare=1)


def _conv(args: Sequence[Any], out: Any) -> Count:
    packed = args[1]
    weight, bias = packed.unpack()
    transposed = bool(packed.transpose())
    return cost_of(aten.convolution.default, args[0], weight, bias, None, None, None, transposed, out=out)


def _linear(args: Sequence[Any], out: Any) -> Count:
    weight, bias = args[1].unpack()
    return cost_of(aten.linear.default, args[0], weight, bias, out=out)


_CONVS = [quantized.conv1d, quantized.conv2d, quantized.conv3d, quantized.conv_transpose1d,
          quantized.conv_transpose2d, quantized.conv_transpose3d]
_CONV_RELUS = [quantized.conv1d_relu, quantized.conv2d_relu, quantized.conv3d_relu]


@op_rule(*_CONVS)
def count_quantized_conv(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    return _conv(args, out)


@op_rule(*_CONV_RELUS)
def count_quantized_conv_relu(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    return _conv(args, out) + _relu(out)


@op_rule(quantized.linear, quantized.linear_dynamic, quantized.linear_dynamic_fp16)
def count_quantized_linear(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """Static and dynamic linear: the dynamic kernel's choice of the input's scale is not counted."""
    return _linear(args, out)


@op_rule(quantized.linear_relu, quantized.linear_relu_dynamic)
def count_quantized_linear_relu(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    return _linear(args, out) + _relu(out)


@op_rule(quantized.add, quantized.add_scalar)
def count_quantized_add(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    return per_element(out, add=1)


@op_rule(quantized.add_relu, quantized.add_scalar_relu)
def count_quantized_add_relu(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    return per_element(out, add=1, compare=1)


@op_rule(quantized.mul, quantized.mul_scalar)
def count_quantized_mul(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    return per_element(out, mul=1)


@op_rule(quantized.mul_relu, quantized.mul_scalar_relu)
def count_quantized_mul_relu(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    return per_element(out, mul=1, compare=1)


@op_rule(quantized.hardswish)
def count_quantized_hardswish(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    return cost_of(aten.hardswish.default, args[0], out=out)


@op_rule(quantized.relu6)
def count_quantized_relu6(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    return per_element(out, compare=2)


@op_rule(aten.quantized_max_pool1d, aten.quantized_max_pool2d, aten.quantized_max_pool3d)
def count_quantized_max_pool(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(input, kernel_size, stride, padding, dilation, ceil_mode)``, as the float max pool."""
    pool = {1: aten.max_pool1d, 2: aten.max_pool2d, 3: aten.max_pool3d}[len(args[1])].default
    return cost_of(pool, *args, out=out)


@op_rule(quantized.batch_norm1d, quantized.batch_norm2d, quantized.batch_norm3d)
def count_quantized_batch_norm(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(qx, weight, bias, mean, var, eps, scale, zero_point)``: inference batch norm."""
    return cost_of(aten._native_batch_norm_legit_no_training.default, args[0], args[1], args[2], args[3], args[4],
                   0.1, args[5], out=out)


@op_rule(quantized.layer_norm)
def count_quantized_layer_norm(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    return cost_of(aten.native_layer_norm.default, args[0], args[1], args[2], args[3], args[4], out=out)


@op_rule(aten.quantize_per_tensor, aten.quantize_per_channel, aten.quantize_per_tensor_dynamic)
def count_quantize(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    return per_element(out, div=1, add=1, compare=2)


@op_rule(aten.dequantize)
def count_dequantize(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    outs = out if isinstance(out, list | tuple) else [out]
    return sum((per_element(o, add=1, mul=1) for o in outs), Count())


zero_cost(
    "quantized data movement: concatenation and views of quantized tensors do no arithmetic",
    [quantized.cat, quantized.cat_relu, aten.q_scale, aten.q_zero_point, aten.q_per_channel_scales,
     aten.q_per_channel_zero_points, aten.q_per_channel_axis, aten.int_repr, aten._empty_affine_quantized,
     aten._empty_per_channel_affine_quantized],
)
zero_cost(
    "reading a quantized module's packed weight: no arithmetic",
    [quantized.linear_unpack, quantized.linear_unpack_fp16, quantized.conv1d_unpack, quantized.conv2d_unpack,
     quantized.conv3d_unpack, quantized.conv_transpose1d_unpack, quantized.conv_transpose2d_unpack,
     quantized.conv_transpose3d_unpack],
)
