"""Backward formulas of the activations whose backward is a fused kernel or a short autograd chain (Hardshrink,
Softshrink, LogSigmoid, Softplus, Mish, GLU, Tanhshrink, Softsign, Softmin, PReLU): counted by hand per element
and checked against the measured backward (what autograd executes), on meta and on cpu.

Each model is ``Linear(6, 6) → activation`` on a 2×6 input, so the activation's input needs a gradient and
has E = 2·6 = 12 elements (GLU halves them: 6 outputs)."""

from __future__ import annotations

import pytest
import torch.nn.functional as F
from torch import nn

import flopcalc
from flopcalc.report import Status

E = 2 * 6


class Functional(nn.Module):
    """``function(x)`` as the layer, so its functional row (``← F.…``) carries the formula."""

    def __init__(self, function) -> None:
        super().__init__()
        self.function = function

    def forward(self, x):
        return self.function(x)


CASES = {
    # the mask |x| > λ: 2 compares per element
    "hardshrink": (nn.Hardshrink(), {"compare": 2 * E}),
    "softshrink": (nn.Softshrink(), {"compare": 2 * E}),
    # g/(1 + e^x): 1 exp, 1 add, 1 div
    "logsigmoid": (nn.LogSigmoid(), {"exp": E, "add": E, "div": E}),
    # g·z/(1 + z), z = e^{βx}: 1 exp, 1 add, 1 div, 1 mul; β = 2 adds the mul of βx
    "softplus": (nn.Softplus(), {"exp": E, "add": E, "div": E, "mul": E}),
    "softplus-beta": (nn.Softplus(beta=2.0), {"exp": E, "add": E, "div": E, "mul": 2 * E}),
    "F.softplus": (Functional(lambda x: F.softplus(x, 2.0)), {"exp": E, "add": E, "div": E, "mul": 2 * E}),
    # g·(t + x·(1 − t²)·σ(x)), t = tanh(log(1 + e^x)): 3 exp, 3 add, 4 mul, 1 div
    "mish": (nn.Mish(), {"exp": 3 * E, "add": 3 * E, "mul": 4 * E, "div": E}),
    "F.mish": (Functional(F.mish), {"exp": 3 * E, "add": 3 * E, "mul": 4 * E, "div": E}),
    # per output (6): σ(b) 1 exp + 1 add + 1 div; da = g·σ 1 mul; db = (g·σ)·a·(1 − σ) 1 add + 2 mul
    "glu": (nn.GLU(), {"exp": 6, "add": 2 * 6, "div": 6, "mul": 3 * 6}),
    # x − tanh(x) through autograd: tanh's g·(1 − t²) (1 add, 2 mul), its negation (1 add), the two summed (1 add)
    "tanhshrink": (nn.Tanhshrink(), {"add": 3 * E, "mul": 2 * E}),
    # x/(1 + |x|) through autograd: g/d (1 div), −g·x/d² (2 div, 1 mul), |x|'s g·sgn(x) (1 compare, 1 mul),
    # the two gradients of x summed (1 add), the negation (1 add)
    "softsign": (nn.Softsign(), {"compare": E, "div": 3 * E, "add": 2 * E, "mul": 2 * E}),
    # softmax's backward per row of D = 6: 2D mul, 2D − 1 add; then the negation, 1 add per element:
    # mul 2·12 = 24, add 2·11 + 12 = 34
    "softmin": (nn.Softmin(dim=1), {"mul": 24, "add": 34}),
    # LeakyReLU's with the mean slope (eval): 1 compare + 1 mul
    "rrelu": (nn.RReLU(), {"compare": E, "mul": E}),
}


@pytest.mark.parametrize("device", ["meta", "cpu"])
@pytest.mark.parametrize("case", list(CASES))
def test_activation_backward_by_hand(case, device):
    activation, expected = CASES[case]
    report = flopcalc.analyze(nn.Sequential(nn.Linear(6, 6), activation), (2, 6), backward=True, device=device)
    row = report.rows[-1]
    assert row.backward.status is Status.MATCH, (row.name, row.backward.mismatches)
    assert dict(row.backward.measured.ops) == expected
    assert row.backward.measured.macs == 0 and not report.uncounted


@pytest.mark.parametrize("device", ["meta", "cpu"])
@pytest.mark.parametrize(("slopes", "freeze", "expected"), [
    # both gradients: g·(x > 0 ? 1 : a) 1 compare + 1 mul, the slope's g·x 1 mul, per element; then the one
    # slope sums 12 terms (11 adds), or 6 slopes 2 terms each (6 adds)
    (1, None, {"compare": E, "mul": 2 * E, "add": E - 1}),
    (6, None, {"compare": E, "mul": 2 * E, "add": E - 6}),
    # the Linear frozen: no input gradient is needed, but the kernel computes both: the same count
    (6, "linear", {"compare": E, "mul": 2 * E, "add": E - 6}),
    # the PReLU frozen: the kernel still runs for the input's gradient; nothing is summed into the slopes
    (6, "prelu", {"compare": E, "mul": 2 * E}),
])
def test_prelu_backward_by_hand(slopes, freeze, expected, device):
    model = nn.Sequential(nn.Linear(6, 6), nn.PReLU(slopes))
    if freeze == "linear":
        model[0].requires_grad_(False)
    if freeze == "prelu":
        model[1].requires_grad_(False)
    row = flopcalc.analyze(model, (2, 6), backward=True, device=device).rows[-1]
    assert row.backward.status is Status.MATCH, row.backward.mismatches
    assert dict(row.backward.measured.ops) == expected


def test_first_layer_activation_has_no_backward():
    """An activation on the model's input (which needs no gradient) runs no backward, and its formula says 0."""
    model = nn.Sequential(nn.Mish(), nn.Linear(6, 6))
    row = flopcalc.analyze(model, (2, 6), backward=True).rows[1]
    assert row.backward.status is Status.MATCH
    assert row.backward.measured.macs == 0 and dict(row.backward.measured.ops) == {}
