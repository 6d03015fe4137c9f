"""A snapshot of everything ``analyze()`` promises not to change, to compare before and after a call.

It records, per module: its class, every ``__dict__`` entry (training flags, plain attributes, hook dicts,
the parameter/buffer/submodule dicts with the identity of each entry), every parameter's and buffer's
identity, type, ``requires_grad`` and value (shape, dtype and device for meta tensors), plus the global RNG
state and torch's global module hooks. Two snapshots compare equal only if nothing changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as module_globals

_PLAIN = (int, float, str, bool, bytes, type(None), torch.dtype, torch.device, torch.Size)


def _value(value: Any) -> Any:
    """A comparable record of one attribute value: plain values by value, tensors by identity and content,
    containers by identity and the record of each entry, anything else by identity and type."""
    if isinstance(value, _PLAIN):
        return ("plain", type(value), value)
    if isinstance(value, torch.Tensor):
        return ("tensor", id(value), _tensor(value))
    if isinstance(value, dict):
        return ("dict", id(value), type(value), tuple((k, _value(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return ("seq", id(value) if isinstance(value, list) else None, type(value), tuple(_value(v) for v in value))
    if isinstance(value, set | frozenset):
        return ("set", id(value), type(value), frozenset(value))
    return ("object", id(value), type(value))


def _content(value: Any) -> Any:
    """A state_dict entry by content only (a quantized module unpacks fresh tensors on every call)."""
    if isinstance(value, torch.Tensor):
        return _tensor(value)
    if isinstance(value, list | tuple):
        return tuple(_content(v) for v in value)
    return _value(value)


def _tensor(tensor: torch.Tensor) -> tuple[Any, ...]:
    """Type, flags and metadata of a tensor, and its values (a copy) unless it is on the meta device."""
    if type(tensor).__name__ == "FakeTensor" or tensor.is_meta:
        content: Any = None
    elif isinstance(tensor, nn.parameter.UninitializedTensorMixin):
        content = "uninitialized"
    elif tensor.is_quantized:
        content = tensor.dequantize()
    else:
        content = tensor.detach().clone()
    shape = None if isinstance(tensor, nn.parameter.UninitializedTensorMixin) else tuple(tensor.shape)
    return (type(tensor), tensor.requires_grad, shape, tensor.dtype, tensor.device.type, content)


@dataclass
class ModelState:
    modules: list[tuple[str, type, dict[str, Any]]]
    parameters: list[tuple[str, int, tuple[Any, ...]]]
    buffers: list[tuple[str, int, tuple[Any, ...]]]
    state_dict: list[tuple[str, tuple[Any, ...]]]
    rng: torch.Tensor
    global_hooks: tuple[Any, ...]

    def differences(self, other: ModelState) -> list[str]:
        """What changed, as readable lines (empty when nothing did)."""
        found = []
        for (name, cls, attrs), (_, cls2, attrs2) in zip(self.modules, other.modules):
            if cls is not cls2:
                found.append(f"{name or 'root'}: class {cls.__name__} became {cls2.__name__}")
            for key in attrs.keys() | attrs2.keys():
                if not _same(attrs.get(key), attrs2.get(key)):
                    found.append(f"{name or 'root'}.{key} changed")
        if len(self.modules) != len(other.modules):
            found.append(f"{len(self.modules)} modules became {len(other.modules)}")
        for what in ("parameters", "buffers", "state_dict"):
            if not _same(getattr(self, what), getattr(other, what)):
                found.append(f"{what} changed")
        if not torch.equal(self.rng, other.rng):
            found.append("the global RNG state changed")
        if self.global_hooks != other.global_hooks:
            found.append("torch's global module hooks changed")
        return found


def _same(a: Any, b: Any) -> bool:
    """Deep equality where tensors compare by value (``torch.equal``) and everything else by ``==``."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
            and a.shape == b.shape and torch.equal(a, b)
        )
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def snapshot(model: nn.Module) -> ModelState:
    modules = [
        (name, type(m), {key: _value(value) for key, value in vars(m).items()})
        for name, m in model.named_modules(remove_duplicate=False)
    ]
    parameters = [(n, id(p), _tensor(p)) for n, p in model.named_parameters(remove_duplicate=False)]
    buffers = [(n, id(b), _tensor(b)) for n, b in model.named_buffers(remove_duplicate=False)]
    has_lazy = any(isinstance(t, nn.parameter.UninitializedTensorMixin) for _, _, t in [*parameters, *buffers])
    state = [] if has_lazy else [(k, _content(v)) for k, v in model.state_dict(keep_vars=True).items()]
    hooks = tuple(
        tuple((k, id(v)) for k, v in getattr(module_globals, name).items())
        for name in ("_global_forward_pre_hooks", "_global_forward_hooks", "_global_backward_hooks")
    )
    return ModelState(modules, parameters, buffers, state, torch.get_rng_state(), hooks)


def assert_unchanged(before: ModelState, model: nn.Module) -> None:
    differences = before.differences(snapshot(model))
    assert not differences, "; ".join(differences)
