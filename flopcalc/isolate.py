"""Running the user's model for one counted pass without changing it.

This is the only module that runs the user's model. The pass never touches the user's tensors: every
parameter, buffer and tensor attribute is swapped for a stand-in (a fake tensor on the default meta path, a
meta tensor for a meta model, a copy on ``device="cpu"``), so in-place updates (BatchNorm statistics, step
counters) and tensors the forward stores on ``self`` (rotary caches, ``weight_norm``'s weight) land on the
stand-ins. Afterwards every module's class, attributes, hook dicts and parameter/buffer dicts are put back as
they were, the global RNG state is restored, and training flags are set directly (a ``train()`` override never
runs), also when the forward pass raises. Calls on one model from several threads take turns.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedTensorMixin
from torch.utils._python_dispatch import _disable_current_modes

from flopcalc.errors import ForwardError, InputError
from flopcalc.inputs import ModelInputs
from flopcalc.measure import OpCounter
from flopcalc.memory import LiveMemory, SavedTensors, saved_for_backward
from flopcalc.roofline import BytesMoved
from flopcalc.trace import Tracer
from flopcalc.weights import named_modules

INPUT_SEED = 0
"""Seed of the private generator that draws random inputs on ``device="cpu"`` (the global RNG is not used)."""

_busy: dict[int, int] = {}  # id of a module in a pass -> ident of the thread running it
_turns = threading.Condition()


@contextlib.contextmanager
def _exclusive(model: nn.Module, modules: list[nn.Module]) -> Iterator[None]:
    """One pass at a time over any module of ``model``: another thread waits its turn; a pass started from
    inside a pass over the same modules (e.g. ``analyze`` called in a forward) is refused."""
    ids = [id(m) for m in modules]
    me = threading.get_ident()
    with _turns:
        while any(_busy.get(i, me) != me for i in ids):
            _turns.wait()
        if any(i in _busy for i in ids):
            raise InputError(
                f"{type(model).__name__} is already being analysed by this thread (analyze() called inside its "
                "own forward pass); analyse a copy (copy.deepcopy) instead"
            )
        _busy.update(dict.fromkeys(ids, me))
    try:
        yield
    finally:
        with _turns:
            for i in ids:
                del _busy[i]
            _turns.notify_all()


class _ModuleState:
    """Everything a forward pass can change on one module, to put back afterwards: its class (lazy modules
    change it), its ``__dict__``, and the contents of the dicts, sets and lists held there (parameters,
    buffers, submodules, hooks, caches), restored in place so their identity is kept too."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.cls = type(module)
        self.attributes = dict(vars(module))
        # An empty container (most of a module's hook dicts) is saved as None: restoring it is emptying it.
        self.contents = [
            (value, _copy_container(value) if value else None)
            for value in self.attributes.values()
            if isinstance(value, dict | set | list)
        ]

    def restore(self) -> None:
        for container, saved in self.contents:
            if container:
                container.clear()
            if saved:
                container.update(saved) if isinstance(container, dict | set) else container.extend(saved)
        vars(self.module).clear()
        vars(self.module).update(self.attributes)
        if type(self.module) is not self.cls:
            self.module.__class__ = self.cls


def _copy_container(value: dict[Any, Any] | set[Any] | list[Any]) -> Any:
    return dict(value) if isinstance(value, dict) else type(value)(value)


Convert = Callable[[torch.Tensor], torch.Tensor]


def _swap_tensors(modules: list[nn.Module], convert: Convert, device: torch.device) -> None:
    """Replace every parameter, buffer and plain tensor attribute by ``convert(it)``; a tensor shared by several
    modules (tied weights) gets one stand-in, so sharing is kept."""
    stand_ins: dict[int, torch.Tensor] = {}

    def stand_in(tensor: torch.Tensor) -> torch.Tensor:
        if id(tensor) not in stand_ins:
            lazy = isinstance(tensor, UninitializedTensorMixin)
            stand_ins[id(tensor)] = _lazy_copy(tensor, device) if lazy else convert(tensor)
        return stand_ins[id(tensor)]

    for module in modules:
        for store in (module._parameters, module._buffers):
            for key, tensor in store.items():
                if tensor is not None:
                    store[key] = stand_in(tensor)
        attributes = vars(module)
        for key, value in list(attributes.items()):
            if isinstance(value, torch.Tensor):
                attributes[key] = stand_in(value)


def _lazy_copy(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A fresh uninitialised parameter or buffer on ``device``: a lazy module materialises it in place."""
    return type(tensor)(  # type: ignore[call-arg]
        requires_grad=tensor.requires_grad, device=device, dtype=tensor.dtype
    )


def _keep_kind(tensor: torch.Tensor, copy: torch.Tensor) -> torch.Tensor:
    """``copy`` as an ``nn.Parameter`` with the same ``requires_grad`` when ``tensor`` is one."""
    if isinstance(tensor, nn.Parameter):
        return nn.Parameter(copy, requires_grad=tensor.requires_grad)
    return copy


def _unlinked(convert: Convert) -> Convert:
    """``convert`` applied to a detached input, so that no gradient of the backward pass reaches the user's
    tensor; the stand-in keeps ``requires_grad`` (an input that needs a gradient gets grad-input work)."""

    def stand_in(tensor: torch.Tensor) -> torch.Tensor:
        copy = convert(tensor.detach())
        return copy.requires_grad_() if tensor.requires_grad and not copy.requires_grad else copy

    return stand_in


def _meta_copy(tensor: torch.Tensor) -> torch.Tensor:
    """``torch.empty_like(tensor)``: for a dense tensor (every parameter and buffer in practice) the same
    sizes and strides made directly, which is a hundred times faster than ``empty_like`` on a Parameter."""
    dense = tensor.is_contiguous() or tensor.is_contiguous(memory_format=torch.channels_last)
    if dense and tensor.layout is torch.strided:
        return torch.empty_strided(tensor.shape, tensor.stride(), dtype=tensor.dtype, device="meta")
    return torch.empty_like(tensor.detach(), device="meta")


def _modules(model: nn.Module) -> list[nn.Module]:
    """``list(model.modules())``, walked without a generator per level of the model."""
    return [module for _, module in named_modules(model)]


def _tensors(modules: list[nn.Module]) -> Iterator[torch.Tensor]:
    """The parameters of ``modules``, then their buffers (``model.parameters()``, then ``model.buffers()``)."""
    for store in ("_parameters", "_buffers"):
        for module in modules:
            for tensor in getattr(module, store).values():
                if tensor is not None:
                    yield tensor


def _model_device(modules: list[nn.Module]) -> torch.device | None:
    for tensor in _tensors(modules):  # the first one
        return tensor.device
    return None


@contextlib.contextmanager
def run_pass(
    model: nn.Module, inputs: ModelInputs, tracer: Tracer, device: str, training: bool, backward: bool = False,
    memory: bool = False, bytes_moved: BytesMoved | None = None,
) -> Iterator[None]:
    """Run one traced forward pass of ``model`` on stand-in tensors; the body of the ``with`` runs while the
    stand-ins are still in place (a report reads the parameters the pass used, e.g. a lazy module's
    materialised weights), and the model is restored when it ends.

    With ``backward`` the backward pass of a :class:`~flopcalc.backward.BackwardTracer` follows, on the same
    stand-ins (gradients land on them, never on the user's parameters); ``memory`` tracks the activation peak
    and the bytes saved for backward on the tracer; ``bytes_moved`` counts the bytes of the forward's ops.

    Raises:
        ForwardError: the forward (or backward) pass raised (the model is restored first).
        InputError: a meta model on ``device="cpu"``, or a pass started inside a pass over the same model.
    """
    all_modules = _modules(model)
    model_device = _model_device(all_modules)
    on_meta = model_device is not None and model_device.type == "meta"
    if device == "cpu" and on_meta:
        raise InputError("the model's weights are on the meta device; analyse it with device='meta'")
    symbolic = tracer.symbolic
    lazy = any(isinstance(t, UninitializedTensorMixin) for t in _tensors(all_modules))
    if lazy and symbolic is not None:
        raise InputError(
            "a model with lazy modules (nn.LazyLinear, ...) cannot be counted in closed form: its weight shapes "
            "are only known from a concrete input; use concrete sizes"
        )
    # A lazy module materialises its weights with torch.empty on its own device, which cannot be a fake tensor:
    # such a model runs on meta stand-ins instead.
    on_meta = on_meta or (lazy and device == "meta")
    fake = None
    if symbolic is not None:
        fake = symbolic.fake_mode
    elif device == "meta" and not on_meta:
        fake = FakeTensorMode(allow_non_fake_inputs=True)
    target = torch.device("meta") if on_meta else (model_device or torch.device("cpu"))
    with _exclusive(model, all_modules), torch.random.fork_rng(devices=[]), _restored(all_modules) as modules:
        for module in modules:
            module.training = training
            if isinstance(module, nn.TransformerEncoder):
                # On its nested-tensor path the layers' ops have no single shape for the hooks and rules to
                # read; the pass counts the padded computation instead (a padding mask is not discounted).
                module.use_nested_tensor = False
            if isinstance(module, LazyModuleMixin) and module.has_uninitialized_params():
                _initialise_uncounted(module)
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.enable_grad() if backward else torch.no_grad())
            if fake is not None:
                _swap_tensors(modules, lambda t: fake.from_tensor(t, static_shapes=True), target)
                stack.enter_context(fake)
                resolve = symbolic.symint if symbolic else None
                args, kwargs = inputs.materialize(target, convert=_unlinked(fake.from_tensor), resolve=resolve)
            elif on_meta:
                _swap_tensors(modules, lambda t: _keep_kind(t, _meta_copy(t)), target)
                args, kwargs = inputs.materialize(target, convert=_unlinked(lambda t: t.to("meta")))
            else:
                _swap_tensors(modules, lambda t: _keep_kind(t, t.detach().clone()), target)
                generator = torch.Generator(device=target).manual_seed(INPUT_SEED)
                args, kwargs = inputs.materialize(target, convert=_unlinked(torch.clone), generator=generator)
            stack.enter_context(tracer.hooks(model))
            stack.enter_context(OpCounter(tracer.sink, None if symbolic else tracer.record))
            if bytes_moved is not None:
                stack.enter_context(bytes_moved)
            live = stack.enter_context(LiveMemory()) if memory and symbolic is None else None
            saved = SavedTensors()
            if memory and backward:
                stack.enter_context(saved_for_backward(saved))
            try:
                output = model(*args, **kwargs)
            except (Exception, SystemExit) as exc:  # a forward that calls sys.exit() failed too
                raise _forward_error(model, tracer, exc, on_cpu=target.type == "cpu" and fake is None) from exc
            if live is not None:
                tracer.peak_bytes = live.peak
            if memory and backward:
                tracer.saved_bytes = saved.bytes
            if bytes_moved is not None:
                bytes_moved.counting = False  # the roofline is of the forward pass
            if backward:
                _run_backward(tracer, output, on_cpu=target.type == "cpu" and fake is None)
        yield


def _run_backward(tracer: Tracer, output: object, on_cpu: bool) -> None:
    try:
        tracer.run_backward(output)  # type: ignore[attr-defined]
    except InputError:
        raise
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = ""
        if not on_cpu and needs_real_values(exc):  # e.g. a sparse Embedding's gradient drops its padding rows
            hint = ("; the backward pass reads tensor values, which a shape-only pass does not have: run it on the "
                    "CPU (device='cpu'; on the command line --device cpu, or leave --device out)")
        raise ForwardError(f"backward pass failed: {type(exc).__name__}: {message}{hint}") from exc


@contextlib.contextmanager
def real_run(model: nn.Module, device: torch.device | str, training: bool) -> Iterator[torch.Generator]:
    """Run ``model`` for real (timing) without changing it: one pass at a time, the global RNG restored, training
    flags set directly, buffers and tensor attributes swapped for copies (a forward may update them in place)
    and every module put back afterwards. Parameters are used as they are, not copied: under ``no_grad`` a
    forward does not write to them, and a copy of every weight would double the model's memory on the device.
    Yields the private generator to draw random inputs from."""
    on_cuda = torch.device(device).type == "cuda"
    rng = torch.random.fork_rng(devices=[torch.cuda.current_device()] if on_cuda else [])
    all_modules = _modules(model)
    with _exclusive(model, all_modules), rng, _restored(all_modules) as modules:
        for module in modules:
            module.training = training
        _swap_tensors(modules, lambda t: t if isinstance(t, nn.Parameter) else t.detach().clone(), torch.device(device))
        yield torch.Generator(device=device).manual_seed(INPUT_SEED)


def _initialise_uncounted(module: LazyModuleMixin) -> None:
    """A lazy module creates and initialises its weights (``uniform_``, ...) in a hook before its first forward:
    that is set-up, not forward work, so it runs outside the op counter. The override is an instance attribute,
    gone when the module is restored."""
    initialise = module.initialize_parameters

    def outside_the_counter(*args: Any, **kwargs: Any) -> None:
        with _disable_current_modes():
            initialise(*args, **kwargs)

    module.initialize_parameters = outside_the_counter  # type: ignore[method-assign]


@contextlib.contextmanager
def _restored(modules: list[nn.Module]) -> Iterator[list[nn.Module]]:
    """``modules`` (a model's), each put back as it was when the block ends (normally or by an exception)."""
    states = [_ModuleState(m) for m in modules]
    try:
        yield modules
    finally:
        for state in states:
            state.restore()


NEEDS_VALUES = ("DataDependent", "DynamicOutputShape", "data-dependent", "register_meta", "meta tensor",
                "meta and cpu", "cpu and meta", "device meta", "on meta", "'meta'")
"""How torch says that an op read tensor values the meta device does not have (``.item()``, ``nonzero``, a
tensor created on the CPU inside the forward)."""


def needs_real_values(exc: BaseException) -> bool:
    """Whether a shape-only pass failed for want of tensor values, so that a CPU run would succeed."""
    text = f"{type(exc).__name__}: {exc}"
    return any(marker.lower() in text.lower() for marker in NEEDS_VALUES)


def _forward_error(model: nn.Module, tracer: Tracer, exc: BaseException, on_cpu: bool) -> ForwardError:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if tracer.stack:
        call = tracer.calls[tracer.stack[-1]]
        shapes = ", ".join("x".join(map(str, s)) for s in call.input_shapes) or "no tensors"
        where = f"in {call.name or type(model).__name__} ({type(call.module).__name__}) called with input {shapes}"
    else:
        where = f"before {type(model).__name__} was called"
    hint = ""
    if not on_cpu and needs_real_values(exc):
        hint = ("; the forward reads tensor values, which a shape-only pass does not have: run it on the CPU "
                "(device='cpu'; on the command line --device cpu, or leave --device out)")
    return ForwardError(f"forward pass failed {where}: {type(exc).__name__}: {message}{hint}")
