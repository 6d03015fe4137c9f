"""Routed experts of a mixture-of-experts layer, as transformers stores them: E experts' weights stacked in
3-d parameters (``gate_up_proj`` or ``up_proj``, and ``down_proj``), run with the ``batched_mm``
implementation, which sends every token through its top-k experts without data-dependent control flow.

Symbols: ``T`` tokens, ``k`` experts per token, ``E`` experts, ``H`` hidden size, ``F`` expert intermediate
size, ``G`` 1 for a gated expert (``act(gate)·up``, as Mixtral and Qwen-MoE), ``B`` 1 with biases.

Routing decides which experts a token visits, never how many, so the cost below is the expected routed cost
and, for top-k routing without dropped tokens, the exact total: ``T·k`` expert MLPs, each ``(1 + G)·F·H``
MACs up and ``F·H`` down; the activation on ``T·k·F`` elements (its per-element costs from
:mod:`flopcalc.layers.activation`), ``G·T·k·F`` gating multiplies, ``T·k·H`` multiplies by the routing
weights and ``T·(k − 1)·H`` adds to combine each token's k results. Expert biases are added per selected row
(``add``: the operator count cannot tell them from other adds).

Backward (docs/conventions.md, "Backward"), for the ``S = T·k`` token-expert pairs, each part only when autograd
needs it: the routing multiply's ``g·w`` (``S·H`` mul) and, when the routing weights need a gradient, ``g·y``
summed over ``H`` (``S·H`` mul, ``S·(H − 1)`` add); each expert product's grad-input and grad-weight at its
forward's MACs; every selected expert's weight (and bias) gradient added into the stacked parameter's (1 add
per element: ``S·F·H`` for the down projection, ``S·(1 + G)·F·H`` for the up one); the gate's two products
(``2·S·F`` mul) and the activation's backward on ``S·F`` elements; the ``k`` copies of each token's gradient
summed (``T·(k − 1)·H`` add). The flags are per operand (``g_x1`` the hidden states, ``g_x2`` the routing
weights) and per parameter (``g_gate_up_proj`` or ``g_up_proj``, ``g_down_proj``, and their ``…_bias``).

>>> experts_formula(SILU).substituted("macs", {"T": 128, "k": 2, "E": 4, "H": 256, "F": 512, "G": 1, "B": 0})
'3·512·256·128·2 = 100,663,296'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sympy as sp

from flopcalc.formula import Gradient, LayerFormula, dims, flag, g_x, g_x1, g_x2
from flopcalc.layers.activation import E as ELEMENTS
from flopcalc.layers.activation import GELU, GELU_TANH, RELU, SILU
from flopcalc.registry import REGISTRY, Binder, Bound

if TYPE_CHECKING:
    from torch import nn

T, k, E, H, F = dims("T k E H F")
G, B = flag("G"), flag("B")
g_gate_up, g_up, g_down, g_gate_up_b, g_up_b, g_down_b = (flag(f"g_{name}") for name in (
    "gate_up_proj", "up_proj", "down_proj", "gate_up_proj_bias", "up_proj_bias", "down_proj_bias"))
"""Backward flags, one per stacked parameter (0 for one the module does not have: ``up_proj`` of a gated one)."""

ACTIVATIONS = {
    "silu": SILU, "swish": SILU, "gelu": GELU, "gelu_new": GELU_TANH, "gelu_pytorch_tanh": GELU_TANH,
    "gelu_fast": GELU_TANH, "relu": RELU,
}
"""transformers' ``hidden_act`` names whose activation flopcalc has a per-element formula for."""



def _any_needed(*needed: sp.Expr) -> sp.Expr:
    """1 if any of the 0/1 flags is set."""
    none = sp.Integer(1)
    for each in needed:
        none *= 1 - each
    return 1 - none


_PAIRS = T * k
_W_UP, _B_UP = g_gate_up + g_up, B * (g_gate_up_b + g_up_b)
_W_DOWN, _B_DOWN = g_down, B * g_down_b
_UP_OUT = _any_needed(g_x1, _W_UP, _B_UP)
"""Whether the up projection's output (so the activation's and the gate's) needs a gradient."""
_DOWN_OUT = _any_needed(_UP_OUT, _W_DOWN, _B_DOWN)
_UP_MACS, _DOWN_MACS = _PAIRS * (1 + G) * F * H, _PAIRS * F * H

ROUTED_EXPERTS = LayerFormula(
    name="routed_experts",
    description="Routed experts: T tokens each through k of E expert MLPs (gated when G = 1), combined by weight",
    params=E * ((1 + G) * F * H + F * H) + B * E * ((1 + G) * F + H),
    macs=T * k * ((1 + G) * F * H + F * H),
    ops={
        "mul": G * T * k * F + T * k * H,
        "add": T * (k - 1) * H + B * T * k * ((1 + G) * F + H),
    },
    output_shape=(T, H),
    grad_input=Gradient(
        macs=_UP_OUT * _DOWN_MACS + g_x1 * _UP_MACS,  # dX of the down, then of the up projection
        ops={
            "mul": _DOWN_OUT * _PAIRS * H + g_x2 * _PAIRS * H + _UP_OUT * G * 2 * _PAIRS * F,  # g·w, g·y, gate
            "add": g_x2 * _PAIRS * (H - 1) + g_x1 * T * (k - 1) * H,  # Σ_H g·y; the k copies of each token
        },
    ),
    grad_weight=Gradient(
        macs=_W_DOWN * _DOWN_MACS + _W_UP * _UP_MACS,
        # each selected expert's gradient added into the stacked parameter's: weights, then biases
        ops={"add": _W_DOWN * _DOWN_MACS + _W_UP * _UP_MACS + _B_DOWN * _PAIRS * H + _B_UP * _PAIRS * (1 + G) * F},
    ),
)


_WITH_ACTIVATION: dict[str, LayerFormula] = {}


def experts_formula(activation: LayerFormula) -> LayerFormula:
    """:data:`ROUTED_EXPERTS` with ``activation`` applied to the ``T·k·F`` intermediate elements (one formula
    object per activation, so its compiled form is reused)."""
    if activation.name not in _WITH_ACTIVATION:
        _WITH_ACTIVATION[activation.name] = _with_activation(activation)
    return _WITH_ACTIVATION[activation.name]


def _with_activation(activation: LayerFormula) -> LayerFormula:
    ops = dict(ROUTED_EXPERTS.ops)
    for kind, per_elements in activation.ops.items():
        ops[kind] = sp.sympify(ops.get(kind, 0)) + sp.sympify(per_elements).xreplace({ELEMENTS: T * k * F})
    grad_ops = dict(ROUTED_EXPERTS.grad_input.ops)  # type: ignore[union-attr]
    assert activation.grad_input is not None
    for kind, expr in activation.grad_input.ops.items():
        on_pairs = sp.sympify(expr).xreplace({ELEMENTS: T * k * F, g_x: _UP_OUT})
        grad_ops[str(kind)] = sp.sympify(grad_ops.get(str(kind), 0)) + on_pairs
    return dataclasses.replace(
        ROUTED_EXPERTS,
        name=f"routed_experts_{activation.name}",
        description=f"{ROUTED_EXPERTS.description}; {activation.name} activation",
        ops=ops,
        grad_input=dataclasses.replace(ROUTED_EXPERTS.grad_input, ops=grad_ops),  # type: ignore[arg-type]
    )


def is_routed_experts(module: nn.Module) -> bool:
    """A transformers experts module with stacked 3-d weights that runs the ``batched_mm`` implementation."""
    from torch import nn

    config = getattr(module, "config", None)
    return (
        getattr(config, "_experts_implementation", None) == "batched_mm"
        and getattr(module, "num_experts", None) is not None
        and isinstance(getattr(module, "down_proj", None), nn.Parameter)
        and module.down_proj.dim() == 3
        and getattr(config, "hidden_act", None) in ACTIVATIONS
        and not getattr(module, "has_post_expert_norm", False)
    )


def bind_routed_experts(module: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    """``forward(hidden_states (T, H), top_k_index (T, k), top_k_weights (T, k))``."""
    hidden, index = (list(args) + [kwargs.get("hidden_states"), kwargs.get("top_k_index")])[:2]
    tokens, hidden_size = hidden.shape
    gated = bool(module.has_gate)
    down = module.down_proj
    intermediate = down.shape[1] if module.is_transposed else down.shape[2]
    values = {"T": tokens, "k": index.shape[-1], "E": module.num_experts, "H": hidden_size, "F": intermediate,
              "G": int(gated), "B": int(bool(module.has_bias))}
    return Bound(experts_formula(ACTIVATIONS[module.config.hidden_act]), values)


def experts_binders(model: nn.Module) -> dict[type, Binder]:
    """Binders for the routed-experts modules in ``model``, for :func:`flopcalc.analyze`'s ``extra``."""
    return {type(m): bind_routed_experts for m in model.modules() if is_routed_experts(m)}


REGISTRY.add_formula(ROUTED_EXPERTS)
