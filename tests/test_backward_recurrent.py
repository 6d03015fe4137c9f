"""Backward formulas of the recurrent cells (nn.RNNCell, nn.LSTMCell, nn.GRUCell): by hand, with the input,
the state and the parameters each needing a gradient or not, and formula == measurement per row (property
test on cpu and meta). The stacks (nn.RNN, nn.LSTM, nn.GRU): test_backward_recurrent_stacks.py."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import flopcalc
from flopcalc import Status

PROPERTY = settings(max_examples=30, deadline=None, derandomize=True)


class Step(nn.Module):
    """One step of a cell, with or without a state passed in."""

    def __init__(self, cell: nn.Module) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x: torch.Tensor, *state: torch.Tensor) -> object:
        if not state:
            return self.cell(x)
        return self.cell(x, tuple(state) if len(state) == 2 else state[0])


def cell_backward(report: flopcalc.Report) -> tuple[int, dict[str, int], int, dict[str, int]]:
    b = report.row("cell").backward
    assert b.status is Status.MATCH, b.mismatches
    assert b.grad_input is not None and b.grad_weight is not None
    return b.grad_input.macs, dict(b.grad_input.ops), b.grad_weight.macs, dict(b.grad_weight.ops)


def test_lstm_cell_backward_by_hand():
    # LSTMCell(4, 3) on one sample, no state given, the input needs no gradient: 4 gates of H = 3.
    report = flopcalc.analyze(Step(nn.LSTMCell(4, 3)), (1, 4), backward=True)
    # Per state element (3): 3 sigmoid and 2 tanh backward (1 add + 2 mul each) and 5 mul (dh'·tanh(c'),
    # dh'·o, dc'·c, dc'·g, dc'·i): 15 mul, 5 add → 45 mul, 15 add. dW_ih = 12·4 = 48 and dW_hh = 12·3 = 36
    # MACs (torch multiplies the zero initial state); the biases sum one row: no adds.
    assert cell_backward(report) == (0, {"mul": 45, "add": 15}, 84, {})
    x, h, c = (torch.randn(1, n, requires_grad=True) for n in (4, 3, 3))
    report = flopcalc.analyze(Step(nn.LSTMCell(4, 3)), [x, h, c], device="cpu", backward=True)
    # Input and state need a gradient: dx = 12·4 = 48, dh = 12·3 = 36 MACs, dc = dc'·f: 3 mul more.
    assert cell_backward(report) == (84, {"mul": 48, "add": 15}, 84, {})


def test_rnn_and_gru_cells_by_hand_frozen():
    cell = nn.RNNCell(4, 3)
    cell.requires_grad_(False)
    x = torch.randn(2, 4, requires_grad=True)
    report = flopcalc.analyze(Step(cell), x, device="cpu", backward=True)
    # Frozen: dx only, 2·3·4 = 24 MACs; tanh's backward on 2·3 elements: 6 add, 12 mul.
    assert cell_backward(report) == (24, {"add": 6, "mul": 12}, 0, {})
    report = flopcalc.analyze(Step(nn.GRUCell(4, 3)), (2, 4), backward=True)
    # GRU, 3 gates, 2·3 = 6 state elements: r, z sigmoid and n tanh backward (3 add, 6 mul each element),
    # dh'·z, dh'·(h − n), dn_a·(W_hn·h + b_hn), dn_a·r (4 mul), dn = dh' − dh'·z and the sum of n's two
    # gradients (2 add): 60 mul, 30 add.
    # dW_ih = 2·9·4 = 72, dW_hh = 2·9·3 = 54; the two biases sum 2 rows: 2·(2 − 1)·9 = 18 adds.
    assert cell_backward(report) == (0, {"mul": 60, "add": 30}, 126, {"add": 18})


@PROPERTY
@given(
    kind=st.sampled_from(["tanh", "relu", "lstm", "gru"]), batch=st.sampled_from([None, 1, 3]),
    input_size=st.integers(1, 4), hidden=st.integers(1, 4), bias=st.booleans(), state=st.sampled_from([0, 1, 2]),
    input_grad=st.booleans(), frozen=st.booleans(), device=st.sampled_from(["cpu", "meta"]),
)
def test_cell_backward_formula_matches_measurement(kind, batch, input_size, hidden, bias, state, input_grad, frozen,
                                                   device):
    if frozen and not input_grad and state < 2:
        frozen = False  # nothing would need a gradient
    with torch.device(device):
        if kind == "lstm":
            cell: nn.Module = nn.LSTMCell(input_size, hidden, bias=bias)
        elif kind == "gru":
            cell = nn.GRUCell(input_size, hidden, bias=bias)
        else:
            cell = nn.RNNCell(input_size, hidden, bias=bias, nonlinearity=kind)
        lead = () if batch is None else (batch,)
        x = torch.randn(*lead, input_size, requires_grad=input_grad)
        states = [torch.randn(*lead, hidden, requires_grad=state == 2) for _ in range(2 if kind == "lstm" else 1)]
    if frozen:
        cell.requires_grad_(False)
    inputs = [x, *states] if state else [x]
    report = flopcalc.analyze(Step(cell), inputs, device=device, backward=True)
    row = report.row("cell").backward
    assert row.status is Status.MATCH, row.mismatches
