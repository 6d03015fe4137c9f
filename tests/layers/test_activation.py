"""Activations: hand-derived per-element costs, softmax dims, PReLU parameters, formula == measured."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from support import formula_and_measured, param_count
from torch import nn

from flopcalc.layers.activation import CELU, ELEMENTWISE, LOG_SOFTMAX, RELU, SOFTMAX
from flopcalc.registry import REGISTRY

DEVICES = ("cpu", "meta")
PROPERTY = settings(max_examples=30, deadline=None, derandomize=True)

E = 2 * 3 * 4 * 5
"""Elements of the default input (2, 3, 4, 5)."""


def nonzero(ops: Mapping[str, int]) -> dict[str, int]:
    return {kind: n for kind, n in ops.items() if n}


def check(module: nn.Module, shape: tuple[int, ...], device: str) -> tuple[dict[str, int], int, torch.Tensor]:
    """The formula's ops and params for ``module`` on ``shape``, after checking them against the measurement,
    torch's output shape and the module's parameters."""
    module = copy.deepcopy(module).to(device)
    x = torch.randn(shape) if device == "cpu" else torch.empty(shape, device=device)
    evaluation, measured, out = formula_and_measured(module, x)
    assert evaluation.output_shape == tuple(out.shape)
    assert evaluation.params == param_count(module)
    assert evaluation.macs == measured.macs == 0
    assert nonzero(evaluation.ops) == nonzero(measured.ops)
    return nonzero(evaluation.ops), evaluation.params, out


SHAPE = (2, 3, 4, 5)
CASES = [
    ("relu", nn.ReLU(), SHAPE, {"compare": E}, 0),
    ("relu_inplace", nn.ReLU(inplace=True), SHAPE, {"compare": E}, 0),
    ("relu6", nn.ReLU6(), SHAPE, {"compare": 2 * E}, 0),
    ("hardtanh", nn.Hardtanh(-2, 2), SHAPE, {"compare": 2 * E}, 0),
    ("leaky_relu", nn.LeakyReLU(0.2), SHAPE, {"compare": E, "mul": E}, 0),
    ("rrelu_eval", nn.RReLU(), SHAPE, {"compare": E, "mul": E}, 0),
    ("prelu_shared", nn.PReLU(), SHAPE, {"compare": E, "mul": E}, 1),
    ("prelu_per_channel", nn.PReLU(3), SHAPE, {"compare": E, "mul": E}, 3),
    ("prelu_1d", nn.PReLU(), (7,), {"compare": 7, "mul": 7}, 1),
    ("threshold", nn.Threshold(0.1, 20.0), SHAPE, {"compare": E}, 0),
    ("hardshrink", nn.Hardshrink(), SHAPE, {"compare": 2 * E}, 0),
    ("softshrink", nn.Softshrink(), SHAPE, {"compare": 2 * E, "add": E}, 0),
    ("sigmoid", nn.Sigmoid(), SHAPE, {"exp": E, "add": E, "div": E}, 0),
    ("log_sigmoid", nn.LogSigmoid(), SHAPE, {"exp": 2 * E, "add": E}, 0),
    ("tanh", nn.Tanh(), SHAPE, {"exp": E}, 0),
    ("tanhshrink", nn.Tanhshrink(), SHAPE, {"exp": E, "add": E}, 0),
    ("softsign", nn.Softsign(), SHAPE, {"compare": E, "add": E, "div": E}, 0),
    ("silu", nn.SiLU(), SHAPE, {"exp": E, "add": E, "div": E, "mul": E}, 0),
    ("gelu_erf", nn.GELU(), SHAPE, {"exp": E, "mul": 3 * E, "add": E}, 0),
    ("gelu_tanh", nn.GELU(approximate="tanh"), SHAPE, {"exp": E, "mul": 6 * E, "add": 2 * E}, 0),
    ("hardsigmoid", nn.Hardsigmoid(), SHAPE, {"add": E, "compare": 2 * E, "div": E}, 0),
    ("hardswish", nn.Hardswish(), SHAPE, {"add": E, "compare": 2 * E, "div": E, "mul": E}, 0),
    ("mish", nn.Mish(), SHAPE, {"exp": 3 * E, "add": E, "mul": E}, 0),
    ("elu", nn.ELU(), SHAPE, {"compare": E, "exp": E, "add": E, "mul": E}, 0),
    ("elu_alpha2", nn.ELU(alpha=2.0), SHAPE, {"compare": E, "exp": E, "add": E, "mul": E}, 0),
    ("selu", nn.SELU(), SHAPE, {"compare": E, "exp": E, "add": E, "mul": 2 * E}, 0),
    ("celu_alpha1", nn.CELU(), SHAPE, {"compare": E, "exp": E, "add": E, "mul": E}, 0),
    ("celu_alpha2", nn.CELU(alpha=2.0), SHAPE, {"compare": E, "exp": E, "add": E, "mul": 2 * E}, 0),
    ("softplus", nn.Softplus(), SHAPE, {"exp": 2 * E, "add": E}, 0),
    ("softplus_beta2", nn.Softplus(beta=2.0), SHAPE, {"exp": 2 * E, "add": E, "mul": E, "div": E}, 0),
    # GLU halves dim: (2, 3, 4, 6) → (2, 3, 4, 3), 72 outputs; (2, 4, 5) → (2, 2, 5), 20 outputs.
    ("glu", nn.GLU(), (2, 3, 4, 6), {"exp": 72, "add": 72, "div": 72, "mul": 72}, 0),
    ("glu_dim1", nn.GLU(dim=1), (2, 4, 5), {"exp": 2 * 2 * 5, "add": 20, "div": 20, "mul": 20}, 0),
    # Softmax over rows of length D: D exp, D − 1 add, D div per row, E/D rows.
    ("softmax_dim1", nn.Softmax(dim=1), SHAPE, {"exp": E, "add": (E // 3) * 2, "div": E}, 0),
    ("softmax_last", nn.Softmax(dim=-1), SHAPE, {"exp": E, "add": (E // 5) * 4, "div": E}, 0),
    ("softmax2d", nn.Softmax2d(), SHAPE, {"exp": E, "add": (E // 3) * 2, "div": E}, 0),
    ("softmax2d_unbatched", nn.Softmax2d(), (3, 4, 5), {"exp": 60, "add": 20 * 2, "div": 60}, 0),
    ("softmin", nn.Softmin(dim=1), (4, 7), {"exp": 28, "add": 28 + 4 * 6, "div": 28}, 0),
    # LogSoftmax per row: D exp + 1 log, D − 1 adds for the sum + D subtractions.
    ("log_softmax", nn.LogSoftmax(dim=1), (4, 7), {"exp": 4 * (7 + 1), "add": 4 * (2 * 7 - 1)}, 0),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("module", "shape", "ops", "params"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hand_derived(module: nn.Module, shape: tuple[int, ...], ops: dict[str, int], params: int,
                      device: str) -> None:
    assert check(module, shape, device)[:2] == (ops, params)


LEGACY_DIMS = [
    # dim=None: torch reduces dim 0 for inputs of rank 0, 1 and 3, else dim 1.
    ("rank0", (), 1),
    ("rank1", (7,), 7),
    ("rank2", (4, 7), 7),
    ("rank3", (2, 3, 4), 2),
    ("rank4", (2, 3, 4, 5), 3),
]


@pytest.mark.filterwarnings("ignore:Implicit dimension choice")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("shape", "row"), [c[1:] for c in LEGACY_DIMS], ids=[c[0] for c in LEGACY_DIMS])
def test_softmax_legacy_dim(shape: tuple[int, ...], row: int, device: str) -> None:
    elements = 1
    for n in shape:
        elements *= n
    rows = elements // row
    expected = nonzero({"exp": elements, "add": rows * (row - 1), "div": elements})
    assert check(nn.Softmax(), shape, device)[0] == expected
    log_expected = nonzero({"exp": rows * (row + 1), "add": rows * (2 * row - 1)})
    assert check(nn.LogSoftmax(), shape, device)[0] == log_expected


def test_one_generic_formula_specialised() -> None:
    """Every activation is c_k·E per kind: ReLU's single cost is 1 compare per element."""
    assert set(ELEMENTWISE.ops) == {"add", "mul", "div", "compare", "exp", "sqrt"}
    assert RELU.to_text("compare") == "E"
    assert SOFTMAX.to_text("add") == "E*(D - 1)/D"
    assert LOG_SOFTMAX.to_text("exp") == "E*(D + 1)/D"
    assert CELU.to_text("mul") == "E*(delta_alpha + 1)"


def test_softmax_renders_its_rows() -> None:
    module = nn.Softmax(dim=-1)
    bound = REGISTRY.binder_for(module)(module, (torch.empty(2, 8, 10),), {})
    assert bound.formula.substituted("add", bound.values) == "160·(10 - 1)/10 = 144"


ACTIVATIONS: list[Callable[[], nn.Module]] = [
    nn.ReLU, nn.ReLU6, lambda: nn.Hardtanh(-0.5, 3.0), lambda: nn.LeakyReLU(0.3), nn.RReLU, nn.PReLU,
    lambda: nn.Threshold(0.5, -1.0), nn.Hardshrink, nn.Softshrink, nn.Sigmoid, nn.LogSigmoid, nn.Tanh,
    nn.Tanhshrink, nn.Softsign, nn.SiLU, nn.GELU, lambda: nn.GELU("tanh"), nn.Hardsigmoid, nn.Hardswish, nn.Mish,
    nn.ELU, lambda: nn.ELU(0.5), nn.SELU, nn.CELU, lambda: nn.CELU(1.5), nn.Softplus,
    lambda: nn.Softplus(0.5, 10.0),
]


def test_every_activation_is_bound() -> None:
    modules = [make() for make in ACTIVATIONS] + [nn.Softmax(1), nn.Softmin(1), nn.LogSoftmax(1), nn.Softmax2d(),
                                                   nn.GLU()]
    assert [type(m).__name__ for m in modules if REGISTRY.binder_for(m) is None] == []


shapes = st.lists(st.integers(1, 5), min_size=0, max_size=4).map(tuple)


@PROPERTY
@given(st.sampled_from(ACTIVATIONS), shapes, st.booleans())
def test_elementwise_property(make: Callable[[], nn.Module], shape: tuple[int, ...], per_channel: bool) -> None:
    module = make()
    if isinstance(module, nn.PReLU) and per_channel and len(shape) >= 2:
        module = nn.PReLU(shape[1])
    for device in DEVICES:
        check(module, shape, device)


@st.composite
def row_wise(draw: Any) -> tuple[nn.Module, tuple[int, ...]]:
    shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple))
    kind = draw(st.sampled_from([nn.Softmax, nn.Softmin, nn.LogSoftmax, nn.GLU]))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    if kind is nn.GLU:
        shape = shape[:dim % len(shape)] + (2 * shape[dim],) + shape[dim % len(shape) + 1:]
        return nn.GLU(dim), shape
    return kind(dim=draw(st.one_of(st.just(dim), st.none()))), shape


@pytest.mark.filterwarnings("ignore:Implicit dimension choice")
@PROPERTY
@given(row_wise())
def test_row_wise_property(case: tuple[nn.Module, tuple[int, ...]]) -> None:
    for device in DEVICES:
        check(*case, device)
