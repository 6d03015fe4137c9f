"""Activations: one elementwise formula, specialised per activation by its cost per element.

Every activation is ``ELEMENTWISE``: ``c_k·E`` operations of each kind ``k`` for ``E`` output elements, with
the per-element costs ``c_k`` fixed by :meth:`LayerFormula.specialize` (``A``, the learned parameters, is 0
except for PReLU). Softmax-like layers work on rows of length ``D`` along ``dim``; their row costs are
written per element (``(D − 1)/D`` adds per element is ``D − 1`` adds per row).

Activations take any shape ``(*)``: a call binds the input sizes ``S_1 … S_r`` (see :func:`any_rank`), and
``E = S_1⋯S_r`` (the output's sizes for GLU, which halves ``dim``).

Convention (docs/conventions.md): the cost of the mathematical definition, one operation per scalar
operation, with no MACs; negations and multiplications by the constant 1 are free, and numerical-stability
work of the kernels (softmax's max subtraction, softplus's threshold switch) is not counted. Per element:
ReLU 1 compare; ReLU6/Hardtanh 2 compares; LeakyReLU/PReLU/RReLU (eval) 1 compare + 1 mul; Sigmoid
``1/(1 + e^-x)`` exp + add + div; Tanh 1 exp; SiLU Sigmoid + 1 mul; GELU erf form 1 exp + 3 mul + 1 add,
tanh form 1 exp + 6 mul + 2 add; Hardsigmoid ``clamp(x + 3, 0, 6)/6`` 1 add + 2 compares + 1 div;
Hardswish that + 1 mul; Mish ``x·tanh(log(1 + e^x))`` 3 exp + 1 add + 1 mul; ELU 1 compare + 1 exp + 1 add
+ 1 mul (α), SELU + 1 mul (scale), CELU + 1 mul when α ≠ 1 (``x/α``); Softplus ``log(1 + e^{βx})/β`` 2 exp +
1 add, + 1 mul + 1 div when β ≠ 1; Softmax per row d exp, d − 1 add, d div; LogSoftmax d + 1 exp (the log),
2d − 1 add (sum, then d subtractions). Training-mode randomness (RReLU's slopes) is not counted.

Backward (docs/conventions.md, "Backward"), the gradient with respect to the input (and PReLU's slopes), per
element: ReLU/Threshold 1 compare; Hardtanh/ReLU6 2 compares;
LeakyReLU 1 compare + 1 mul; Sigmoid ``g·y·(1 − y)`` and Tanh ``g·(1 − y²)`` 1 add + 2 mul; SiLU
``g·s·(1 + x·(1 − s))`` with the sigmoid ``s`` recomputed: 1 exp, 1 div, 3 add, 3 mul; GELU (erf)
``g·(Φ(x) + x·φ(x))``: Φ 2 mul + 1 exp + 1 add, φ 3 mul + 1 exp, then 2 mul + 1 add; GELU (tanh) 1 exp,
13 mul, 5 add; Hardsigmoid 2 compares + 1 div; Hardswish 2 compares, 2 mul, 1 add, 1 div; ELU 1 compare,
1 exp, 2 mul (SELU + 1 mul for its scale, CELU + 1 mul when α ≠ 1); Softmax per row of length D
``y·(g − Σ g·y)``: 2D mul, 2D − 1 add; LogSoftmax ``g − e^y·Σ g``: D exp, D mul, 2D − 1 add; Hardshrink and
Softshrink 2 compares; LogSigmoid 1 exp, 1 add, 1 div; Softplus 1 exp, 1 add, 1 div, 1 mul (+ 1 for β ≠ 1);
Mish 3 exp, 3 add, 4 mul, 1 div; GLU per output 1 exp, 2 add, 1 div, 3 mul. Tanhshrink, Softsign and Softmin
have no backward kernel: their formula is autograd's op-by-op chain. PReLU's kernel computes the input's and
the slopes' gradients together whenever either is needed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

import sympy as sp

from flopcalc.formula import Gradient, LayerFormula, Number, OpKind, flag, g_W, g_x
from flopcalc.registry import REGISTRY, Bound, FunctionBinder, argument

if TYPE_CHECKING:
    from torch import nn

E, A, D = sp.symbols("E A D", integer=True, nonnegative=True)
COST = {kind: sp.Symbol(f"c_{kind.value}", nonnegative=True) for kind in OpKind if kind is not OpKind.BIAS_ADD}
delta_alpha, delta_beta = flag("delta_alpha"), flag("delta_beta")

ELEMENTWISE = LayerFormula(
    name="elementwise",
    description="Elementwise layer: c_k operations of kind k per output element, A learned parameters",
    params=A,
    macs=sp.Integer(0),
    ops={kind.value: COST[kind] * E for kind in COST},
)


def elementwise(name: str, description: str, learned: bool = False, **costs: sp.Expr | int) -> LayerFormula:
    """``ELEMENTWISE`` with the given per-element costs (other kinds 0, dropped); ``A = 0`` unless ``learned``."""
    subs = {symbol: sp.sympify(costs.get(kind.value, 0)) for kind, symbol in COST.items()} | ({} if learned else {A: 0})
    formula = ELEMENTWISE.specialize(name, description, subs)
    return dataclasses.replace(formula, ops={k: v for k, v in formula.ops.items() if v != 0})


@cache
def shape_symbols(rank: int) -> tuple[sp.Symbol, ...]:
    """``S_1 … S_rank``: the sizes of an input of any shape ``(*)``."""
    return tuple(sp.Symbol(f"S_{i}", integer=True, positive=True) for i in range(1, rank + 1))


_SHAPED: dict[tuple[Any, ...], LayerFormula] = {}


def any_rank(
    formula: LayerFormula,
    input_shape: Sequence[int],
    output_shape: Sequence[sp.Expr] | None = None,
    values: Mapping[str, Number] | None = None,
    intermediates: Mapping[sp.Symbol, sp.Expr] | None = None,
) -> Bound:
    """Bind a formula over ``E`` elements to one input shape: ``E`` is the product of ``output_shape``
    (default: the input's ``S_1 … S_r``), and ``intermediates`` (e.g. ``D = S_2``) are defined from them."""
    sizes = shape_symbols(len(input_shape))
    out = tuple(sizes if output_shape is None else output_shape)
    extra = dict(intermediates or {})
    key = (formula.name, out, tuple(extra.items()))
    if key not in _SHAPED:  # one formula object per shape pattern, so that its compiled form is reused
        defined = {**formula.intermediates, E: sp.Mul(*out), **extra}
        _SHAPED[key] = dataclasses.replace(formula, output_shape=out, intermediates=defined)
    return Bound(_SHAPED[key], {s.name: n for s, n in zip(sizes, input_shape)} | dict(values or {}))


RELU = elementwise("relu", "ReLU max(0, x): 1 comparison per element", compare=1)
HARDTANH = elementwise("hardtanh", "Hardtanh clamp(x, min, max): 2 comparisons per element", compare=2)
RELU6 = HARDTANH.specialize("relu6", "ReLU6 min(max(0, x), 6): Hardtanh with bounds 0 and 6", {})
LEAKY_RELU = elementwise("leaky_relu", "LeakyReLU / RReLU in eval: x or slope·x, 1 compare + 1 mul", compare=1, mul=1)
PRELU = elementwise(
    "prelu", "PReLU: x or a·x with A learned slopes (1 or C), 1 compare + 1 mul", learned=True, compare=1, mul=1
)
THRESHOLD = elementwise("threshold", "Threshold: x if x > threshold else value, 1 compare", compare=1)
HARDSHRINK = elementwise("hardshrink", "Hardshrink: 0 if -λ ≤ x ≤ λ else x, 2 compares", compare=2)
SOFTSHRINK = elementwise("softshrink", "Softshrink: x ∓ λ outside [-λ, λ], 2 compares + 1 add", compare=2, add=1)
SIGMOID = elementwise("sigmoid", "Sigmoid 1/(1 + e^-x): exp + add + div", exp=1, add=1, div=1)
LOG_SIGMOID = elementwise("log_sigmoid", "LogSigmoid -log(1 + e^-x): 2 exp (exp, log) + 1 add", exp=2, add=1)
TANH = elementwise("tanh", "Tanh: 1 transcendental evaluation", exp=1)
TANHSHRINK = elementwise("tanhshrink", "Tanhshrink x - tanh(x): 1 exp + 1 add", exp=1, add=1)
SOFTSIGN = elementwise("softsign", "Softsign x/(1 + |x|): |x| as 1 compare, 1 add, 1 div", compare=1, add=1, div=1)
SILU = elementwise("silu", "SiLU x·sigmoid(x): sigmoid + 1 mul", exp=1, add=1, div=1, mul=1)
GELU = elementwise("gelu", "GELU 0.5·x·(1 + erf(x/√2)): 1 exp (erf) + 3 mul + 1 add", exp=1, mul=3, add=1)
GELU_TANH = elementwise(
    "gelu_tanh", "GELU tanh form 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))): 1 exp + 6 mul + 2 add",
    exp=1, mul=6, add=2,
)
HARDSIGMOID = elementwise(
    "hardsigmoid", "Hardsigmoid clamp(x + 3, 0, 6)/6: 1 add + 2 compares + 1 div", add=1, compare=2, div=1
)
HARDSWISH = elementwise(
    "hardswish", "Hardswish x·hardsigmoid(x): hardsigmoid + 1 mul", add=1, compare=2, div=1, mul=1
)
MISH = elementwise("mish", "Mish x·tanh(log(1 + e^x)): 3 exp + 1 add + 1 mul", exp=3, add=1, mul=1)
ELU = elementwise("elu", "ELU x or α·(e^x - 1): 1 compare + 1 exp + 1 add + 1 mul", compare=1, exp=1, add=1, mul=1)
SELU = elementwise("selu", "SELU scale·ELU: ELU + 1 mul", compare=1, exp=1, add=1, mul=2)
CELU = elementwise(
    "celu", "CELU max(0, x) + min(0, α·(e^{x/α} - 1)): ELU + 1 mul (x/α) when α ≠ 1 (δ_α = 1)",
    compare=1, exp=1, add=1, mul=1 + delta_alpha,
)
SOFTPLUS = elementwise(
    "softplus", "Softplus log(1 + e^{βx})/β: 2 exp + 1 add, + 1 mul + 1 div when β ≠ 1 (δ_β = 1)",
    exp=2, add=1, mul=delta_beta, div=delta_beta,
)
GLU = elementwise("glu", "GLU a·sigmoid(b), halves dim: sigmoid + 1 mul per output", exp=1, add=1, div=1, mul=1)
SOFTMAX = elementwise(
    "softmax", "Softmax over rows of length D: per row D exp, D - 1 add, D div", exp=1, add=(D - 1) / D, div=1
)
SOFTMIN = elementwise(
    "softmin", "Softmin softmax(-x): the negation (1 add) + softmax", exp=1, add=(D - 1) / D + 1, div=1
)
LOG_SOFTMAX = elementwise(
    "log_softmax", "LogSoftmax x - log(sum(e^x)) per row of length D: D + 1 exp (one log), 2D - 1 add",
    exp=(D + 1) / D, add=(2 * D - 1) / D,
)


def with_backward(formula: LayerFormula, **costs: sp.Expr | int) -> LayerFormula:
    """``formula`` with its grad-input: ``costs`` operations of each kind per element, when ``g_x``."""
    ops = {OpKind(kind).value: g_x * sp.sympify(cost) * E for kind, cost in costs.items()}
    return dataclasses.replace(formula, grad_input=Gradient(ops=ops))


RELU = with_backward(RELU, compare=1)
THRESHOLD = with_backward(THRESHOLD, compare=1)
HARDTANH = with_backward(HARDTANH, compare=2)
RELU6 = with_backward(RELU6, compare=2)
LEAKY_RELU = with_backward(LEAKY_RELU, compare=1, mul=1)
SIGMOID = with_backward(SIGMOID, add=1, mul=2)
TANH = with_backward(TANH, add=1, mul=2)
SILU = with_backward(SILU, exp=1, div=1, add=3, mul=3)
GELU = with_backward(GELU, exp=2, mul=7, add=2)
GELU_TANH = with_backward(GELU_TANH, exp=1, mul=13, add=5)
HARDSIGMOID = with_backward(HARDSIGMOID, compare=2, div=1)
HARDSWISH = with_backward(HARDSWISH, compare=2, mul=2, add=1, div=1)
ELU = with_backward(ELU, compare=1, exp=1, mul=2)
SELU = with_backward(SELU, compare=1, exp=1, mul=3)
CELU = with_backward(CELU, compare=1, exp=1, mul=2 + delta_alpha)
SOFTMAX = with_backward(SOFTMAX, mul=2, add=(2 * D - 1) / D)
LOG_SOFTMAX = with_backward(LOG_SOFTMAX, exp=1, mul=1, add=(2 * D - 1) / D)
HARDSHRINK = with_backward(HARDSHRINK, compare=2)
SOFTSHRINK = with_backward(SOFTSHRINK, compare=2)
LOG_SIGMOID = with_backward(LOG_SIGMOID, exp=1, add=1, div=1)
SOFTPLUS = with_backward(SOFTPLUS, exp=1, add=1, div=1, mul=1 + delta_beta)
MISH = with_backward(MISH, exp=3, add=3, mul=4, div=1)
GLU = with_backward(GLU, exp=1, add=2, div=1, mul=3)
TANHSHRINK = with_backward(TANHSHRINK, add=3, mul=2)
SOFTSIGN = with_backward(SOFTSIGN, compare=1, div=3, add=2, mul=2)
SOFTMIN = with_backward(SOFTMIN, mul=2, add=(2 * D - 1) / D + 1)
_EITHER = sp.Max(g_x, g_W)  # PReLU's kernel computes both gradients when either is needed
PRELU = dataclasses.replace(
    PRELU,
    grad_input=Gradient(ops={OpKind.COMPARE.value: _EITHER * E, OpKind.MUL.value: _EITHER * E}),
    # the slopes' gradients summed to A values: E − A adds, none for an empty input (E = 0)
    grad_weight=Gradient(ops={OpKind.MUL.value: _EITHER * E, OpKind.ADD.value: g_W * sp.Max(E - A, 0)}),
)

REGISTRY.add_formula(
    ELEMENTWISE, RELU, HARDTANH, RELU6, LEAKY_RELU, PRELU, THRESHOLD, HARDSHRINK, SOFTSHRINK, SIGMOID, LOG_SIGMOID,
    TANH, TANHSHRINK, SOFTSIGN, SILU, GELU, GELU_TANH, HARDSIGMOID, HARDSWISH, MISH, ELU, SELU, CELU, SOFTPLUS, GLU,
    SOFTMAX, SOFTMIN, LOG_SOFTMAX,
)

@cache
def _fixed() -> dict[type[nn.Module], LayerFormula]:
    """Activations whose cost per element does not depend on their hyperparameters, by module class."""
    from torch import nn

    return {
        nn.ReLU: RELU, nn.Hardtanh: HARDTANH, nn.ReLU6: RELU6, nn.LeakyReLU: LEAKY_RELU, nn.RReLU: LEAKY_RELU,
        nn.Threshold: THRESHOLD, nn.Hardshrink: HARDSHRINK, nn.Softshrink: SOFTSHRINK, nn.Sigmoid: SIGMOID,
        nn.LogSigmoid: LOG_SIGMOID, nn.Tanh: TANH, nn.Tanhshrink: TANHSHRINK, nn.Softsign: SOFTSIGN, nn.SiLU: SILU,
        nn.Hardsigmoid: HARDSIGMOID, nn.Hardswish: HARDSWISH, nn.Mish: MISH, nn.ELU: ELU, nn.SELU: SELU,
    }


def bind_fixed(module: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    """Activations whose cost per element does not depend on their hyperparameters."""
    fixed = _fixed()
    formula = next(fixed[klass] for klass in type(module).__mro__ if klass in fixed)
    return any_rank(formula, tuple(args[0].shape))


def bind_prelu(module: nn.PReLU, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    return any_rank(PRELU, tuple(args[0].shape), values={"A": module.num_parameters})


def bind_gelu(module: nn.GELU, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    return any_rank(GELU_TANH if module.approximate == "tanh" else GELU, tuple(args[0].shape))


def bind_celu(module: nn.CELU, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    return any_rank(CELU, tuple(args[0].shape), values={"delta_alpha": int(module.alpha != 1)})


def bind_softplus(module: nn.Softplus, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    return any_rank(SOFTPLUS, tuple(args[0].shape), values={"delta_beta": int(module.beta != 1)})


def bind_glu(module: nn.GLU, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    shape = tuple(args[0].shape)
    out = list(shape_symbols(len(shape)))
    out[module.dim % len(shape)] /= 2
    return any_rank(GLU, shape, output_shape=out)


def softmax_dim(module: nn.Module, rank: int) -> int:
    """The reduced dimension of a softmax module, non-negative."""
    from torch import nn

    if isinstance(module, nn.Softmax2d):
        return rank - 3
    return row_dim(getattr(module, "dim", None), rank)


def row_dim(dim: int | None, rank: int) -> int:
    """``dim`` made non-negative; ``None`` is torch's legacy choice (0 for rank 0, 1, 3, else 1)."""
    if dim is None:
        return 0 if rank in (0, 1, 3) else 1
    return dim % rank if rank else 0


def bind_softmax(module: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    from torch import nn

    shape = tuple(args[0].shape)
    row_wise = {nn.LogSoftmax: LOG_SOFTMAX, nn.Softmin: SOFTMIN}
    formula = next((f for t, f in row_wise.items() if isinstance(module, t)), SOFTMAX)
    return _rows(formula, shape, softmax_dim(module, len(shape)))


def _rows(formula: LayerFormula, shape: tuple[Any, ...], dim: int) -> Bound:
    """A softmax-like formula over rows along ``dim`` of ``shape``."""
    row = shape_symbols(len(shape))[dim] if shape else sp.Integer(1)
    return any_rank(formula, shape, intermediates={D: row})


def _f_fixed(formula: LayerFormula) -> FunctionBinder:
    """The binder of a functional activation whose cost per element does not depend on its arguments."""
    return lambda args, kwargs: any_rank(formula, tuple(argument(args, kwargs, 0, "input").shape))


def bind_f_gelu(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    shape = tuple(argument(args, kwargs, 0, "input").shape)
    return any_rank(GELU_TANH if kwargs.get("approximate", "none") == "tanh" else GELU, shape)


def bind_f_softplus(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    shape = tuple(argument(args, kwargs, 0, "input").shape)
    return any_rank(SOFTPLUS, shape, values={"delta_beta": int(argument(args, kwargs, 1, "beta", 1.0) != 1)})


def _f_rows(formula: LayerFormula) -> FunctionBinder:
    """The binder of ``softmax(input, dim)``-like calls (``F.``, ``torch.`` and ``Tensor.`` forms)."""

    def bind(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
        shape = tuple(argument(args, kwargs, 0, "input").shape)
        return _rows(formula, shape, row_dim(argument(args, kwargs, 1, "dim"), len(shape)))

    return bind


@REGISTRY.on_first_lookup
def _bind() -> None:
    import torch
    import torch.nn.functional as F
    from torch import nn

    REGISTRY.bind(tuple(_fixed()), bind_fixed)
    REGISTRY.bind(nn.PReLU, bind_prelu)
    REGISTRY.bind(nn.GELU, bind_gelu)
    REGISTRY.bind(nn.CELU, bind_celu)
    REGISTRY.bind(nn.Softplus, bind_softplus)
    REGISTRY.bind(nn.GLU, bind_glu)
    REGISTRY.bind((nn.Softmax, nn.Softmin, nn.LogSoftmax, nn.Softmax2d), bind_softmax)
    # F.sigmoid and F.tanh call the Tensor methods, which is what the tracer sees.
    fixed: tuple[tuple[LayerFormula, dict[Any, str]], ...] = (
        (RELU, {F.relu: "F.relu", torch.relu: "torch.relu", torch.Tensor.relu: "Tensor.relu"}),
        (RELU6, {F.relu6: "F.relu6"}),
        (HARDTANH, {F.hardtanh: "F.hardtanh"}),
        (LEAKY_RELU, {F.leaky_relu: "F.leaky_relu"}),
        (SIGMOID, {torch.sigmoid: "torch.sigmoid", torch.Tensor.sigmoid: "Tensor.sigmoid"}),
        (TANH, {torch.tanh: "torch.tanh", torch.Tensor.tanh: "Tensor.tanh"}),
        (SILU, {F.silu: "F.silu"}),
        (HARDSIGMOID, {F.hardsigmoid: "F.hardsigmoid"}),
        (HARDSWISH, {F.hardswish: "F.hardswish"}),
        (MISH, {F.mish: "F.mish"}),
        (ELU, {F.elu: "F.elu"}),
    )
    for formula, functions in fixed:
        REGISTRY.bind_functions(functions, _f_fixed(formula))
    REGISTRY.bind_functions({F.gelu: "F.gelu"}, bind_f_gelu)
    REGISTRY.bind_functions({F.softplus: "F.softplus"}, bind_f_softplus)
    REGISTRY.bind_functions(
        {F.softmax: "F.softmax", torch.softmax: "torch.softmax", torch.Tensor.softmax: "Tensor.softmax"},
        _f_rows(SOFTMAX),
    )
    REGISTRY.bind_functions(
        {F.log_softmax: "F.log_softmax", torch.log_softmax: "torch.log_softmax",
         torch.Tensor.log_softmax: "Tensor.log_softmax"},
        _f_rows(LOG_SOFTMAX),
    )
