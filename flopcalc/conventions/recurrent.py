"""The RNN, GRU and LSTM rules of thop, ultralytics-thop, ptflops, DeepSpeed and calflops: each computes a
recurrent layer's cost from its hyperparameters and weight shapes, per time step and batch entry, in a forward
hook; none looks at the ops the layer runs.

Sources (file:line of the released packages): thop 0.1.1 ``thop/rnn_hooks.py:6`` (``_count_rnn_cell``),
``:24`` (``_count_gru_cell``), ``:56`` (``_count_lstm_cell``), ``:15,47,78`` (the cell hooks: x batch),
``:87,124,161`` (the layer hooks: layer 0 on the input size, later layers on ``hidden_size`` (x 2 when
bidirectional), x steps x batch as ``batch_first`` says); ultralytics-thop 2.2.3 ``thop/rnn_hooks.py:8``
(``_cell_evaluations``: steps x batch, or the rows of an unbatched input), ``:68`` (``_count_lstm_cell`` with
``proj_size``), ``:154`` (``count_lstm``: later layers on ``proj_size or hidden_size``); ptflops 0.7.5
``ptflops/pytorch_ops.py:105`` (``rnn_flops``: the weights' elements plus elementwise work per hidden unit),
``:130`` (``rnn_flops_counter_hook``: the forward-direction weights of each layer plus biases, x dim 0 x dim 1
of the input, x 2 when bidirectional), ``:163`` (the cell hook); DeepSpeed 0.19.8
``deepspeed/profiling/flops_profiler/profiler.py:1041`` (``_rnn_flops``: 2 x weights - gate rows per product),
``:1067``, ``:1095`` (the hooks, as ptflops'), ``:1112`` (``MODULE_HOOK_MAPPING``: FLOPs only, no MACs);
calflops 0.3.2 ``calflops/pytorch_ops.py:371-442`` (the same as DeepSpeed's).
"""

from __future__ import annotations

from flopcalc.conventions.base import Call, nn_class

RNN = nn_class("rnn.RNN", "rnn.RNNCell")
GRU = nn_class("rnn.GRU", "rnn.GRUCell")
LSTM = nn_class("rnn.LSTM", "rnn.LSTMCell")
CELLS = nn_class("rnn.RNNCellBase")
LAYERS = nn_class("rnn.RNN", "rnn.GRU", "rnn.LSTM")
"""The exact types thop, ptflops, DeepSpeed and calflops register (ultralytics-thop also their subclasses)."""
RECURRENT = LAYERS + nn_class("rnn.RNNCell", "rnn.GRUCell", "rnn.LSTMCell")

_GATES = {"rnn": 1, "gru": 3, "lstm": 4}
_ELEMENTWISE = {"rnn": 1, "gru": 7, "lstm": 10}
"""ptflops' and DeepSpeed's elementwise work per hidden unit and step: RNN the add of both products; GRU r's
hadamard, 3 adds of both states, 2 hadamards and an add; LSTM 4 adds, 3 ops for c, 3 for h."""


def kind(call: Call) -> str:
    """``rnn``, ``gru`` or ``lstm``, by the class the layer derives from (as the peers' ``isinstance``)."""
    f = call.facts
    return "lstm" if f.derives_from(*LSTM) else "gru" if f.derives_from(*GRU) else "rnn"


def _thop_cell(kind_: str, inputs: int, hidden: int, bias: bool, proj: int = 0) -> int:
    """thop's ``_count_{rnn,gru,lstm}_cell``: per step and batch entry."""
    bias_ops = 2 * hidden if bias else 0
    if kind_ == "rnn":
        return hidden * (inputs + hidden) + hidden + bias_ops
    if kind_ == "gru":
        state = (hidden + inputs) * hidden + hidden + bias_ops
        return 2 * state + (hidden + inputs) * hidden + hidden + bias_ops + hidden + 3 * hidden
    state = (inputs + (proj or hidden)) * hidden + hidden + bias_ops
    return 4 * state + 3 * hidden + hidden + hidden * proj


def thop(call: Call, ultralytics: bool) -> int:
    """What thop's (or ultralytics-thop's) hook adds for one call of a recurrent layer or cell."""
    f = call.facts
    kind_, shape = kind(call), call.input_shape
    hidden, bias = f.get("hidden_size"), bool(f.get("bias"))
    if f.derives_from(*CELLS):
        per_entry = _thop_cell(kind_, f.get("input_size"), hidden, bias)
        if ultralytics:
            return per_entry * (shape[0] if len(shape) == 2 else 1)
        return per_entry * shape[0]
    proj = f.get("proj_size", 0) if ultralytics and kind_ == "lstm" else 0
    directions = 2 if f.get("bidirectional") else 1
    stacked = (proj or hidden) * directions
    total = _thop_cell(kind_, f.get("input_size"), hidden, bias, proj) * directions
    total += (f.get("num_layers") - 1) * _thop_cell(kind_, stacked, hidden, bias, proj) * directions
    if ultralytics:
        return total * (shape[0] if len(shape) == 2 else shape[0] * shape[1])
    steps, batch = (shape[1], shape[0]) if f.get("batch_first") else (shape[0], shape[1])
    return total * steps * batch


def _weights(call: Call, suffix: str) -> tuple[int, int, int]:
    """Elements of ``weight_ih``, ``weight_hh`` and both biases for one layer (``_l0``, ... or ``""``)."""
    params = dict(call.facts.parameters)
    biases = params.get(f"bias_ih{suffix}", 0) + params.get(f"bias_hh{suffix}", 0) if call.facts.get("bias") else 0
    return params[f"weight_ih{suffix}"], params[f"weight_hh{suffix}"], biases


def _entries(call: Call) -> int:
    """ptflops' and DeepSpeed's multiplier: input dim 0 x dim 1 for a layer (batch x steps either way round),
    dim 0 for a cell."""
    shape = call.input_shape
    return shape[0] if call.facts.derives_from(*CELLS) else shape[0] * shape[1]


def _layers(call: Call) -> list[str]:
    f = call.facts
    return [""] if f.derives_from(*CELLS) else [f"_l{i}" for i in range(f.get("num_layers"))]


def ptflops(call: Call) -> int:
    """ptflops' ``rnn_flops_counter_hook`` / ``rnn_cell_flops_counter_hook`` for one call: one op per weight
    element (a MAC each), the biases and the elementwise work, of the forward direction, doubled when
    bidirectional."""
    f = call.facts
    elementwise = _ELEMENTWISE[kind(call)] * f.get("hidden_size")
    per_entry = sum(sum(_weights(call, layer)) + elementwise for layer in _layers(call))
    return per_entry * _entries(call) * (2 if f.get("bidirectional") else 1)


def deepspeed_flops(call: Call) -> int:
    """DeepSpeed's (and calflops') ``_rnn_forward_hook`` / ``_rnn_cell_forward_hook``: FLOPs only (the hook
    adds no MACs): 2 x weight elements - gate rows per product, the biases and ptflops' elementwise work."""
    f = call.facts
    hidden = f.get("hidden_size")
    gates = _GATES[kind(call)] * hidden
    total = 0
    for layer in _layers(call):
        ih, hh, biases = _weights(call, layer)
        total += 2 * ih - gates + 2 * hh - gates + _ELEMENTWISE[kind(call)] * hidden + biases
    return total * _entries(call) * (2 if f.get("bidirectional") else 1)
