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

>>> experts_formula(SILU).substituted("macs", {"T": 128, "k": 2, "E": 4, "H": 256, "F": 512, "G": 1, "B": 0})
'3·512·256·128·2 = 100,663,296'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sympy as sp

from flopcalc.formula import LayerFormula, dims, flag
from flopcalc.layers.activation import E as ELEMENTS
from flopcalc.layers.activation import GELU, GELU_TANH, RELU, SILU
from flopcalc.registry import REGISTRY, Binder, Bound

if TYPE_CHECKING:
    from torch import nn

T, k, E, H, F = dims("T k E H F")
G, B = flag("G"), flag("B")

ACTIVATIONS = {
    "silu": SILU, "swish": SILU, "gelu": GELU, "gelu_new": GELU_TANH, "gelu_pytorch_tanh": GELU_TANH,
    "gelu_fast": GELU_TANH, "relu": RELU,
}
"""transformers' ``hidden_act`` names whose activation flopcalc has a per-element formula for."""

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
    return dataclasses.replace(
        ROUTED_EXPERTS,
        name=f"routed_experts_{activation.name}",
        description=f"{ROUTED_EXPERTS.description}; {activation.name} activation",
        ops=ops,
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
