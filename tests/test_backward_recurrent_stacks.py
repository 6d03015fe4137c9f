"""Backward formulas of the recurrent stacks (nn.RNN, nn.LSTM, nn.GRU): by hand, and formula == measurement per
row over random hyperparameters, on the meta device (the unfused cells, step by step) and on the CPU (the input
projection of a whole sequence as one product, an LSTM layer as one mkldnn kernel), which give the same numbers."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import flopcalc
from flopcalc import Status

PROPERTY = settings(max_examples=30, deadline=None, derandomize=True)
DEVICES = ("meta", "cpu")


class Stack(nn.Module):
    """A stack called with or without an initial state, returning everything, its output or its final state."""

    def __init__(self, rnn: nn.RNNBase, returns: str = "all") -> None:
        super().__init__()
        self.rnn, self.returns = rnn, returns

    def forward(self, x: torch.Tensor, *state: torch.Tensor) -> object:
        output, final = self.rnn(x, (tuple(state) if len(state) == 2 else state[0]) if state else None)
        return {"all": (output, final), "output": output, "final": final}[self.returns]


def stack_backward(build, device: str, x_shape: tuple[int, ...], *, x_grad: bool = False,
                   state_shapes: tuple[tuple[int, ...], ...] = (), state_grad: bool = False, returns: str = "all",
                   frozen: tuple[int, ...] = (), training: bool = False
                   ) -> tuple[int, dict[str, int], int, dict[str, int]]:
    """(grad-input MACs, ops, grad-weight MACs, ops) of the stack's row, checked against the measurement."""
    with torch.device(device):
        rnn = build()
        x = torch.randn(*x_shape, requires_grad=x_grad)
        state = [torch.randn(*shape, requires_grad=state_grad) for shape in state_shapes]
    for name, param in rnn.named_parameters():
        if any(name.endswith((f"_l{layer}", f"_l{layer}_reverse")) for layer in frozen):
            param.requires_grad_(False)
    report = flopcalc.analyze(Stack(rnn, returns), [x, *state] if state else x, device=device, backward=True,
                              training=training)
    b = report.row("rnn").backward
    assert b.status is Status.MATCH, (device, b.mismatches)
    assert b.grad_input is not None and b.grad_weight is not None
    return b.grad_input.macs, dict(b.grad_input.ops), b.grad_weight.macs, dict(b.grad_weight.ops)


def test_one_layer_lstm_by_hand():
    for device in DEVICES:
        # LSTM(4, 3), 2 steps of one sample, no state given, nothing upstream needs a gradient. 4 gates of H = 3.
        # grad-input: dh of the second step's previous state 12·3 = 36 MACs. Per state element and step the gates'
        # 3 sigmoid and 2 tanh backward (1 add + 2 mul each) and 5 mul: 2·3·5 = 30 add, 2·3·15 = 90 mul; dc'·f
        # for the second step's previous cell state: 3 mul. The engine's sums: h's two gradients (the output's and
        # the next step's, or h_n's) at both steps, 2·3 = 6 add, and c's (tanh(c')'s and the next step's, or
        # c_n's), 6 add: 42 add, 93 mul.
        # grad-weight: dW_ih = 2 steps·12·4 = 96, dW_hh = 2·12·3 = 72 MACs (the steps' gradients summed within);
        # both biases sum 2·1 rows: 2·(2 − 1)·12 = 24 add.
        got = stack_backward(lambda: nn.LSTM(4, 3), device, (2, 1, 4))
        assert got == (36, {"add": 42, "mul": 93}, 168, {"add": 24})
        # 3 steps of 2 samples, input and initial state need a gradient, only the output is used (no gradient
        # reaches h_n, c_n). grad-input: dx 3·2·12·4 = 288 and dh at every step, the first's given state
        # included, 3·2·12·3 = 216: 504 MACs. 3·2·3 = 18 state elements over the steps: 90 add, 270 mul, + 18
        # mul for dc'·f; sums of h's and c's two gradients at the 2 steps before the last: 2·6 + 2·6 = 24 add.
        # grad-weight: 3·2·12·(4 + 3) = 504 MACs; biases 2·(3·2 − 1)·12 = 120 add.
        got = stack_backward(lambda: nn.LSTM(4, 3), device, (3, 2, 4), x_grad=True, state_shapes=((1, 2, 3),) * 2,
                             state_grad=True, returns="output")
        assert got == (504, {"add": 114, "mul": 288}, 504, {"add": 120})


def test_two_layer_bidirectional_gru_by_hand():
    for device in DEVICES:
        # GRU(4, 3, 2 layers, bidirectional), 2 steps of one sample; the second layer reads 2·3 = 6 features.
        # grad-input: dx of the second layer (its input comes from trained layers) 2 directions·2 steps·9·6 = 216;
        # dh of each second step's previous state, 2 layers·2 directions·9·3 = 108: 324 MACs.
        # Per state element: r, z sigmoid and n tanh backward (3 add, 6 mul), dh'·z, dh'·(h − n), dr (3 mul),
        # dn = dh' − dh'·z and the sum of n's two gradients (2 add), dn_a·r (1 mul: the layer trains), and at
        # the second step the sum of the previous h's two gradients in the cell (1 add): (5 + 6) add and
        # (10 + 10) mul per element over the two steps, times 3 elements and 4 layer-directions: 132 add, 240 mul.
        # The engine's sums: h's two gradients (from above or the output, and from the next step or h_n) at
        # every step: 2 layers·2 directions·2 steps·3 = 24 add; the two directions' gradients of the second
        # layer's input: 2 steps·6 = 12 add. 168 add in all.
        # grad-weight: 2 directions·2 steps·9·((4 + 3) + (6 + 3)) = 576 MACs; the 4 biases of 2 layers and
        # 2 directions sum 2 rows each: 2·2·2·(2 − 1)·9 = 72 add.
        got = stack_backward(lambda: nn.GRU(4, 3, num_layers=2, bidirectional=True), device, (2, 1, 4))
        assert got == (324, {"add": 168, "mul": 240}, 576, {"add": 72})


def test_rnn_with_a_frozen_first_layer_by_hand():
    for device in DEVICES:
        # RNN(4, 3, 2 layers, tanh), layer 0 frozen, 3 steps of 2 samples: only the second layer's backward runs,
        # and its input needs no gradient. grad-input: dh of the 2 later steps 2·2·3·3 = 36 MACs; tanh's backward
        # on 3·2·3 = 18 elements: 18 add, 36 mul; h's two gradients meet at every step: 18 add.
        # grad-weight: the second layer's 3·2·3·(3 + 3) = 108 MACs; its biases 2·(6 − 1)·3 = 30 add.
        build = lambda: nn.RNN(4, 3, num_layers=2)  # noqa: E731
        assert stack_backward(build, device, (3, 2, 4), frozen=(0,)) == (36, {"add": 36, "mul": 36}, 108, {"add": 30})
        # The input needs a gradient: the frozen layer's backward runs too, without its weights' gradients.
        # dx: layer 0 3·2·3·4 = 72, layer 1 3·2·3·3 = 54; dh 2 layers·36 = 72: 198 MACs. tanh's backward on 36
        # elements: 36 add, 72 mul; h sums in both layers: 36 add.
        got = stack_backward(build, device, (3, 2, 4), x_grad=True, frozen=(0,))
        assert got == (198, {"add": 72, "mul": 72}, 108, {"add": 30})


def test_dropout_between_layers_in_training_by_hand():
    for device in DEVICES:
        # RNN(4, 3, 2 layers, dropout 0.5) in training, 3 steps of 2 samples, everything trains. grad-input: the
        # second layer's dx 3·2·3·3 = 54, dh of the later steps in both layers 2·2·2·3·3 = 72: 126 MACs. tanh's
        # backward on 2·18 elements: 36 add, 72 mul; h sums 2 layers·3 steps·6 = 36 add; the dropout mask times
        # the gradient of the second layer's input: 3·2·3 = 18 mul. grad-weight: 3·2·3·(4 + 3) + 3·2·3·(3 + 3)
        # = 234 MACs; 4 biases 2·2·(6 − 1)·3 = 60 add.
        got = stack_backward(lambda: nn.RNN(4, 3, num_layers=2, dropout=0.5), device, (3, 2, 4), training=True)
        assert got == (126, {"add": 72, "mul": 90}, 234, {"add": 60})


def test_cpu_and_meta_count_the_same():
    """The cases that differed: the CPU's whole-sequence input projection (GRU, RNN, LSTM with projection: a weight
    gradient summed within one product instead of step by step), and a CPU LSTM of several layers taking its
    initial state layer by layer (or direction by direction) with select, whose gradients do not overlap, where the
    meta device unbinds it."""
    cases = [
        (lambda: nn.GRU(4, 3), (3, 2, 4), ()),
        (lambda: nn.LSTM(4, 3, proj_size=2), (3, 2, 4), ()),
        (lambda: nn.LSTM(4, 3, num_layers=2, bidirectional=True), (3, 2, 4), ((4, 2, 3), (4, 2, 3))),
        (lambda: nn.LSTM(4, 3, bidirectional=True), (3, 4), ((2, 3), (2, 3))),  # unbatched: the state unsqueezed
    ]
    for build, x_shape, state_shapes in cases:
        meta, cpu = (stack_backward(build, device, x_shape, state_shapes=state_shapes, state_grad=bool(state_shapes))
                     for device in DEVICES)
        assert meta == cpu


def test_packed_sequence_backward_is_measured():
    from torch.nn.utils.rnn import pack_padded_sequence

    class Packed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(4, 3)

        def forward(self, x: torch.Tensor) -> object:
            return self.rnn(pack_padded_sequence(x, [3, 1]))

    report = flopcalc.analyze(Packed(), (3, 2, 4), device="cpu", backward=True)
    b = report.row("rnn").backward
    assert b.status is Status.MEASURED_ONLY and b.measured.macs > 0


def test_disjoint_selects_of_an_input_are_assembled_free():
    """x[0] and x[1] of an input: their gradients do not overlap, so assembling x's gradient adds nothing (as
    x.unbind() would)."""

    class Halves(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x[0]) + self.linear(x[1])

    x = torch.randn(2, 3, 4, requires_grad=True)
    report = flopcalc.analyze(Halves(), x, backward=True)
    # Each call of the Linear: dx 3·2·4 = 24 MACs and dW 24 MACs; its bias sums 3 rows: 2·2 = 4 add. The engine
    # sums the two calls' weight (8) and bias (2) gradients: 10 add, the model's. x's gradient: no add.
    assert report.totals.backward.measured.macs == 96
    assert dict(report.totals.backward.measured.ops) == {"add": 4 + 4 + 10}


def _stack_case(kind, layers, bidirectional, bias, proj, batch_first, unbatched, steps, batch, x_grad, state,
                frozen, returns, training, device):
    proj = proj if kind == "lstm" else 0  # only an LSTM has proj_size
    hidden, features = 3, 2
    width = proj or hidden

    def build() -> nn.RNNBase:
        options = dict(num_layers=layers, bidirectional=bidirectional, bias=bias, batch_first=batch_first,
                       dropout=0.5 if training and layers > 1 else 0.0)
        if kind == "lstm":
            return nn.LSTM(features, hidden, proj_size=proj, **options)
        if kind == "gru":
            return nn.GRU(features, hidden, **options)
        return nn.RNN(features, hidden, nonlinearity=kind, **options)

    if unbatched:
        x_shape: tuple[int, ...] = (steps, features)
    else:
        x_shape = (batch, steps, features) if batch_first else (steps, batch, features)
    lead = (layers * (2 if bidirectional else 1),) + (() if unbatched else (batch,))
    shapes = ((*lead, width), (*lead, hidden)) if kind == "lstm" else ((*lead, width),)
    frozen_layers = tuple(layer for layer in range(layers) if frozen[layer])
    if len(frozen_layers) == layers and not x_grad and state < 2:
        frozen_layers = frozen_layers[1:]  # something must need a gradient
    return stack_backward(build, device, x_shape, x_grad=x_grad, state_shapes=shapes if state else (),
                          state_grad=state == 2, returns=returns, frozen=frozen_layers, training=training)


STACKS = dict(
    kind=st.sampled_from(["tanh", "relu", "lstm", "gru"]), layers=st.integers(1, 3), bidirectional=st.booleans(),
    bias=st.booleans(), proj=st.sampled_from([0, 0, 2]), batch_first=st.booleans(), unbatched=st.booleans(),
    steps=st.integers(1, 4), batch=st.integers(1, 3), x_grad=st.booleans(), state=st.sampled_from([0, 1, 2]),
    frozen=st.lists(st.booleans(), min_size=3, max_size=3), returns=st.sampled_from(["all", "output", "final"]),
    training=st.booleans(),
)


STACK_CASES = st.fixed_dictionaries(STACKS)


@PROPERTY
@given(case=STACK_CASES)
def test_stack_backward_formula_matches_measurement_on_meta(case):
    _stack_case(**case, device="meta")


@settings(max_examples=8, deadline=None, derandomize=True)
@given(case=STACK_CASES)
def test_stack_backward_formula_matches_measurement_on_cpu(case):
    _stack_case(**case, device="cpu")
