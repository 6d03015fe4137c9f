"""Which gradients a call needs: the backward flags (``g_x``, ``g_W``, ``g_b`` and the per-operand,
per-parameter and per-output ones a formula names), read from the call's tensors and the module's parameters.

A backward formula is evaluated with these flags, so it counts only the work autograd does: no grad-input
where the input needs no gradient, no grad-weight for frozen parameters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from flopcalc.formula import OUTPUT_FLAGS, g_h

OUTPUT_SYMBOLS = {symbol for position in OUTPUT_FLAGS for symbol in position}
"""The output flags' symbols (``g_y``, ``g_hn``, ``g_cn``, ``g_aw``): set by the tracer when an output receives its
gradient."""
_OUTPUT_NAMES = {symbol.name for symbol in OUTPUT_SYMBOLS}
_GENERIC_FLAGS = {"g_x", "g_W", "g_b", "g_h"}
_OPERAND = re.compile(r"g_x(\d+)")


def _is_bias(name: str) -> bool:
    return name.rsplit(".", 1)[-1].startswith("bias")


def function_flags(tensors: list[torch.Tensor], bound: Any) -> dict[str, int]:
    """The backward flags of a functional call, from its tensor arguments in order: the first is the input
    (indices, as ``F.embedding``'s, need no gradient); of the floating-point ones after it, when the formula
    has a bias (``B = 1``) the last is the bias (``F.linear(x, W, b)``, ``F.conv2d``, ``F.layer_norm``,
    ``F.batch_norm``), the others are weights (a matmul's second operand, ``F.embedding``'s table)."""
    floating = [t for t in tensors if t.is_floating_point() or t.is_complex()]
    takes_input = bool(floating) and tensors[0] is floating[0]
    others = floating[1:] if takes_input else floating
    has_bias = bound is not None and bound.values.get("B") == 1 and bool(others)
    bias = others[-1:] if has_bias else []
    weights = others[:-1] if has_bias else others
    return {
        "g_x": int(takes_input and floating[0].requires_grad),
        "g_W": int(any(t.requires_grad for t in weights)),
        "g_b": int(any(t.requires_grad for t in bias)),
        **named_flags(bound, floating, {}),
    }


def named_flags(bound: Any, floating: list[torch.Tensor], trainable: Mapping[str, bool]) -> dict[str, int]:
    """The per-operand and per-parameter flags a backward formula names, where the work depends on which one
    needs a gradient: ``g_x<i>`` the i-th floating-point input (``g_x1`` the first) needs a gradient;
    ``g_<parameter>``, the parameter's name with dots as underscores (``g_out_proj_weight``), is trainable
    (0 for a parameter the module does not have: ``g_q_proj_weight`` of a packed MultiheadAttention)."""
    if bound is None:
        return {}
    flags = {}
    for symbol in bound.formula.gradient_symbols:
        name = symbol.name
        if not name.startswith("g_") or name in _GENERIC_FLAGS or name in _OUTPUT_NAMES or name in bound.backward_flags:
            continue
        if operand := _OPERAND.fullmatch(name):
            i = int(operand[1]) - 1
            flags[name] = int(len(floating) > i and floating[i].requires_grad)
        else:
            flags[name] = int(trainable.get(name[2:], False))
    return dict(sorted(flags.items()))


def module_flags(module: nn.Module, tensors: list[torch.Tensor], bound: Any, recurse: bool) -> dict[str, int]:
    """``g_x``: an input needs a gradient; ``g_W``/``g_b``: a weight / bias of the module is trainable.
    A formula that names per-operand or per-parameter flags gets them (:func:`named_flags`: Bilinear's
    ``g_x1``, ``g_x2``, MultiheadAttention's per projection); a recurrent cell's (with ``g_h``) tells its
    first input (``g_x``) from the state passed in (``g_h``). ``recurse``: the parameters of submodules count
    (a module the registry has a formula for)."""
    params = module.named_parameters(recurse=recurse)
    trainable = [(name, p.requires_grad) for name, p in params]
    floating = [t for t in tensors if t.is_floating_point() or t.is_complex()]
    flags = {
        "g_x": int(any(t.requires_grad for t in floating)),
        "g_W": int(any(grad for name, grad in trainable if not _is_bias(name))),
        "g_b": int(any(grad for name, grad in trainable if _is_bias(name))),
    }
    flags.update(named_flags(bound, floating, {name.replace(".", "_"): grad for name, grad in trainable}))
    if bound is not None and g_h in bound.formula.gradient_symbols:
        flags["g_x"] = int(bool(floating) and floating[0].requires_grad)
        flags["g_h"] = int(any(t.requires_grad for t in floating[1:]))
    if bound is not None:
        flags.update(bound.backward_flags)
    return flags
