"""Running the user's model for one counted pass without changing it.

This is the only module that runs the user's model. It sets the training flags for the pass, chooses where
the pass runs (the meta device for a meta model, fake tensors for a model with real weights, the real
computation on ``device="cpu"``), and restores every flag afterwards, also when the forward pass raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from flopcalc.errors import ForwardError, InputError
from flopcalc.inputs import ModelInputs
from flopcalc.measure import OpCounter
from flopcalc.trace import Tracer

@contextlib.contextmanager
def _mode(model: nn.Module, training: bool) -> Iterator[None]:
    """Set train/eval for the pass and restore every module's own flag afterwards. The flags are set directly:
    a model's own ``train()`` override (one that freezes a head, or takes no mode) is not run."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        for module, _ in flags:
            module.training = training
        yield
    finally:
        for module, flag in flags:
            module.training = flag


def _model_device(model: nn.Module) -> torch.device | None:
    for tensor in [*model.parameters(), *model.buffers()]:
        return tensor.device
    return None


def run_pass(model: nn.Module, inputs: ModelInputs, tracer: Tracer, device: str, training: bool) -> None:
    model_device = _model_device(model)
    on_meta = model_device is not None and model_device.type == "meta"
    if device == "cpu" and on_meta:
        raise InputError("the model's weights are on the meta device; analyse it with device='meta'")
    symbolic = tracer.symbolic
    fake = None
    if symbolic is not None:
        fake = symbolic.fake_mode
    elif device == "meta" and not on_meta:
        fake = FakeTensorMode(allow_non_fake_inputs=True)
    target = "meta" if on_meta else (model_device or torch.device("cpu"))
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        stack.enter_context(_mode(model, training))
        if fake is not None:
            stack.enter_context(fake)
            resolve = symbolic.symint if symbolic else None
            args, kwargs = inputs.materialize(target, convert=fake.from_tensor, resolve=resolve)
        elif on_meta:
            args, kwargs = inputs.materialize(target, convert=lambda t: t.to("meta"))
        else:
            args, kwargs = inputs.materialize(target)
        stack.enter_context(tracer.hooks(model))
        stack.enter_context(OpCounter(tracer.sink, None if symbolic else tracer.record))
        try:
            model(*args, **kwargs)
        except (Exception, SystemExit) as exc:  # a forward that calls sys.exit() failed too
            raise _forward_error(model, tracer, exc) from exc


def _forward_error(model: nn.Module, tracer: Tracer, exc: BaseException) -> ForwardError:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if tracer.stack:
        call = tracer.calls[tracer.stack[-1]]
        shapes = ", ".join("x".join(map(str, s)) for s in call.input_shapes) or "no tensors"
        where = f"in {call.name or type(model).__name__} ({type(call.module).__name__}) called with input {shapes}"
    else:
        where = f"before {type(model).__name__} was called"
    hint = ""
    if "data-dependent" in message.lower() or "DataDependent" in type(exc).__name__:
        hint = "; the forward depends on tensor values, try device='cpu' (--device cpu)"
    return ForwardError(f"forward pass failed {where}: {type(exc).__name__}: {message}{hint}")

