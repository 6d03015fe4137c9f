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

Backward (docs/conventions.md, "Backward"): a cell's is the pointwise part's backward per state element, then
both gate projections as Linear's (dx, dh, dW_ih, dW_hh, the bias sums), ``g_x`` the input's flag and ``g_h``
the passed state's. A stack's is its cells', step by step, in every layer whose backward runs, plus the sums
the autograd engine runs between the steps: the two gradients that meet at each state (the output's and the
next step's), the steps' bias gradients, and, bidirectional, the two directions' input gradients. A weight's
per-step gradients are summed within its products' MACs (``L·N`` per weight element, as one product over the
sequence computes it). Flags of a stack: ``g_x`` (the input), ``g_h`` (the initial state given needs a
gradient), ``g_y``/``g_hn``/``g_cn`` (the output, final hidden and cell state receive a gradient), ``g_W1``/
``g_b1`` (the first layer's weights/biases train), ``n_W``/``n_b``/``n_T`` (layers above the first whose
weights / biases / any parameter train), ``n_A`` (layers whose backward runs: from the lowest one whose input,
state or parameters need a gradient up), ``n_X`` (layers above the first whose input needs one) and ``P_d`` (1 when
dropout runs between the layers: training mode; its backward multiplies by the mask).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import sympy as sp

from flopcalc.formula import Gradient, LayerFormula, OpKind, dims, flag, g_b, g_cn, g_h, g_hn, g_W, g_x, g_y
from flopcalc.layers.activation import RELU, SIGMOID, TANH, E
from flopcalc.registry import REGISTRY, Bound

if TYPE_CHECKING:
    from torch import nn

N, L, H_in, H, H_out, D, N_layers = dims("N L H_in H H_out D N_layers")
B, R, U = flag("B"), flag("R"), flag("U")
g_W1, g_b1, n_W, n_b, n_T, n_A, n_X, P_d = (
    flag(name) for name in ("g_W1", "g_b1", "n_W", "n_b", "n_T", "n_A", "n_X", "P_d"))

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


StepBackward = Callable[[sp.Expr, sp.Expr], dict[str, sp.Expr]]
"""A cell's pointwise backward for one step, ``step(prev, trains)``: ``prev`` 1 when the state passed in needs
a gradient, ``trains`` 1 when the cell has a trainable parameter."""


def _elman_step(activation: LayerFormula) -> StepBackward:
    return lambda prev, trains: _gradients((activation, N * H))  # the nonlinearity's backward


def _lstm_step(prev: sp.Expr, trains: sp.Expr) -> dict[str, sp.Expr]:
    return _ops(
        (_gradients((SIGMOID, 3 * N * H), (TANH, 2 * N * H)), 1),  # the gates' and tanh(c')'s backward
        # dh'·tanh(c') and dh'·o; dc'·c, dc'·g, dc'·i for df, di, dg; dc'·f for the state's dc when it needs one
        (_MUL, 5 * N * H + prev * N * H),
    )


def _gru_step(prev: sp.Expr, trains: sp.Expr) -> dict[str, sp.Expr]:
    return _ops(
        (_gradients((SIGMOID, 2 * N * H), (TANH, N * H)), 1),  # r, z and n's backward
        (_MUL, 3 * N * H), (_ADD, N * H),  # dh'·z, dh'·(h − n), and dn = dh' − dh'·z; dr = dn_a·(W_hn·h + b_hn)
        # dn_a·r, the gradient of W_hn·h + b_hn: when its weight, bias or h needs one
        (_MUL, (1 - (1 - trains) * (1 - prev)) * N * H),
        # the sums of two gradients: n's (used in h − n and + n) and h's (in W_hh·h and h − n) when it needs one
        (_ADD, N * H + prev * N * H),
    )


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
        backward=_cell_backward(1, _elman_step(activation)(g_h, 1 - (1 - g_W) * (1 - g_b))),
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
        (_lstm_step(g_h, 1 - (1 - g_W) * (1 - g_b)), 1),
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
    backward=_cell_backward(3, _gru_step(g_h, 1 - (1 - g_W) * (1 - g_b))),
)


def _plus(*terms: Mapping[str, sp.Expr]) -> dict[str, sp.Expr]:
    total: dict[str, sp.Expr] = {}
    for term in terms:
        for kind, expr in term.items():
            total[kind] = total.get(kind, sp.Integer(0)) + expr
    return {kind: expr for kind, expr in total.items() if expr != 0}


def _stack_backward(gates: int, width: sp.Symbol, step: StepBackward,
                    cell_sums: bool = False) -> tuple[Gradient, Gradient]:
    """A stack's backward (docs/conventions.md, "Backward"): its cells' over the ``L`` steps of each direction of
    the ``n_A`` layers whose backward runs, plus the engine's sums between the steps. The first step's state
    needs a gradient when a given one does (``g_h``), every later step's always; ``width`` is the state's
    (``H_out``); ``cell_sums``: an LSTM's cell state, whose two gradients (tanh(c')'s and the next step's or
    ``c_n``'s) meet at every step but the last unless ``c_n`` gets one."""

    def steps(trains: sp.Expr) -> dict[str, sp.Expr]:
        first, later = step(g_h, trains), step(sp.Integer(1), trains)
        return _plus(first, {kind: (L - 1) * expr for kind, expr in later.items()})

    still, trained = steps(sp.Integer(0)), steps(sp.Integer(1))
    training_layers = 1 - (1 - g_W1) * (1 - g_b1) + n_T  # GRU's dn_a·r on the first step depends on them
    pointwise = _plus(
        {kind: D * n_A * expr for kind, expr in still.items()},
        {kind: D * training_layers * (trained.get(kind, 0) - expr) for kind, expr in still.items()},
    )
    inputs = g_x * H_in + n_X * D * width  # the widths of the layer inputs that need a gradient
    sums = _plus(
        # h: the output's gradient (every layer's but the top one's, which needs g_y) meets the next step's or h_n's
        {OpKind.ADD.value: (n_X + g_y) * D * (L - 1 + g_hn) * N * width},
        {OpKind.ADD.value: n_A * D * (L - 1 + g_cn) * N * H} if cell_sums else {},
        {OpKind.ADD.value: (D - 1) * L * N * inputs},  # both directions read the same input
        # dropout between layers (training): the gradient of an upper layer's input times the mask
        {OpKind.MUL.value: P_d * n_X * L * N * D * width},
    )
    projection = R * L * N * H * H_out if width is H_out else 0  # an LSTM's h = W_hr·m: dm = dh·W_hr, dW_hr
    grad_input = Gradient(
        macs=D * L * N * gates * H * inputs + D * n_A * ((L - 1 + g_h) * N * gates * H * width + projection),
        ops=_plus(pointwise, sums),
    )
    weights = g_W1 * (H_in + width) + n_W * (D * width + width)
    grad_weight = Gradient(
        macs=D * L * N * gates * H * weights + D * (g_W1 + n_W) * projection,
        ops={OpKind.ADD.value: D * 2 * (L * N - 1) * gates * H * (g_b1 + n_b)},
    )
    return grad_input, grad_weight


def _stack(cell: LayerFormula, width: sp.Symbol, name: str, description: str,
           backward: tuple[Gradient, Gradient]) -> LayerFormula:
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
        grad_input=backward[0],
        grad_weight=backward[1],
    )


RNN_TANH = _stack(RNN_TANH_CELL, H, "rnn_tanh", "Multi-layer Elman RNN with tanh (nn.RNN)",
                  _stack_backward(1, H, _elman_step(TANH)))
RNN_RELU = _stack(RNN_RELU_CELL, H, "rnn_relu", "Multi-layer Elman RNN with ReLU (nn.RNN, nonlinearity='relu')",
                  _stack_backward(1, H, _elman_step(RELU)))
LSTM = _stack(LSTM_STEP, H_out, "lstm", "Multi-layer LSTM, optionally with projections (nn.LSTM)",
              _stack_backward(4, H_out, _lstm_step, cell_sums=True))
GRU = _stack(GRU_CELL, H, "gru", "Multi-layer GRU (nn.GRU)", _stack_backward(3, H, _gru_step))

REGISTRY.add_formula(RNN_TANH_CELL, RNN_RELU_CELL, LSTM_STEP, LSTM_CELL, GRU_CELL, RNN_TANH, RNN_RELU, LSTM, GRU)


def _with_output_shape(formula: LayerFormula, shape: tuple[sp.Expr, ...]) -> LayerFormula:
    """The same formula (and name) with torch's output layout for this call: only the dimension order differs."""
    return dataclasses.replace(formula, output_shape=shape)


_STACKS = {"RNN_TANH": RNN_TANH, "RNN_RELU": RNN_RELU, "LSTM": LSTM, "GRU": GRU}


def _stack_flags(module: nn.RNNBase, x: Any, state: Any) -> dict[str, int]:
    """The backward flags only the module tells (which layers train, dropout between them in training) and the
    layers whose backward runs: a layer's runs when its input, the initial state or one of its parameters needs
    a gradient."""
    from flopcalc.trace import tensors_in

    weights, biases = [False] * module.num_layers, [False] * module.num_layers
    for name, param in module.named_parameters():
        layer = int(name.rsplit("_l", 1)[1].split("_")[0])  # weight_ih_l0, bias_hh_l1_reverse, weight_hr_l0
        trains = biases if name.startswith("bias") else weights
        trains[layer] = trains[layer] or param.requires_grad
    runs = [x.requires_grad or any(t.requires_grad for t in tensors_in(state))]
    for layer in range(module.num_layers):
        runs.append(runs[-1] or weights[layer] or biases[layer])
    upper = range(1, module.num_layers)
    return {
        "g_W1": int(weights[0]), "g_b1": int(biases[0]), "n_W": sum(weights[1:]), "n_b": sum(biases[1:]),
        "n_T": sum(weights[i] or biases[i] for i in upper), "n_A": sum(runs[1:]), "n_X": sum(runs[i] for i in upper),
        "P_d": int(module.training and module.dropout > 0),
    }


def bind_rnn(module: nn.RNNBase, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    """nn.RNN/LSTM/GRU on a batched, unbatched or packed input (``input`` positional or keyword); a packed
    sequence's backward is measured (its steps shrink with the batch: the formula's ``L·N`` steps do not)."""
    from torch.nn.utils.rnn import PackedSequence

    x = args[0] if args else kwargs["input"]
    state = args[1] if len(args) > 1 else kwargs.get("hx")
    formula = _STACKS[module.mode]
    width = D * (H_out if formula is LSTM else H)
    if isinstance(x, PackedSequence):
        steps, batch = x.data.shape[0], 1
        formula = dataclasses.replace(formula, grad_input=None, grad_weight=None)
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
    if module.mode == "LSTM":
        values.update({"H_out": module.proj_size or module.hidden_size, "R": int(module.proj_size > 0)})
    data = x.data if isinstance(x, PackedSequence) else x
    return Bound(_with_output_shape(formula, layout), values, _stack_flags(module, data, state))


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
