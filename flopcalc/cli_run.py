"""What ``flopcalc MODEL`` does between parsing its arguments and printing: build the model, analyse it (on the
CPU when the shape-only pass needs real values), evaluate ``--at`` points, and explain a failing forward pass in
command-line terms (the batch given twice, the wrong channel count, float token ids).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from flopcalc.analyze import analyze, evaluate_at
from flopcalc.cli_dynamo import meta_kernels_without_dynamo
from flopcalc.cli_parse import parse_batch, parse_size
from flopcalc.errors import ForwardError, InputError
from flopcalc.inputs import InputSpec, ModelInputs
from flopcalc.isolate import needs_real_values
from flopcalc.models import load_model
from flopcalc.report import Report
from flopcalc.symbolic import SymbolicTraceError

if TYPE_CHECKING:
    from flopcalc.llm import LLMSummary

CAST_DTYPES = ("float32", "bfloat16", "float16")
"""What ``--dtype`` may cast a ``--input`` model to (16-bit: mixed precision, float32 master weights counted)."""


@dataclass(frozen=True)
class Views:
    """The training views asked for: ``--backward``, ``--memory``, ``--optimizer``, ``--hardware``, ``--time``
    (with ``--repeats``), and the ``--dtype`` the model and its floating-point inputs are cast to."""

    backward: bool = False
    memory: bool = False
    optimizer: str | None = None
    hardware: str | None = None
    time: str | None = None
    repeats: int = 10
    dtype: str | None = None

    def options(self) -> dict[str, Any]:
        """The matching keyword arguments of :func:`flopcalc.analyze`."""
        return {"backward": self.backward, "memory": self.memory, "optimizer": self.optimizer,
                "hardware": self.hardware, "time": self.time, "repeats": self.repeats}


@dataclass(frozen=True)
class Request:
    """One ``flopcalc MODEL`` run. ``device=None`` is the default: meta, or cpu when the forward needs values."""

    model: str
    inputs: ModelInputs
    device: str | None = None
    arguments: Mapping[str, Any] = field(default_factory=dict)
    hints: Mapping[str, int] = field(default_factory=dict)
    points: Sequence[Mapping[str, int]] = ()
    views: Views = Views()


@dataclass(frozen=True)
class Outcome:
    report: Report
    evaluated: list[dict[str, Any]]
    notes: list[str]
    """One-line notes and warnings for stderr."""


@dataclass(frozen=True)
class LLMRequest:
    """One ``flopcalc hf:PATH`` run, its sizes as typed (a number or a name)."""

    source: str
    seq: str | None
    batch: str
    context: str | None
    generate: str | None
    dtype: str | None
    attention: str
    hints: Mapping[str, int] = field(default_factory=dict)
    views: Views = Views()


def run_hf(request: LLMRequest) -> LLMSummary:
    """Build the Hugging Face model from its config on meta and count the phases asked for (prefill, a decode
    step against a KV cache, generation); the training views go to the phase the table shows.

    Raises:
        InputError: ``--time`` (the model has no weights to run), or ``--backward``/``--optimizer`` with
            ``--decode`` (a training step is a prefill).
    """
    views = request.views
    if views.time is not None:
        raise InputError("--time runs the model for real, and an hf: model is built from its config on meta "
                         "without weights; use --hardware NAME for its roofline time")
    if request.context is not None and (views.backward or views.optimizer):
        raise InputError("--backward and --optimizer count a training step, which is a prefill: give --seq N "
                         "without --decode")

    def size(text: str | None, option: str) -> Any:
        return parse_size(text, option) if text is not None else None

    sizes = {"seq": size(request.seq, "--seq"), "batch": parse_batch(request.batch),
             "context": size(request.context, "--context"), "generate": size(request.generate, "--generate")}
    from flopcalc import hf, llm

    hf_model = hf.load(request.source, dtype=request.dtype, attention=request.attention)
    with meta_kernels_without_dynamo():
        return llm.summarize(hf_model, **sizes, hints=request.hints, views=views.options())


def run(request: Request) -> Outcome:
    """Analyse the requested model; evaluate the ``--at`` points, concretely where no closed form exists.

    Raises:
        FlopcalcError: (subclasses) the model cannot be built, an input is malformed, or the forward pass fails;
            a failing forward's message ends with a hint where the cause is a common command-line mistake.
    """
    device = request.device or "meta"
    notes: list[str] = []
    request = _cast(request)
    model = _load(request, device)
    with meta_kernels_without_dynamo():
        try:
            report, model, device = _analyze(request, model, device, notes)
        except ForwardError as exc:
            hint = shape_hint(exc, request.inputs, model)
            if hint:
                raise ForwardError(f"{exc}; {hint}") from exc
            raise
        except SymbolicTraceError as exc:
            if exc.concrete is None:
                raise
            notes.append(f"warning: {' '.join(str(exc).split())}")
            report = exc.concrete
        evaluated = evaluate_at(model, request.inputs, report, request.points, device) if request.points else []
    return Outcome(report, evaluated, notes)


def _analyze(request: Request, model: Any, device: str, notes: list[str]) -> tuple[Report, Any, str]:
    try:
        return _counted(request, model, device), model, device
    except ForwardError as exc:
        if request.device is not None or device != "meta" or not needs_real_values(exc.__cause__ or exc):
            raise
        cause = exc.__cause__
        reason = " ".join(str(cause).split()).split(". ")[0] if cause is not None else "a data-dependent op"
        notes.append(f"note: the forward pass needs real tensor values ({reason}); counted on cpu instead of meta")
        model = _load(request, "cpu")
        return _counted(request, model, "cpu"), model, "cpu"


def _cast(request: Request) -> Request:
    """The request with its floating-point inputs in ``--dtype``."""
    name = request.views.dtype
    if name is None:
        return request
    if name not in CAST_DTYPES:
        raise InputError(f"--dtype {name}: a --input model is cast to one of {', '.join(CAST_DTYPES)}")
    return dataclasses.replace(request, inputs=request.inputs.with_float_dtype(getattr(torch, name)))


def _load(request: Request, device: str) -> Any:
    """The model built for the pass: with real weights on the timing device for ``--time`` (the count then
    runs on fake copies of them), cast to ``--dtype``. The command built it, so it may move and cast it."""
    views = request.views
    if views.time == "cuda" and not torch.cuda.is_available():
        raise InputError("--time cuda: this machine has no CUDA device (torch.cuda.is_available() is False)")
    model = load_model(request.model, "cpu" if views.time else device, request.arguments)
    if views.time == "cuda":
        model = model.to("cuda")
    return model.to(getattr(torch, views.dtype)) if views.dtype else model


def _counted(request: Request, model: Any, device: str) -> Report:
    views = request.views
    return analyze(
        model, request.inputs, device=device, name=request.model, hints=request.hints or None, **views.options()
    )


_LAYER = re.compile(r"failed in (\S+) \((\w+)\) called with input ([0-9x]+)")
_BATCHED_RANK = re.compile(r"(\d+)D \(batched\)")


def shape_hint(exc: ForwardError, inputs: ModelInputs, model: Any) -> str | None:
    """A hint for the common ways a ``--input`` does not fit the model, or ``None``: the batch given twice, the
    wrong channel count for a convolution, float token ids for an embedding."""
    message = str(exc)
    layer = _LAYER.search(message)
    specs = [v for v in (*inputs.args, *inputs.kwargs.values()) if isinstance(v, InputSpec)]
    float_inputs = [spec for spec in specs if spec.dtype.is_floating_point]
    if float_inputs and (layer and layer.group(2).startswith("Embedding") or "'indices'" in message):
        dims = "x".join(map(str, float_inputs[0].shape[1:]))
        return f"hint: token ids need an integer dtype: --input {dims}:int64"
    if layer is None:
        return None
    name, shape = layer.group(1), [int(d) for d in layer.group(3).split("x")]
    module = _submodule(model, name)
    rank = _BATCHED_RANK.search(message)
    if rank and len(shape) == int(rank.group(1)) + 1 and any(len(s.shape) > 2 and s.shape[1] == 1 for s in specs):
        return "hint: flopcalc adds the batch dimension; drop the leading 1 or use --batch"
    channels = getattr(module, "in_channels", None)
    if isinstance(channels, int) and len(shape) >= 2 and shape[1] != channels:
        return f"hint: {name} expects {channels} channels, the input has {shape[1]}"
    return None


def _submodule(model: Any, name: str) -> Any:
    try:
        return model.get_submodule(name)
    except (AttributeError, TypeError):
        return model if name == type(model).__name__ else None
