"""Memory: activation bytes from tensor lifetimes during the pass, bytes kept for backward, training state.

:class:`LiveMemory` is a dispatch mode that sees every tensor an op creates. A new storage adds its bytes to the
live total; when the last tensor using it is freed (Python frees a meta or fake tensor as soon as nothing
refers to it, exactly as a real one), its bytes leave. The peak of that total is the activation memory the
pass needed: with ``backward=True`` the forward holds what autograd saves, so the peak includes it. Inputs,
parameters and buffers existed before the pass and are not counted.

:func:`saved_for_backward` records, through ``torch.autograd.graph.saved_tensors_hooks``, every tensor autograd
keeps for the backward pass (parameters excluded: they are counted as parameters).

:func:`training_state` is the arithmetic of parameters, gradients and optimizer state per optimizer.
"""

from __future__ import annotations

import contextlib
import weakref
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from flopcalc.dispatch import DispatchMode
from flopcalc.weights import weights

class OptimizerState(NamedTuple):
    """The float32 state tensors an optimizer keeps per trainable parameter, and what they are."""

    per_param: int
    kept: str


OPTIMIZER_STATES = {
    "adam": OptimizerState(2, "first and second moments"),
    "adamw": OptimizerState(2, "first and second moments"),
    "sgd": OptimizerState(1, "the momentum buffer; SGD without momentum keeps none"),
}
"""Adam/AdamW keep the first and second moments (``exp_avg``, ``exp_avg_sq``), SGD with momentum one momentum
buffer (torch's SGD with ``momentum=0`` keeps none); every report states which."""

HALF_PRECISION = (torch.float16, torch.bfloat16)


def _storage_key(tensor: torch.Tensor) -> int | None:
    try:
        return tensor.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError):  # tensors without storage (sparse, nested): not tracked
        return None


def tensor_bytes(tensor: torch.Tensor) -> int:
    """The bytes of the tensor's elements (a view counts its own elements, not its base's)."""
    return tensor.numel() * tensor.element_size()


class LiveMemory(DispatchMode):
    """Live bytes of the storages the pass creates, and their peak (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._holders: Counter[int] = Counter()
        self._sizes: dict[int, int] = {}
        self._external: set[int] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        for tensor in tree_leaves((args, kwargs)):
            if isinstance(tensor, torch.Tensor):
                key = _storage_key(tensor)
                if key is not None and key not in self._holders:
                    self._external.add(key)  # an input, parameter or buffer: existed before the pass
        out = func(*args, **kwargs)
        # A view shares its input's storage (on fake tensors it may get a storage object of its own).
        source = next((t for t in tree_leaves(args) if isinstance(t, torch.Tensor)), None) if func.is_view else None
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self._track(tensor, _storage_key(source if source is not None else tensor))
        return out

    def _track(self, tensor: torch.Tensor, key: int | None) -> None:
        if key is None or key in self._external:
            return
        if not self._holders[key]:
            self._sizes[key] = tensor.untyped_storage().nbytes()
            self.live += self._sizes[key]
            self.peak = max(self.peak, self.live)
        self._holders[key] += 1
        weakref.finalize(tensor, self._release, key)

    def _release(self, key: int) -> None:
        self._holders[key] -= 1
        if not self._holders[key]:
            del self._holders[key]
            self.live -= self._sizes.pop(key)


@dataclass
class SavedTensors:
    """Bytes autograd keeps for the backward pass, each storage once."""

    bytes: int = 0

    def __post_init__(self) -> None:
        self._seen: set[int] = set()
        self._keep: list[torch.Tensor] = []

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        base = tensor._base if tensor._base is not None else tensor  # a saved view keeps its whole base
        is_parameter = isinstance(base, nn.Parameter) or (base.is_leaf and base.requires_grad)
        if not is_parameter and id(base) not in self._seen:
            self._seen.add(id(base))
            self._keep.append(base)  # keeps the id unique while the graph lives
            self.bytes += base.untyped_storage().nbytes()
        return tensor


@contextlib.contextmanager
def saved_for_backward(saved: SavedTensors) -> Iterator[None]:
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda tensor: tensor):
        yield


@dataclass(frozen=True)
class TrainingState:
    """Bytes of the state a training step keeps besides activations, for one optimizer.

    ``master_bytes`` is the float32 copy of 16-bit trainable weights that mixed precision updates (0 when the
    weights are float32). Gradients have the dtype of their parameter; optimizer state is float32 (the dtype
    torch's Adam and SGD keep it in for float32 and mixed-precision master weights).
    """

    optimizer: str
    states_per_param: int
    param_bytes: int
    grad_bytes: int
    master_bytes: int
    optimizer_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.param_bytes + self.grad_bytes + self.master_bytes + self.optimizer_bytes


def training_state(model: nn.Module, optimizer: str) -> TrainingState:
    """Parameters (all, packed quantized weights included), gradients and optimizer state (trainable parameters
    only) of ``model``."""
    if optimizer not in OPTIMIZER_STATES:
        known = ", ".join(OPTIMIZER_STATES)
        raise ValueError(f"unknown optimizer {optimizer!r}; known: {known}")
    params = [w.tensor for w in weights(model)]  # quantized modules' packed weights too, never trainable
    trainable = [w.tensor for w in weights(model) if w.trainable]
    fp32 = torch.tensor([], dtype=torch.float32).element_size()
    states = OPTIMIZER_STATES[optimizer].per_param
    return TrainingState(
        optimizer=optimizer,
        states_per_param=states,
        param_bytes=sum(tensor_bytes(p) for p in params),
        grad_bytes=sum(tensor_bytes(p) for p in trainable),
        master_bytes=sum(p.numel() * fp32 for p in trainable if p.dtype in HALF_PRECISION),
        optimizer_bytes=sum(p.numel() * fp32 * states for p in trainable),
    )
