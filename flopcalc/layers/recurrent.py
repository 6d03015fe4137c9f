"""Recurrent layers: RNN (tanh or ReLU), LSTM (with optional projection), GRU, and their single-step cells.

One per-step *cell* formula per kind, written once; a whole layer stack is composed from it as
``L·D·(cell(H_in) + (N_layers − 1)·cell(D·H_out))``: every layer after the first reads the concatenated
``D·H_out`` outputs of both directions of the layer below. ``nn.RNNCell``/``nn.LSTMCell``/``nn.GRUCell`` are the
cell formulas themselves (the LSTM cell with no projection, ``R = 0``).

Symbols: ``N`` batch, ``L`` sequence length, ``H_in`` input features, ``H`` hidden size, ``H_out`` size of the
recurrent state and of the output (``proj_size`` for an LSTM with projection, otherwise ``H``), ``R`` 1 if the
LSTM has a projection, ``B`` 1 if the layer has biases, ``D`` directions (2 if bidirectional), ``N_layers``;
``U`` 1 for an LSTMCell called on an unbatched input.

Conventions (docs/conventions.md), as PyTorch's cells compute (aten/src/ATen/native/RNN.cpp): both gate
projections ``x·W_ihᵀ + b_ih`` and ``h·W_hhᵀ + b_hh`` are MACs plus a bias add each, and are summed with one
add per gate element. The hidden projection runs at every step, the first one included (on the zero state),
because torch computes it. Gate nonlinearities are the activation formulas (sigmoid = exp + add + div,
tanh = exp, ReLU = compare). Not counted: dropout between layers (training only; inference is the default), the
stacking and concatenation of outputs (data movement). A packed sequence is bound as a single sequence of all
its tokens (``N = 1``, ``L`` = packed length): exact, because every count is linear in ``N·L``. Batch-first,
unbatched and packed calls bind the same formula with torch's order of output dimensions.

Backward (docs/conventions.md, "Backward"), cells only: the pointwise part's backward per state element, then
both gate projections as Linear's (dx, dh, dW_ih, dW_hh, the bias sums), ``g_x`` the input's flag and ``g_h``
the passed state's. The stacks are measured: their backward differs by device (see the conventions).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sympy as sp

from flopcalc.formula import Gradient, LayerFormula, OpKind, dims, flag, g_b, g_h, g_W, g_x
from flopcalc.layers.activation import RELU, SIGMOID, TANH, E
from flopcalc.registry import REGISTRY, Bound

if TYPE_CHECKING:
    from torch import nn

N, L, H_in, H, H_out, D, N_layers = dims("N L H_in H H_out D N_layers")
B, R, U = flag("B"), flag("R"), flag("U")

_ADD, _MUL = {OpKind.ADD.value: 1}, {OpKind.MUL.value: 1}


def _ops(*terms: tuple[LayerFormula | Mapping[str, int], sp.Expr]) -> dict[str, sp.Expr]:
    """Sum of ``(cost, element count)`` terms by op kind; a cost is an activation formula (over its ``E``
    elements) or a per-element ``{kind: n}``."""
    total: dict[str, sp.Expr] = {}
    for cost, count in terms:
        per_kind = cost.ops if isinstance(cost, LayerFormula) else cost
        for kind, expr in per_kind.items():
            n = sp.sympify(expr).xreplace({E: count}) if isinstance(cost, LayerFormula) else expr * count
            total[kind] = total.get(kind, sp.Integer(0)) + n
    return total


_UPSTREAM = 1 - (1 - g_x) * (1 - g_h) * (1 - g_W) * (1 - g_b)
"""1 when anything the cell reads needs a gradient: then the gate gradients are computed."""


def _gradients(*terms: tuple[LayerFormula | Mapping[str, int], sp.Expr]) -> dict[str, sp.Expr]:
    """Like :func:`_ops`, with an activation's cost its backward's (``g_x`` there: whether it runs)."""
    backward = [(cost.gradient("grad_input") if isinstance(cost, LayerFormula) else cost, count)
                for cost, count in terms]
    return {kind: sp.sympify(expr).xreplace({g_x: 1}) for kind, expr in _ops(*backward).items()}


def _cell_backward(gates: int, pointwise: Mapping[str, sp.Expr]) -> tuple[Gradient, Gradient]:
    """A cell's backward (docs/conventions.md, "Backward"), from the state's gradient: the pointwise part
    (``pointwise``, when anything upstream needs a gradient), then the two gate projections as Linear's:
    dx = dG·W_ih (``g_x``) and dh = dG·W_hh (``g_h``, the state passed in), dW_ih = dGᵀ·x and dW_hh = dGᵀ·h
    (``g_W``; the zero initial state's too, as torch multiplies it), and each bias sums dG over the batch."""
    grad_input = Gradient(
        macs=g_x * N * gates * H * H_in + g_h * N * gates * H * H,
        ops={kind: _UPSTREAM * expr for kind, expr in pointwise.items()},
    )
    grad_weight = Gradient(macs=g_W * N * gates * H * (H_in + H), ops={OpKind.ADD.value: g_b * 2 * (N - 1) * gates * H})
    return grad_input, grad_weight


def _gated_cell(name: str, description: str, gates: int, width: sp.Symbol, params: sp.Expr, macs: sp.Expr,
                pointwise: dict[str, sp.Expr], backward: tuple[Gradient, Gradient] | None = None) -> LayerFormula:
    """A cell whose two projections each give ``gates·H`` pre-activations plus a bias; output ``(N, width)``."""
    ops = {OpKind.BIAS_ADD.value: 2 * B * N * gates * H}
    for kind, expr in pointwise.items():
        ops[kind] = ops.get(kind, sp.Integer(0)) + expr
    grad_input, grad_weight = backward or (None, None)
    return LayerFormula(name=name, description=description, params=params, macs=macs, ops=ops,
                        output_shape=(N, width), grad_input=grad_input, grad_weight=grad_weight)


def _elman_cell(nonlinearity: str) -> LayerFormula:
    activation = TANH if nonlinearity == "tanh" else RELU
    return _gated_cell(
        f"rnn_{nonlinearity}_cell",
        f"Elman RNN step h' = {nonlinearity}(x·W_ihᵀ + b_ih + h·W_hhᵀ + b_hh) (nn.RNNCell)",
        gates=1,
        width=H,
        params=H * (H_in + H) + 2 * B * H,
        macs=N * H * (H_in + H),
        pointwise=_ops((_ADD, N * H), (activation, N * H)),
        backward=_cell_backward(1, _gradients((activation, N * H))),  # the nonlinearity's backward
    )


RNN_TANH_CELL, RNN_RELU_CELL = _elman_cell("tanh"), _elman_cell("relu")

LSTM_STEP = _gated_cell(
    "lstm_step",
    "LSTM step with optional projection: c' = f ⊙ c + i ⊙ g, h' = W_hr·(o ⊙ tanh(c'))",
    gates=4,
    width=H_out,
    params=4 * H * (H_in + H_out) + 8 * B * H + R * H_out * H,
    # four gates from the input and from the H_out-sized state, then the H_out×H projection of h if R = 1
    macs=N * 4 * H * (H_in + H_out) + R * N * H * H_out,
    pointwise=_ops(
        (_ADD, N * 4 * H),  # gate pre-activations: input part + hidden part
        (SIGMOID, 3 * N * H),  # input, forget and output gates
        (TANH, 2 * N * H),  # cell candidate g, and tanh(c')
        (_MUL, 3 * N * H),  # f ⊙ c, i ⊙ g, o ⊙ tanh(c')
        (_ADD, N * H),  # c' = f ⊙ c + i ⊙ g
    ),
)
LSTM_CELL = dataclasses.replace(
    LSTM_STEP.specialize("lstm_cell", "LSTM step without projection (nn.LSTMCell)", {H_out: H, R: 0}),
    **dict(zip(("grad_input", "grad_weight"), _cell_backward(4, _ops(
        (_gradients((SIGMOID, 3 * N * H), (TANH, 2 * N * H)), 1),  # the gates' and tanh(c')'s backward
        # dh'·tanh(c') and dh'·o; dc'·c, dc'·g, dc'·i for df, di, dg; dc'·f for the state's dc when g_h
        (_MUL, 5 * N * H + g_h * N * H),
        # an unbatched call (U) returns c' squeezed: c' has two uses in the cell, whose gradients it sums
        (_ADD, U * N * H),
    )))),
)

GRU_CELL = _gated_cell(
    "gru_cell",
    "GRU step h' = (1 − z) ⊙ n + z ⊙ h, n = tanh(W_in·x + b_in + r ⊙ (W_hn·h + b_hn)) (nn.GRUCell)",
    gates=3,
    width=H,
    params=3 * H * (H_in + H) + 6 * B * H,
    macs=N * 3 * H * (H_in + H),
    pointwise=_ops(
        (_ADD, 2 * N * H),  # r and z pre-activations: input part + hidden part
        (SIGMOID, 2 * N * H),  # r, z
        (_MUL, N * H), (_ADD, N * H),  # r ⊙ (W_hn·h + b_hn), plus W_in·x + b_in
        (TANH, N * H),  # n
        (_ADD, 2 * N * H), (_MUL, N * H),  # torch's form of the update: (h − n) ⊙ z + n
    ),
    backward=_cell_backward(3, _ops(
        (_gradients((SIGMOID, 2 * N * H), (TANH, N * H)), 1),  # r, z and n's backward
        (_MUL, 3 * N * H), (_ADD, N * H),  # dh'·z, dh'·(h − n), and dn = dh' − dh'·z; dr = dn_a·(W_hn·h + b_hn)
        # dn_a·r, the gradient of W_hn·h + b_hn: when its weight, bias or h needs one
        (_MUL, (1 - (1 - g_W) * (1 - g_b) * (1 - g_h)) * N * H),
        # the sums of two gradients: n's (used in h − n and + n) and h's (in W_hh·h and h − n) when it needs one
        (_ADD, N * H + g_h * N * H),
    )),
)


def _stack(cell: LayerFormula, width: sp.Symbol, name: str, description: str) -> LayerFormula:
    """``N_layers`` layers of ``D`` directions over ``L`` steps; layers above the first read ``D·width``."""

    def layers(expr: sp.Expr) -> sp.Expr:
        expr = sp.sympify(expr)
        upper = expr.xreplace({H_in: D * width})
        return N_layers * expr if upper == expr else expr + (N_layers - 1) * upper

    return LayerFormula(
        name=name,
        description=description,
        params=D * layers(cell.params),
        macs=L * D * layers(cell.macs),
        ops={kind: L * D * layers(expr) for kind, expr in cell.ops.items()},
        output_shape=(L, N, D * width),
    )


RNN_TANH = _stack(RNN_TANH_CELL, H, "rnn_tanh", "Multi-layer Elman RNN with tanh (nn.RNN)")
RNN_RELU = _stack(RNN_RELU_CELL, H, "rnn_relu", "Multi-layer Elman RNN with ReLU (nn.RNN, nonlinearity='relu')")
LSTM = _stack(LSTM_STEP, H_out, "lstm", "Multi-layer LSTM, optionally with projections (nn.LSTM)")
GRU = _stack(GRU_CELL, H, "gru", "Multi-layer GRU (nn.GRU)")

REGISTRY.add_formula(RNN_TANH_CELL, RNN_RELU_CELL, LSTM_STEP, LSTM_CELL, GRU_CELL, RNN_TANH, RNN_RELU, LSTM, GRU)


def _with_output_shape(formula: LayerFormula, shape: tuple[sp.Expr, ...]) -> LayerFormula:
    """The same formula (and name) with torch's output layout for this call: only the dimension order differs."""
    return dataclasses.replace(formula, output_shape=shape)


_STACKS = {"RNN_TANH": RNN_TANH, "RNN_RELU": RNN_RELU, "LSTM": LSTM, "GRU": GRU}


def bind_rnn(module: nn.RNNBase, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    """nn.RNN/LSTM/GRU on a batched, unbatched or packed input (``input`` positional or keyword)."""
    from torch.nn.utils.rnn import PackedSequence

    x = args[0] if args else kwargs["input"]
    formula = _STACKS[module.mode]
    width = D * (H_out if formula is LSTM else H)
    if isinstance(x, PackedSequence):
        steps, batch = x.data.shape[0], 1
        layout: tuple[sp.Expr, ...] = (L, width)
    elif x.dim() == 2:
        steps, batch = x.shape[0], 1
        layout = (L, width)
    else:
        steps, batch = (x.shape[1], x.shape[0]) if module.batch_first else (x.shape[0], x.shape[1])
        layout = (N, L, width) if module.batch_first else (L, N, width)
    values = {
        "N": batch, "L": steps, "H_in": module.input_size, "H": module.hidden_size,
        "D": 2 if module.bidirectional else 1, "N_layers": module.num_layers, "B": int(module.bias),
    }
    if formula is LSTM:
        values.update({"H_out": module.proj_size or module.hidden_size, "R": int(module.proj_size > 0)})
    return Bound(_with_output_shape(formula, layout), values)


def bind_cell(module: nn.RNNCellBase, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    """nn.RNNCell/LSTMCell/GRUCell on a batched ``(N, H_in)`` or unbatched ``(H_in,)`` input."""
    from torch import nn

    x = args[0] if args else kwargs["input"]
    if isinstance(module, nn.LSTMCell):
        formula = LSTM_CELL
    elif isinstance(module, nn.GRUCell):
        formula = GRU_CELL
    else:
        formula = RNN_TANH_CELL if module.nonlinearity == "tanh" else RNN_RELU_CELL
    values = {"N": x.shape[0] if x.dim() == 2 else 1, "H_in": module.input_size, "H": module.hidden_size,
              "B": int(module.bias)}
    if formula is LSTM_CELL:
        values["U"] = int(x.dim() == 1)
    layout = (N, H) if x.dim() == 2 else (H,)
    return Bound(_with_output_shape(formula, layout), values)


@REGISTRY.on_first_lookup
def _bind() -> None:
    from torch import nn

    REGISTRY.bind((nn.RNN, nn.LSTM, nn.GRU), bind_rnn)
    REGISTRY.bind((nn.RNNCell, nn.LSTMCell, nn.GRUCell), bind_cell)
