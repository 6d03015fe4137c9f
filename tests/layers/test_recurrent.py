"""Recurrent layers: hand-counted LSTM/GRU/RNN stacks and cells; formula == measured on cpu (fused mkldnn LSTM,
unfused GRU/RNN) and meta (per-timestep decomposition); GPU kernels' rules == the unfused cell."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from support import formula_and_measured, param_count
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from flopcalc.measure import Count, OpCounter, measure
from flopcalc.measure.core import rule_for

aten = torch.ops.aten
DEVICES = ("cpu", "meta")
PROPERTY = settings(max_examples=30, deadline=None, derandomize=True)

pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")


def nonzero(ops: Mapping[str, int]) -> dict[str, int]:
    return {str(kind): n for kind, n in ops.items() if n}


def tensor(*shape: int, device: str) -> torch.Tensor:
    return torch.randn(shape) if device == "cpu" else torch.empty(shape, device=device)


def op_names(module: nn.Module, *args: Any) -> set[str]:
    names: set[str] = set()
    with torch.no_grad(), OpCounter(lambda func, count: names.add(str(func.overloadpacket).split(".")[-1])):
        module(*args)
    return names


def check(module: nn.Module, x: torch.Tensor) -> tuple[Any, Count]:
    """Formula == measured (MACs, ops by kind), params and output shape; returns both counts."""
    evaluation, count, out = formula_and_measured(module, x)
    first = out[0] if isinstance(out, tuple) else out
    shape = first.data.shape if isinstance(first, PackedSequence) else first.shape
    assert evaluation.macs == count.macs
    assert nonzero(evaluation.ops) == nonzero(count.ops)
    assert evaluation.output_shape == tuple(shape)
    assert evaluation.params == param_count(module)
    return evaluation, count


# Per step and batch item (N = 3), with H = 16: LSTM gates 4H, GRU gates 3H, RNN H.
# LSTM pointwise per hidden unit: adds 4 (gate sums) + 1 (c') + 3 (sigmoid), exp 3 + 2, div 3, mul 3.
# GRU pointwise per hidden unit: adds 2 (r, z sums) + 2 (sigmoid) + 1 (+ r ⊙ h_n) + 2 (update), exp 2 + 1,
# div 2, mul 2.  Steps L = 5; D = 2 for bidirectional.
HAND = [
    (
        "lstm-2layer-bidir-proj4", nn.LSTM(10, 16, num_layers=2, bidirectional=True, proj_size=4), (5, 3, 10),
        # layer 0 reads 10 features, layer 1 the 2·4 concatenated projections; the state has proj_size 4
        5 * 2 * ((3 * 4 * 16 * (10 + 4) + 3 * 16 * 4) + (3 * 4 * 16 * (2 * 4 + 4) + 3 * 16 * 4)),
        {kind: 5 * 2 * 2 * n * 16 * 3 for kind, n in {"bias_add": 8, "add": 8, "exp": 5, "div": 3, "mul": 3}.items()},
        2 * ((4 * 16 * (10 + 4) + 8 * 16 + 4 * 16) + (4 * 16 * (2 * 4 + 4) + 8 * 16 + 4 * 16)),
        (5, 3, 2 * 4),
    ),
    (
        "lstm-2layer", nn.LSTM(10, 16, num_layers=2), (5, 3, 10),
        5 * 3 * (4 * 16 * (10 + 16) + 4 * 16 * (16 + 16)),
        {kind: 5 * 2 * n * 16 * 3 for kind, n in {"bias_add": 8, "add": 8, "exp": 5, "div": 3, "mul": 3}.items()},
        (4 * 16 * (10 + 16) + 8 * 16) + (4 * 16 * (16 + 16) + 8 * 16),
        (5, 3, 16),
    ),
    (
        "gru-2layer-bidir", nn.GRU(10, 16, num_layers=2, bidirectional=True), (5, 3, 10),
        5 * 2 * 3 * (3 * 16 * (10 + 16) + 3 * 16 * (2 * 16 + 16)),
        {kind: 5 * 2 * 2 * n * 16 * 3 for kind, n in {"bias_add": 6, "add": 7, "exp": 3, "div": 2, "mul": 2}.items()},
        2 * ((3 * 16 * (10 + 16) + 6 * 16) + (3 * 16 * (2 * 16 + 16) + 6 * 16)),
        (5, 3, 2 * 16),
    ),
    (
        "rnn-tanh-2layer", nn.RNN(10, 16, num_layers=2), (5, 3, 10),
        5 * 3 * (16 * (10 + 16) + 16 * (16 + 16)),
        {"bias_add": 5 * 2 * 2 * 16 * 3, "add": 5 * 2 * 16 * 3, "exp": 5 * 2 * 16 * 3},  # tanh: 1 exp
        (16 * (10 + 16) + 2 * 16) + (16 * (16 + 16) + 2 * 16),
        (5, 3, 16),
    ),
    (
        "rnn-relu-bidir", nn.RNN(10, 16, nonlinearity="relu", bidirectional=True), (5, 3, 10),
        5 * 2 * 3 * 16 * (10 + 16),
        {"bias_add": 5 * 2 * 2 * 16 * 3, "add": 5 * 2 * 16 * 3, "compare": 5 * 2 * 16 * 3},  # relu: 1 compare
        2 * (16 * (10 + 16) + 2 * 16),
        (5, 3, 2 * 16),
    ),
    (
        "lstm-cell", nn.LSTMCell(10, 16), (3, 10), 3 * 4 * 16 * (10 + 16),
        {kind: n * 16 * 3 for kind, n in {"bias_add": 8, "add": 8, "exp": 5, "div": 3, "mul": 3}.items()},
        4 * 16 * (10 + 16) + 8 * 16, (3, 16),
    ),
    (
        "gru-cell", nn.GRUCell(10, 16), (3, 10), 3 * 3 * 16 * (10 + 16),
        {kind: n * 16 * 3 for kind, n in {"bias_add": 6, "add": 7, "exp": 3, "div": 2, "mul": 2}.items()},
        3 * 16 * (10 + 16) + 6 * 16, (3, 16),
    ),
    (
        "rnn-cell-no-bias", nn.RNNCell(10, 16, bias=False), (3, 10), 3 * 16 * (10 + 16),
        {"add": 16 * 3, "exp": 16 * 3}, 16 * (10 + 16), (3, 16),
    ),
]


@pytest.mark.parametrize("module, shape, macs, ops, params, out_shape", [c[1:] for c in HAND],
                         ids=[c[0] for c in HAND])
@pytest.mark.parametrize("device", DEVICES)
def test_by_hand(module: nn.Module, shape: tuple[int, ...], macs: int, ops: dict[str, int], params: int,
                 out_shape: tuple[int, ...], device: str) -> None:
    module = copy.deepcopy(module).to(device)
    evaluation, _count = check(module, tensor(*shape, device=device))
    assert (evaluation.macs, nonzero(evaluation.ops), evaluation.params) == (macs, ops, params)
    assert evaluation.output_shape == out_shape


def test_cpu_lstm_runs_fused_and_meta_does_not() -> None:
    """The CPU LSTM is one mkldnn_rnn_layer per layer and direction; on meta it is per-timestep ops."""
    lstm = nn.LSTM(10, 16, num_layers=2, bidirectional=True)
    assert "mkldnn_rnn_layer" in op_names(lstm, torch.randn(5, 3, 10))
    assert "mkldnn_rnn_layer" not in op_names(lstm.to("meta"), torch.empty(5, 3, 10, device="meta"))


VARIANTS = [
    ("lstm-batch-first", nn.LSTM(4, 6, batch_first=True), (2, 5, 4)),
    ("lstm-unbatched", nn.LSTM(4, 6, num_layers=2), (5, 4)),
    ("lstm-no-bias-bidir", nn.LSTM(4, 6, bias=False, bidirectional=True), (5, 2, 4)),
    ("lstm-proj-batch-first", nn.LSTM(4, 6, num_layers=3, proj_size=2, batch_first=True), (2, 5, 4)),
    ("gru-batch-first-bidir", nn.GRU(4, 6, batch_first=True, bidirectional=True), (2, 5, 4)),
    ("gru-unbatched-no-bias", nn.GRU(4, 6, bias=False), (5, 4)),
    ("rnn-batch-first-3layer", nn.RNN(4, 6, num_layers=3, batch_first=True), (2, 5, 4)),
    ("rnn-relu-unbatched", nn.RNN(4, 6, nonlinearity="relu", bidirectional=True), (5, 4)),
    ("lstm-cell-unbatched", nn.LSTMCell(4, 6), (4,)),
    ("gru-cell-no-bias", nn.GRUCell(4, 6, bias=False), (3, 4)),
    ("rnn-relu-cell-unbatched", nn.RNNCell(4, 6, nonlinearity="relu"), (4,)),
]


@pytest.mark.parametrize("module, shape", [c[1:] for c in VARIANTS], ids=[c[0] for c in VARIANTS])
@pytest.mark.parametrize("device", DEVICES)
def test_variants(module: nn.Module, shape: tuple[int, ...], device: str) -> None:
    check(copy.deepcopy(module).to(device), tensor(*shape, device=device))


@pytest.mark.parametrize("module", [nn.LSTM(4, 6, bidirectional=True), nn.GRU(4, 6, num_layers=2), nn.RNN(4, 6)],
                         ids=["lstm", "gru", "rnn"])
def test_packed_sequence(module: nn.Module) -> None:
    """Lengths 5, 3, 2: 10 tokens, counted as one sequence of 10 steps with batch 1."""
    packed = pack_padded_sequence(torch.randn(5, 3, 4), torch.tensor([5, 3, 2]))
    evaluation, _ = check(module, packed)
    unpacked = module.__class__(4, 6, num_layers=module.num_layers, bidirectional=module.bidirectional)
    one_sequence, _, _ = formula_and_measured(unpacked, torch.randn(10, 1, 4))
    assert (evaluation.macs, evaluation.ops) == (one_sequence.macs, one_sequence.ops)


def cudnn_args(module: nn.RNNBase, x: torch.Tensor, mode: int) -> tuple[Any, ...]:
    weights = module._flat_weights
    stride = len(weights) // (module.num_layers * (2 if module.bidirectional else 1))
    h = torch.empty(0, device="meta")
    return (x, weights, stride, None, h, h, mode, module.hidden_size, module.proj_size, module.num_layers,
            module.batch_first, 0.0, False, module.bidirectional, [], None)


GPU_STACKS = [
    ("lstm-proj", nn.LSTM(4, 6, num_layers=2, bidirectional=True, proj_size=3), 2),
    ("lstm-no-bias", nn.LSTM(4, 6, bias=False), 2),
    ("gru", nn.GRU(4, 6, num_layers=2, bidirectional=True), 3),
    ("rnn-tanh", nn.RNN(4, 6, num_layers=2), 1),
    ("rnn-relu", nn.RNN(4, 6, nonlinearity="relu", bias=False), 0),
]


@pytest.mark.parametrize("module, mode", [c[1:] for c in GPU_STACKS], ids=[c[0] for c in GPU_STACKS])
def test_cudnn_and_miopen_rules_equal_the_unfused_stack(module: nn.RNNBase, mode: int) -> None:
    module = module.to("meta")
    x = torch.empty(5, 3, 4, device="meta")
    unfused = measure(lambda: module(x)).count
    args = cudnn_args(module, x, mode)
    cudnn = rule_for(aten._cudnn_rnn.default)(args, {}, None)
    assert (cudnn.macs, nonzero(cudnn.ops)) == (unfused.macs, nonzero(unfused.ops))
    if module.proj_size == 0:
        miopen_args = args[:3] + args[4:8] + args[9:]
        miopen = rule_for(aten.miopen_rnn.default)(miopen_args, {}, None)
        assert (miopen.macs, nonzero(miopen.ops)) == (unfused.macs, nonzero(unfused.ops))


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("cell, op, gates", [
    (nn.LSTMCell, aten._thnn_fused_lstm_cell.default, 4), (nn.GRUCell, aten._thnn_fused_gru_cell.default, 3),
], ids=["lstm", "gru"])
def test_fused_cell_rules_equal_the_unfused_cell(cell: type[nn.RNNCellBase], op: Any, gates: int,
                                                 bias: bool) -> None:
    """On CUDA a cell is two bias-free mm ops (3·G·16·(10 + 16) MACs) and the fused pointwise kernel."""
    module = cell(10, 16, bias=bias).to("meta")
    unfused = measure(lambda: module(torch.empty(3, 10, device="meta"))).count
    gate_shape = torch.empty(3, gates * 16, device="meta")
    b = torch.empty(gates * 16, device="meta") if bias else None
    fused = rule_for(op)((gate_shape, gate_shape, torch.empty(3, 16, device="meta"), b, b), {}, None)
    assert fused.macs + 3 * gates * 16 * (10 + 16) == unfused.macs
    assert nonzero(fused.ops) == nonzero(unfused.ops)


@PROPERTY
@given(
    kind=st.sampled_from(["RNN_TANH", "RNN_RELU", "LSTM", "GRU"]), input_size=st.integers(1, 5),
    hidden=st.integers(2, 5), layers=st.integers(1, 3), bidirectional=st.booleans(), bias=st.booleans(),
    batch_first=st.booleans(), proj=st.integers(0, 1), steps=st.integers(1, 4), batch=st.integers(0, 3),
)
def test_stack_property(kind: str, input_size: int, hidden: int, layers: int, bidirectional: bool, bias: bool,
                        batch_first: bool, proj: int, steps: int, batch: int) -> None:
    options = {"num_layers": layers, "bidirectional": bidirectional, "bias": bias, "batch_first": batch_first}
    if kind == "LSTM":
        module: nn.Module = nn.LSTM(input_size, hidden, proj_size=proj, **options)
    elif kind == "GRU":
        module = nn.GRU(input_size, hidden, **options)
    else:
        module = nn.RNN(input_size, hidden, nonlinearity=kind[4:].lower(), **options)
    if batch == 0:
        shape: tuple[int, ...] = (steps, input_size)
    else:
        shape = (batch, steps, input_size) if batch_first else (steps, batch, input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for device in DEVICES:
            check(copy.deepcopy(module).to(device), tensor(*shape, device=device))
