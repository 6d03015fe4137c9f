"""A module's weights: its ``nn.Parameter``s and the weights torch.ao's quantized modules keep packed.

A quantized conv or linear holds its int8 weight and float bias inside a packed object, not as parameters, so
``module.parameters()`` misses them. They are the model's parameters all the same (torchvision's published
``num_params`` of a quantized model counts them), and are not trainable.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Weight:
    """One parameter tensor; ``key`` identifies it across modules (tied weights, shared packed objects)."""

    key: Hashable
    tensor: torch.Tensor
    trainable: bool


def _packed(module: nn.Module) -> tuple[int, list[torch.Tensor]] | None:
    """The identity of a module's packed weight object and the tensors it holds, if it has one."""
    packed = vars(module).get("_packed_params")
    if isinstance(packed, torch.ScriptObject) and hasattr(module, "_weight_bias"):
        return id(packed), [t for t in module._weight_bias() if t is not None]
    packed = vars(module).get("_packed_weight")  # quantized Embedding(Bag)
    if isinstance(packed, torch.ScriptObject) and hasattr(module, "_weight"):
        return id(packed), [module._weight()]
    return None


def named_modules(module: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``module.named_modules()``: each module once, parents first, under the first name it is reached by;
    iterative, so a deep model costs no generator per level."""
    seen: set[int] = set()
    stack: list[tuple[str, nn.Module]] = [("", module)]
    while stack:
        name, current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield name, current
        if current._modules:
            prefix = f"{name}." if name else ""
            children = reversed(current._modules.items())
            stack.extend([(prefix + key, child) for key, child in children if child is not None])


def _modules(module: nn.Module) -> Iterator[nn.Module]:
    """``module.modules()``, each module once, parents first."""
    return (current for _, current in named_modules(module))


def buffers(module: nn.Module) -> Iterator[torch.Tensor]:
    """``module.buffers()``: every buffer of ``module`` and its submodules, each once."""
    return buffers_of(_modules(module) if module._modules else (module,))  # a leaf needs no walk (most calls)


def buffers_of(owners: Iterable[nn.Module]) -> Iterator[torch.Tensor]:
    """The buffers of these modules (not of their submodules), each once."""
    seen: set[int] = set()
    for owner in owners:
        for buffer in owner._buffers.values():
            if buffer is not None and id(buffer) not in seen:
                seen.add(id(buffer))
                yield buffer


def weights(module: nn.Module, recurse: bool = True) -> Iterator[Weight]:
    """Every parameter and packed weight of ``module`` (and its submodules when ``recurse``), each once."""
    return weights_of(_modules(module) if recurse and module._modules else (module,))


def weights_of(owners: Iterable[nn.Module]) -> Iterator[Weight]:
    """Every parameter and packed weight of these modules (not of their submodules), each once."""
    seen: set[Hashable] = set()
    for owner in owners:
        found = [Weight(id(p), p, p.requires_grad) for p in owner._parameters.values() if p is not None]
        packed = _packed(owner) if "_packed_params" in vars(owner) or "_packed_weight" in vars(owner) else None
        if packed is not None:
            key, tensors = packed
            found += [Weight((key, i), t, False) for i, t in enumerate(tensors)]
        for weight in found:
            if weight.key not in seen:
                seen.add(weight.key)
                yield weight
