"""The benchmark's models: three named ones, the torchvision classification zoo, and a 6.4B-parameter encoder.

Every model is built in eval mode on the device asked for: ``meta`` (shapes only, no weights allocated) for
the tools that can count a meta model, ``cpu`` (real, initialised weights) for the ones that need a real
forward pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torchvision
from torch import nn

NAMED = ("resnet50", "vit_b_16", "convnext_tiny")

ENCODER = "encoder_6b"
"""nn.TransformerEncoder, d_model 4096, 32 heads, ffn 16384, 32 layers, on a 1 x 128 token sequence."""

ENCODER_SHAPE = (1, 128, 4096)

_NATIVE_RESOLUTION = {"inception_v3": 299}
"""Models whose documented input is not 224 x 224."""


def zoo() -> list[str]:
    """Every classification model torchvision ships (80 in torchvision 0.29)."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def input_shape(name: str) -> tuple[int, ...]:
    """The input a user would count ``name`` at, batch 1 included."""
    if name == ENCODER:
        return ENCODER_SHAPE
    side = _NATIVE_RESOLUTION.get(name, 224)
    return (1, 3, side, side)


def build(name: str, device: str) -> nn.Module:
    """``name`` (a torchvision model or :data:`ENCODER`) with its parameters on ``device``, in eval mode."""
    try:
        with torch.device(device):
            return _construct(name).eval()
    except NotImplementedError:  # a constructor that computes with tensors cannot run on a meta default device
        if device != "meta":
            raise
    with _weights_on_meta():
        return _construct(name).eval()


def _construct(name: str) -> nn.Module:
    if name == ENCODER:
        layer = nn.TransformerEncoderLayer(d_model=4096, nhead=32, dim_feedforward=16384, batch_first=True)
        return nn.TransformerEncoder(layer, num_layers=32)
    return torchvision.models.get_model(name)


@contextlib.contextmanager
def _weights_on_meta() -> Iterator[None]:
    """Move every parameter and buffer to meta as it is registered, so that initialisation runs on meta.

    For models whose constructor computes with tensors (regnet's ``BlockParams`` calls ``.tolist()``), which
    fails when meta is the default device. Each tensor is created empty on the CPU first and dropped at once.
    """
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(module, name, param)

    def buffer(module: nn.Module, name: str, tensor: torch.Tensor | None, persistent: bool = True) -> None:
        register_buffer(module, name, None if tensor is None else tensor.to("meta"), persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter, buffer  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer  # type: ignore[method-assign]
