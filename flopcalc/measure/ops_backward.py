"""The aten ops autograd runs in a backward pass, counted from shapes like every forward op.

Convention (docs/conventions.md, "Backward"): a gradient costs what its mathematical definition costs, one
operation per scalar operation, and the products that carry MACs forward carry the same MACs backward.

- Convolution: grad-input and grad-weight each cost the forward's MACs (every output-gradient × weight pair,
  every output-gradient × input pair); the bias gradient sums the output gradient over batch and positions
  (``n − 1`` adds per channel for ``n`` terms). Which parts run follows the op's ``output_mask``.
- Activations, per element: ReLU/Threshold 1 compare; Hardtanh/ReLU6 2 compares; LeakyReLU 1 compare + 1 mul;
  Sigmoid ``g·y·(1 − y)`` and Tanh ``g·(1 − y²)`` 1 add + 2 mul; SiLU ``g·s·(1 + x·(1 − s))`` with
  ``s = sigmoid(x)`` recomputed: 1 exp, 3 add, 1 div, 3 mul; GELU (erf) ``g·(Φ(x) + x·φ(x))`` 2 exp, 7 mul,
  2 add, (tanh) 1 exp, 13 mul, 5 add; Hardsigmoid 2 compares + 1 div; Hardswish 2 compares, 2 mul, 1 add,
  1 div; ELU ``g·scale·α·e^{x·s_in}`` 1 compare, 1 exp, 2 mul, + 1 mul per non-unit ``scale``/``input_scale``;
  Hardshrink/Softshrink 2 compares (the mask); LogSigmoid ``g/(1 + e^x)`` 1 exp, 1 add, 1 div; Softplus
  ``g·σ(βx)`` 1 exp, 1 add, 1 div, 1 mul (+ 1 mul for β ≠ 1); Mish ``g·(t + x·(1 − t²)·σ(x))`` with
  ``t = tanh(log(1 + e^x))`` recomputed: 3 exp, 3 add, 4 mul, 1 div; GLU per output, see
  :func:`count_glu_backward`.
- Softmax, per row of length d: ``y·(g − Σ g·y)``: 2d mul, 2d − 1 add; LogSoftmax ``g − e^y·Σ g``: d exp, d mul,
  2d − 1 add.
- Pooling: max pooling routes each output gradient to its argmax, 1 add per output element; average pooling
  divides each output gradient by its window (1 div) and adds it into every tap (1 add per tap).
- Norms: see :func:`norm_backward`; RMS norm's fused backward as autograd runs its decomposition.
- Embedding: each looked-up row's gradient is added into the table, 1 add per looked-up element; bags: see
  :func:`count_embedding_bag_backward`.
- Upsampling: nearest routes each output gradient to its source (1 add per output); n-linear and bicubic
  weight it for each of their ``P^n`` neighbours and add it there (``P^n`` mul + ``P^n`` add per output).
- ``select_backward``/``slice_backward`` and the like write a gradient into zeros: data movement, free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from flopcalc.formula import Number, OpKind
from flopcalc.measure.core import Count, numel, op_rule, per_element, shape_of, zero_cost
from flopcalc.measure.ops_pool import adaptive_window_total

aten = torch.ops.aten

ADD, MUL, DIV, EXP, COMPARE, SQRT = (
    OpKind.ADD.value, OpKind.MUL.value, OpKind.DIV.value, OpKind.EXP.value, OpKind.COMPARE.value, OpKind.SQRT.value,
)

zero_cost(
    "gradient of a view or index: the gradient is written into zeros (data movement)",
    [aten.select_backward, aten.slice_backward, aten.diagonal_backward, aten.as_strided_scatter,
     aten.select_scatter, aten.slice_scatter, aten.unfold_backward],
)


def _elementwise_backward(**costs: int) -> Any:
    return lambda args, kwargs, out: per_element(out, **costs)


op_rule(aten.threshold_backward)(_elementwise_backward(compare=1))
op_rule(aten.hardtanh_backward)(_elementwise_backward(compare=2))
# RReLU's kernel is leaky_relu's with the slope (lower + upper)/2 at eval, or the slopes drawn in training
# (counted alike, as the forward: the randomness is not counted)
op_rule(aten.leaky_relu_backward, aten.rrelu_with_noise_backward)(_elementwise_backward(compare=1, mul=1))
op_rule(aten.sigmoid_backward, aten.tanh_backward)(_elementwise_backward(add=1, mul=2))
op_rule(aten.silu_backward)(_elementwise_backward(exp=1, add=3, div=1, mul=3))
op_rule(aten.hardsigmoid_backward)(_elementwise_backward(compare=2, div=1))
op_rule(aten.hardswish_backward)(_elementwise_backward(compare=2, mul=2, add=1, div=1))
op_rule(aten.hardshrink_backward, aten.softshrink_backward)(_elementwise_backward(compare=2))
op_rule(aten.log_sigmoid_backward)(_elementwise_backward(exp=1, add=1, div=1))
op_rule(aten.mish_backward)(_elementwise_backward(exp=3, add=3, mul=4, div=1))
# PReLU's kernel computes both gradients whenever either is needed: g·(x > 0 ? 1 : a) (1 compare, 1 mul) and
# the slope's per-element g·x (1 mul; the mask is shared); summing those into the slopes is a separate op.
@op_rule(aten._prelu_kernel_backward)
def count_prelu_backward(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(grad, self, weight)`` → (grad-input, the slope's per-element gradient): 1 compare, 2 mul per element."""
    return per_element(args[0], compare=1, mul=2)


@op_rule(aten.softplus_backward)
def count_softplus_backward(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(grad, self, beta, threshold)``: ``g·σ(βx)`` as ``g·z/(1 + z)``, ``z = e^{βx}``: 1 exp, 1 add, 1 div,
    1 mul, + 1 mul for a non-unit β."""
    return per_element(out, exp=1, add=1, div=1, mul=1 + int(args[2] != 1))


@op_rule(aten.glu_backward)
def count_glu_backward(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(grad, self, dim)``, per output element of ``a·σ(b)``: σ(b) (1 exp, 1 add, 1 div), ``da = g·σ`` (1 mul),
    ``db = (g·σ)·a·(1 − σ)`` (1 add, 2 mul)."""
    return per_element(args[0], exp=1, add=2, div=1, mul=3)


@op_rule(aten.gelu_backward)
def count_gelu_backward(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(grad, self, approximate)``: erf form 2 exp, 7 mul, 2 add; tanh form 1 exp, 13 mul, 5 add."""
    approximate = args[2] if len(args) > 2 else kwargs.get("approximate", "none")
    if approximate == "tanh":
        return per_element(out, exp=1, mul=13, add=5)
    return per_element(out, exp=2, mul=7, add=2)


@op_rule(aten.elu_backward)
def count_elu_backward(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(grad, alpha, scale, input_scale, is_result, self_or_result)``."""
    scale, input_scale = args[2], args[3]
    return per_element(out, compare=1, exp=1, mul=2 + int(scale != 1) + int(input_scale != 1))


def _rows(shape: Sequence[Number], dim: int) -> tuple[Number, Number]:
    if not shape:
        return 1, 1
    d = shape[dim % len(shape)]
    return d, numel(shape) // d


@op_rule(aten._softmax_backward_data)
def count_softmax_backward(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(grad, output, dim, input_dtype)``: per row of length d, 2d mul and 2d − 1 add."""
    d, rows = _rows(shape_of(args[0]), args[2])
    return Count(0, {MUL: 2 * d * rows, ADD: (2 * d - 1) * rows})


@op_rule(aten._log_softmax_backward_data)
def count_log_softmax_backward(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(grad, output, dim, input_dtype)``: per row of length d, d exp, d mul and 2d − 1 add."""
    d, rows = _rows(shape_of(args[0]), args[2])
    return Count(0, {EXP: d * rows, MUL: d * rows, ADD: (2 * d - 1) * rows})


@op_rule(aten.convolution_backward)
def count_convolution_backward(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(grad_output, input, weight, bias_sizes, stride, padding, dilation, transposed, output_padding, groups,
    output_mask)``: the forward's MACs for each of grad-input and grad-weight that the mask asks for."""
    grad_shape, x_shape, w_shape = shape_of(args[0]), shape_of(args[1]), shape_of(args[2])
    transposed, mask = bool(args[7]), args[10]
    spatial = len(w_shape) - 2
    batch = x_shape[0] if len(x_shape) == spatial + 2 else 1
    positions = numel(x_shape[-spatial:]) if transposed else numel(grad_shape[-spatial:])
    forward_macs = batch * positions * numel(w_shape)
    channels = grad_shape[-spatial - 1]
    bias_adds = (numel(grad_shape) - channels) if mask[2] else 0
    return Count(forward_macs * (int(mask[0]) + int(mask[1])), {ADD: bias_adds})


def norm_backward(
    elements: Number, groups: Number, param_groups: Number, *, mask: Sequence[bool], scale: bool,
    batch_stats: bool, per_element_scale: bool, x_hat_known: bool = False,
) -> Count:
    """A norm's backward over ``elements`` values in ``groups`` statistics groups, with affine parameters
    shared by ``param_groups`` positions (the parameter gradients sum over them).

    - x̂ = (x − mean)·rstd, recomputed when grad-input or grad-weight needs it (unless ``x_hat_known``: a
      grad-weight counted apart made it): 1 add + 1 mul per element;
      with running statistics (BatchNorm in eval) rstd = 1/√(var + ε) per group first: 1 add, 1 sqrt, 1 div.
    - grad-bias Σ g and grad-weight Σ g·x̂ over the ``param_groups`` positions: ``(n − 1)`` adds per
      parameter, plus 1 mul per element for g·x̂.
    - grad-input with batch statistics: ĝ = g·γ (1 mul per element if γ is per element, else γ·rstd per
      group), the group sums Σĝ and Σĝ·x̂ (shared with the parameter gradients when γ is per group),
      then ``(rstd/M)·(M·ĝ − Σĝ − x̂·Σĝ·x̂)``: 3 mul + 2 add per element, 1 div per group (rstd/M), and
      1 mul per group for γ·rstd when γ is per group. With running statistics: ``g·(γ·rstd)``, 1 mul per
      element and 1 mul per group for γ·rstd.
    """
    want_input, want_weight, want_bias = (bool(m) for m in mask[:3])
    ops: dict[str, Number] = {ADD: 0, MUL: 0, DIV: 0, SQRT: 0}

    def add(**kinds: Number) -> None:
        for kind, value in kinds.items():
            ops[kind] += value

    params = elements // param_groups
    if not batch_stats and (want_input or want_weight):
        add(add=groups, sqrt=groups, div=groups)
    if (want_weight or (want_input and batch_stats)) and not x_hat_known:
        add(add=elements, mul=elements)  # x̂
    if want_bias:
        add(add=(param_groups - 1) * params)
    if want_weight:
        add(mul=elements, add=(param_groups - 1) * params)
    if want_input and not batch_stats:
        add(mul=elements + (groups if scale else 0))
    elif want_input:
        group_size = elements // groups
        if per_element_scale:
            add(mul=elements if scale else 0)  # ĝ = g·γ
            add(add=2 * groups * (group_size - 1), mul=elements)  # Σĝ and Σĝ·x̂
        else:
            # Σg and Σg·x̂ per group; already summed for grad-bias / grad-weight when those ran.
            add(add=groups * (group_size - 1) * ((not want_bias) + (not want_weight)),
                mul=0 if want_weight else elements)
            add(mul=groups if scale else 0)  # γ·rstd
        add(mul=3 * elements, add=2 * elements, div=groups)
    return Count(0, {kind: value for kind, value in ops.items() if value})


@op_rule(aten.native_batch_norm_backward)
def count_batch_norm_backward(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(grad_out, input, weight, running_mean, running_var, save_mean, save_invstd, train, eps, output_mask)``."""
    shape = shape_of(args[1])
    channels = shape[1] if len(shape) > 1 else 1
    elements = numel(shape)
    return norm_backward(
        elements, channels, elements // channels, mask=args[9], scale=isinstance(args[2], torch.Tensor),
        batch_stats=bool(args[7]), per_element_scale=False,
    )


@op_rule(aten.native_layer_norm_backward)
def count_layer_norm_backward(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(grad_out, input, normalized_shape, mean, rstd, weight, bias, output_mask)``: one group per row."""
    elements = numel(shape_of(args[1]))
    rows = elements // numel(args[2])
    return norm_backward(
        elements, rows, rows, mask=args[7], scale=isinstance(args[5], torch.Tensor), batch_stats=True,
        per_element_scale=True,
    )


@op_rule(aten.native_group_norm_backward)
def count_group_norm_backward(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(grad_out, input, mean, rstd, weight, N, C, HxW, group, output_mask)``: γ is per channel, shared by
    ``N·HxW`` positions; statistics per (sample, group)."""
    batch, hxw, group = args[5], args[7], args[8]
    elements = numel(shape_of(args[1]))
    mask = args[9]
    scale = isinstance(args[4], torch.Tensor)
    # γ varies within a statistics group, so the grad-input sums run over g·γ (per element); x̂ is made once.
    count = norm_backward(
        elements, batch * group, batch * hxw, mask=(mask[0], False, False), scale=scale, batch_stats=True,
        per_element_scale=True, x_hat_known=bool(mask[1]),
    )
    return count + norm_backward(
        elements, batch * group, batch * hxw, mask=(False, mask[1], mask[2]), scale=scale, batch_stats=True,
        per_element_scale=False,
    )


def _max_pool_backward(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(grad_output, …)``: each output gradient is added at its argmax."""
    return Count(0, {ADD: numel(shape_of(args[0]))})


op_rule(aten.max_pool2d_with_indices_backward, aten.max_pool3d_with_indices_backward,
        aten.adaptive_max_pool2d_backward, aten.adaptive_max_pool3d_backward)(_max_pool_backward)


def _avg_pool_backward(ndim: int) -> Any:
    def count(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
        """``(grad_output, self, kernel_size, …)``: per output, 1 div and one add per tap."""
        outputs = numel(shape_of(args[0]))
        kernel = args[2]
        sizes = [kernel] if isinstance(kernel, int) else list(kernel)
        taps = math.prod(sizes * ndim if len(sizes) == 1 else sizes)
        return Count(0, {DIV: outputs, ADD: outputs * taps})

    return count


op_rule(aten.avg_pool2d_backward)(_avg_pool_backward(2))
op_rule(aten.avg_pool3d_backward)(_avg_pool_backward(3))


def _adaptive_avg_backward(ndim: int) -> Any:
    def count(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
        """``(grad_output, self)``: per output, 1 div and one add per element of its (unequal) window."""
        grad_shape, in_shape = shape_of(args[0]), shape_of(args[1])
        planes = numel(grad_shape[:-ndim])
        taps = math.prod(adaptive_window_total(i, o) for i, o in zip(in_shape[-ndim:], grad_shape[-ndim:]))
        return Count(0, {DIV: numel(grad_shape), ADD: planes * taps})

    return count


op_rule(aten._adaptive_avg_pool2d_backward)(_adaptive_avg_backward(2))
op_rule(aten._adaptive_avg_pool3d_backward)(_adaptive_avg_backward(3))


@op_rule(aten.embedding_dense_backward)
def count_embedding_backward(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(grad_output, indices, num_weights, padding_idx, scale_grad_by_freq)``: each looked-up row is added into
    the table's gradient, 1 add per element (rows at ``padding_idx`` included: the count is of shapes)."""
    return Count(0, {ADD: numel(shape_of(args[0]))})


@op_rule(aten._fused_rms_norm_backward)
def count_fused_rms_norm_backward(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(grad_out, input, normalized_shape, rstd, weight, output_mask)``, counted as the ops autograd runs for
    the decomposition ``x·rsqrt(mean(x²) + ε)·γ`` on other devices, per row of D: grad-input ``g·γ`` (D mul),
    ``g·rstd`` and ``Σ g·x`` (2D mul, D − 1 add), rsqrt's ``−½·rstd³`` (4 mul), the mean's ``/D`` (D div), the
    square's ``2·x·g`` (2D mul) and the sum of x's two gradients (D add); grad-weight ``Σ g·x̂`` over the rows
    (D mul per row, (rows − 1)·D add)."""
    elements = numel(shape_of(args[1]))
    size = numel(args[2])
    rows = elements // size
    scale = isinstance(args[4], torch.Tensor)
    want_input, want_weight = (bool(m) for m in args[5])
    ops: dict[str, Number] = {MUL: 0, ADD: 0}
    if want_input:
        ops = {MUL: (4 + int(scale)) * elements + 4 * rows, ADD: rows * (size - 1) + elements, DIV: elements}
    if want_weight:
        ops[MUL] += elements
        ops[ADD] += (rows - 1) * size
    return Count(0, ops)


_BAG_MEAN, _BAG_MAX = 1, 2  # `mode` of the embedding-bag ops: 0 sum, 1 mean, 2 max


@op_rule(aten._embedding_bag_backward)
def count_embedding_bag_backward(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(grad, indices, offsets, offset2bag, bag_size, maximum_indices, num_weights, scale_grad_by_freq, mode,
    sparse, per_sample_weights, padding_idx)``: for ``B`` bags of width ``E`` over ``n`` lookups, sum adds the
    bag's gradient into each looked-up row (n·E add; × its per-sample weight first, n·E mul); mean divides each
    bag's gradient by its size once (B·E div), then adds it likewise; max adds it at each output's argmax row
    (B·E add)."""
    grad_shape = shape_of(args[0])
    bag_elements, looked_up = numel(grad_shape), numel(shape_of(args[1])) * grad_shape[-1]
    mode = args[8]
    if mode == _BAG_MAX:
        return Count(0, {ADD: bag_elements})
    ops: dict[str, Number] = {ADD: looked_up}
    if mode == _BAG_MEAN:
        ops[DIV] = bag_elements
    if isinstance(args[10], torch.Tensor):
        ops[MUL] = looked_up
    return Count(0, ops)


@op_rule(aten._embedding_bag_per_sample_weights_backward)
def count_per_sample_weights_backward(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(grad, weight, indices, offsets, offset2bag, mode, padding_idx)``: each weight's gradient is the dot
    product of its bag's gradient with its looked-up row, E MACs per lookup."""
    return Count(numel(shape_of(args[2])) * shape_of(args[0])[-1])


def _upsample_backward(taps: int) -> Any:
    def count(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
        """``(grad_output, output_size, input_size, …)``: each output gradient times each of its ``taps``
        weights, added into that neighbour's gradient."""
        outputs = numel(shape_of(args[0]))
        return Count(0, {MUL: outputs * taps, ADD: outputs * taps})

    return count


@op_rule(aten.upsample_nearest1d_backward, aten.upsample_nearest2d_backward, aten.upsample_nearest3d_backward,
         aten._upsample_nearest_exact1d_backward, aten._upsample_nearest_exact2d_backward,
         aten._upsample_nearest_exact3d_backward)
def count_nearest_backward(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(grad_output, output_size, input_size, …)``: each output gradient is added into its source's."""
    return Count(0, {ADD: numel(shape_of(args[0]))})


op_rule(aten.upsample_linear1d_backward)(_upsample_backward(2))
op_rule(aten.upsample_bilinear2d_backward)(_upsample_backward(2 * 2))
op_rule(aten.upsample_trilinear3d_backward)(_upsample_backward(2 * 2 * 2))
op_rule(aten.upsample_bicubic2d_backward)(_upsample_backward(4 * 4))
