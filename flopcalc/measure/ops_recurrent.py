"""Fused recurrent kernels, counted as the per-timestep ops that PyTorch's unfused cells execute.

On the meta device (and wherever no fused kernel applies: GRU and RNN on CPU, LSTM with projections) an RNN
runs as ``addmm``/``mm`` plus elementwise ops per timestep, which the linear-algebra and elementwise rules count.
Fused kernels hide those ops: ``mkldnn_rnn_layer`` (CPU LSTM, one op per layer and direction), ``_cudnn_rnn``
and ``miopen_rnn`` (whole multi-layer stacks on GPUs), ``_thnn_fused_lstm_cell``/``_thnn_fused_gru_cell``
(the pointwise part of a CUDA cell, after two separate ``mm`` gate projections). Each rule here replays the
unfused cell of aten/src/ATen/native/RNN.cpp op by op through the registered rules, so a fused and an unfused
run give identical counts. Every count is linear in the number of tokens (timesteps × batch), which is how a
packed sequence (a flat ``(tokens, H_in)`` input) is counted exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from flopcalc.formula import Number, OpKind
from flopcalc.measure.core import ZERO, Count, cost_of, numel, op_rule, shape_of, stand_in, zero_cost

aten = torch.ops.aten

RNN_RELU, RNN_TANH, LSTM, GRU = 0, 1, 2, 3
"""The ``mode`` argument of the fused kernels (cuDNN's cudnnRNNMode_t; ideep's rnn_kind uses the same values)."""

_GATES = {RNN_RELU: 1, RNN_TANH: 1, LSTM: 4, GRU: 3}


def _unary(op: Any, n: Number, h: Number) -> Count:
    x = stand_in(n, h)
    return cost_of(op, x, out=x)


def _binary(op: Any, n: Number, h: Number) -> Count:
    x = stand_in(n, h)
    return cost_of(op, x, x, out=x)


def _projection(n: Number, features: Number, outputs: Number, bias: bool) -> Count:
    """``linear(x, W, b)`` on ``(n, features)``: ``addmm`` with a bias, ``mm`` without."""
    x, w_t, y = stand_in(n, features), stand_in(features, outputs), stand_in(n, outputs)
    if bias:
        return cost_of(aten.addmm.default, stand_in(outputs), x, w_t, out=y)
    return cost_of(aten.mm.default, x, w_t, out=y)


def _pointwise(mode: int, n: Number, h: Number) -> Count:
    """Everything a cell does after its two gate projections, for ``n`` tokens of hidden size ``h``."""
    if mode == GRU:
        total = _binary(aten.add_.Tensor, n, h) + _binary(aten.add_.Tensor, n, h)  # r and z: input + hidden part
        total += _unary(aten.sigmoid_.default, n, h) + _unary(aten.sigmoid_.default, n, h)
        total += _binary(aten.mul_.Tensor, n, h) + _binary(aten.add.Tensor, n, h)  # i_n + r ⊙ h_n
        total += _unary(aten.tanh_.default, n, h)  # n
        return total + _binary(aten.sub.Tensor, n, h) + _binary(aten.mul_.Tensor, n, h) + _binary(
            aten.add_.Tensor, n, h
        )  # h' = (h − n) ⊙ z + n
    total = _binary(aten.add_.Tensor, n, _GATES[mode] * h)  # pre-activations: input part + hidden part
    if mode == LSTM:
        total += sum((_unary(aten.sigmoid_.default, n, h) for _ in range(3)), ZERO)  # i, f, o
        total += _unary(aten.tanh_.default, n, h)  # g
        total += sum((_binary(aten.mul.Tensor, n, h) for _ in range(3)), ZERO)  # f ⊙ c, i ⊙ g, o ⊙ tanh(c')
        return total + _binary(aten.add_.Tensor, n, h) + _unary(aten.tanh.default, n, h)  # c', tanh(c')
    return total + _unary(aten.tanh.default if mode == RNN_TANH else aten.relu.default, n, h)


def cell_count(mode: int, n: Number, h_in: Number, h: Number, h_out: Number, bias: bool, proj: bool) -> Count:
    """One step of an unfused cell for ``n`` tokens: gate projections, pointwise part, LSTM projection."""
    gates = _GATES[mode]
    total = _projection(n, h_in, gates * h, bias) + _projection(n, h_out, gates * h, bias) + _pointwise(mode, n, h)
    if proj:
        total += _projection(n, h, h_out, bias=False)
    return total


def _tokens(x: Any) -> Number:
    """Timesteps × batch of an RNN input: every dimension but the feature one (packed inputs are 2-d)."""
    shape = shape_of(x)
    return numel(shape[:-1])


@op_rule(aten.mkldnn_rnn_layer)
def count_mkldnn_rnn_layer(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """One layer and direction: weight0 ``(G·H, H_in)``, weight1 ``(G·H, H)``, ``has_biases`` and ``mode``."""
    x, w_ih, w_hh = args[0], args[1], args[2]
    mode, has_biases = args[9], args[12]
    hidden = shape_of(w_ih)[0] // _GATES[mode]
    return cell_count(mode, _tokens(x), shape_of(w_ih)[1], hidden, shape_of(w_hh)[1], has_biases, proj=False)


@op_rule(aten.mkldnn_rnn_layer_backward)
def count_mkldnn_rnn_layer_backward(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    """``(input, weight1, weight2, weight3, weight4, hx_, cx_tmp, output, hy_, cy_, grad_output, grad_hy,
    grad_cy, reverse, mode, hidden_size, num_layers, has_biases, train, bidirectional, batch_sizes, …)``: one
    LSTM layer and direction, counted as the unfused cells' backward step by step (as on the meta device) for
    the gradients autograd needs, though the kernel computes them all: per state element the gates' activation
    backward (3 sigmoid, 2 tanh) and 5 mul (dh'·tanh(c'), dh'·o, dc'·c, dc'·g, dc'·i), + 1 (dc'·f) where the
    previous cell state needs a gradient; the sums of two gradients that meet at a state: dh of every token but
    each sequence's last when the output gets a gradient (its own and the next step's), dc of every such token
    (tanh(c')'s and the next step's), and the last token's dh and dc when ``grad_hy``/``grad_cy`` is given (and,
    for dh, ``grad_output``); the products dx, dh, dW_ih, dW_hh, and the biases' gradients summed over all
    tokens. A weight's per-step gradients are summed within its products' MACs, as one product over the
    sequence does (docs/conventions.md, "Gradient sums")."""
    x, w_ih, w_hh, b_ih, hx, cx = args[0], args[1], args[2], args[3], args[5], args[6]
    grad_output, grad_hy, grad_cy, has_biases = args[10], args[11], args[12], args[17]
    tokens, batch = _tokens(x), numel(shape_of(hx)[:-1])
    gates, features = shape_of(w_ih)
    hidden, state = gates // 4, shape_of(w_hh)[1]
    total = sum((_unary_backward(aten.sigmoid_backward.default, tokens, hidden) for _ in range(3)), ZERO)
    total += sum((_unary_backward(aten.tanh_backward.default, tokens, hidden) for _ in range(2)), ZERO)
    total += sum((_binary(aten.mul.Tensor, tokens, hidden) for _ in range(5)), ZERO)
    later = tokens - batch  # tokens after each sequence's first: their previous state needs a gradient
    total += _binary(aten.mul.Tensor, later + (batch if cx.requires_grad else 0), hidden)
    hidden_sums = (later + batch * (grad_hy is not None)) * state if grad_output is not None else 0
    cell_sums = (later + batch * (grad_cy is not None)) * hidden
    macs = tokens * gates * features * int(x.requires_grad) + (later + batch * int(hx.requires_grad)) * gates * state
    total += Count(macs, {OpKind.ADD.value: hidden_sums + cell_sums})
    if w_ih.requires_grad:
        total += Count(tokens * gates * (features + state))
    if has_biases and b_ih.requires_grad:
        total += Count(0, {OpKind.ADD.value: 2 * (tokens - 1) * gates})
    return total


def _unary_backward(op: Any, n: Number, h: Number) -> Count:
    x = stand_in(n, h)
    return cost_of(op, x, x, out=x)


def _stack_count(x: Any, weights: Sequence[Any], stride: int, mode: int, proj_size: int) -> Count:
    """A cuDNN/MIOpen stack: per layer and direction, ``stride`` weights ``w_ih, w_hh[, b_ih, b_hh][, w_hr]``."""
    proj = proj_size > 0
    bias = stride - 2 - int(proj) == 2
    total = ZERO
    for first in range(0, len(weights), stride):
        w_ih, w_hh = shape_of(weights[first]), shape_of(weights[first + 1])
        hidden = w_ih[0] // _GATES[mode]
        total += cell_count(mode, _tokens(x), w_ih[1], hidden, w_hh[1], bias, proj)
    return total


@op_rule(aten._cudnn_rnn)
def count_cudnn_rnn(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    return _stack_count(args[0], args[1], args[2], args[6], args[8])


@op_rule(aten.miopen_rnn)
def count_miopen_rnn(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    return _stack_count(args[0], args[1], args[2], args[5], proj_size=0)


def _fused_cell(mode: int, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Count:
    """``(input_gates, hidden_gates, state, input_bias, hidden_bias)``: the gate matmuls ran as separate
    ``mm`` ops, so this is the two bias adds (one per gate element each, as ``addmm`` counts them) plus the
    pointwise part."""
    gates_shape = shape_of(args[0])
    n, width = numel(gates_shape[:-1]), gates_shape[-1]
    biases = [b for b in (*args[3:5], kwargs.get("input_bias"), kwargs.get("hidden_bias")) if b is not None]
    bias_adds = Count(0, {OpKind.BIAS_ADD.value: len(biases) * n * width}) if biases else ZERO
    return bias_adds + _pointwise(mode, n, width // _GATES[mode])


@op_rule(aten._thnn_fused_lstm_cell)
def count_fused_lstm_cell(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    return _fused_cell(LSTM, args, kwargs)


@op_rule(aten._thnn_fused_gru_cell)
def count_fused_gru_cell(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Count:
    return _fused_cell(GRU, args, kwargs)


zero_cost(
    "cuDNN weight flattening and dropout-state setup: copies and RNG state, no arithmetic on activations",
    [aten._cudnn_rnn_flatten_weight, aten._cudnn_init_dropout_state],
)
