"""Measured time per layer: the model run for real, warm-up first, then the median of repeats.

On the CPU each module call is timed with ``time.perf_counter`` between its forward pre- and post-hook; on CUDA
with a pair of CUDA events per call, read after one synchronisation per repeat (so timing adds no syncs inside
the forward). The run uses the report's inputs made real (random floats from a private generator, zero
indices), under ``no_grad``, in the mode the count used, through :func:`flopcalc.isolate.real_run`, which
leaves the model as it was.

With the roofline of the device (``hardware=``), each row gets its achieved FLOP/s and the roofline time as a
percentage of the measured one, and the model its FLOP utilisation: FLOPs / time / peak.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from flopcalc.errors import InputError
from flopcalc.hardware import CPU_MEASURED, HARDWARE
from flopcalc.inputs import ModelInputs
from flopcalc.isolate import real_run
from flopcalc.report import LayerRow, Report


@dataclass(frozen=True)
class Timing:
    """Median seconds per module call (indexed like ``report.rows``; ``None`` for a call the timed run did
    not make), of each call's own work outside its child calls (``self_by_call``, the ``(self)`` rows), and of
    the whole forward, on ``device``."""

    device: str
    repeats: int
    warmup: int
    by_call: tuple[float | None, ...]
    self_by_call: tuple[float | None, ...]
    total_s: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_call", tuple(self.by_call))
        object.__setattr__(self, "self_by_call", tuple(self.self_by_call))

    def of(self, row: LayerRow) -> float | None:
        """The median time of ``row``: its call's, or for a ``(self)`` row its call's own."""
        times = self.self_by_call if row.is_own else self.by_call
        return times[row.index] if row.index < len(times) else None


def check_device(model: nn.Module, device: str) -> None:
    """The model can be timed on ``device``: it is available, and the weights are real and there."""
    if device not in ("cpu", "cuda"):
        raise InputError(f"--time runs on cpu or cuda, not {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--time cuda: this machine has no CUDA device (torch.cuda.is_available() is False)")
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.device.type == "meta":
            raise InputError("--time runs the model for real: it needs real weights (build it with --device cpu)")
        if tensor.device.type != device:
            raise InputError(f"--time {device}: the model's weights are on {tensor.device}; move the model there first")


@dataclass
class _Stamp:
    start: Any
    end: Any = None
    parent: int | None = None


@contextlib.contextmanager
def _timed_calls(model: nn.Module, device: str, stamps: list[_Stamp]) -> Iterator[None]:
    """Hooks appending a :class:`_Stamp` per module call, in call order (CUDA events on ``cuda``)."""
    open_calls: list[int] = []

    def stamp() -> Any:
        if device == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def pre_hook(module: nn.Module, args: Any) -> None:
        stamps.append(_Stamp(stamp(), parent=open_calls[-1] if open_calls else None))
        open_calls.append(len(stamps) - 1)

    def post_hook(module: nn.Module, args: Any, output: Any) -> None:
        stamps[open_calls.pop()].end = stamp()

    handles = []
    try:
        for module in {id(m): m for m in model.modules()}.values():
            handles.append(module.register_forward_pre_hook(pre_hook))
            handles.append(module.register_forward_hook(post_hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _seconds(device: str, start: Any, end: Any) -> float:
    return start.elapsed_time(end) / 1000 if device == "cuda" else end - start


def _run_times(device: str, stamps: list[_Stamp]) -> tuple[list[float], list[float]]:
    """Seconds of each call of one run, and of each call's own work (its time minus its children's)."""
    whole = [_seconds(device, s.start, s.end) for s in stamps]
    own = list(whole)
    for index, s in enumerate(stamps):
        if s.parent is not None:
            own[s.parent] -= whole[index]
    return whole, own


def _medians(runs: list[list[float]]) -> tuple[float | None, ...]:
    calls = max((len(r) for r in runs), default=0)
    return tuple(
        statistics.median(r[i] for r in runs if i < len(r)) if any(i < len(r) for r in runs) else None
        for i in range(calls)
    )


def time_layers(
    model: nn.Module, inputs: ModelInputs, device: str = "cpu", repeats: int = 10, warmup: int = 2,
    training: bool = False,
) -> Timing:
    """Run ``model`` ``warmup + repeats`` times on ``device`` and time every module call (see the module doc)."""
    check_device(model, device)
    if repeats < 1 or warmup < 0:
        raise InputError("--time needs at least one repeat")
    runs: list[list[float]] = []
    own_runs: list[list[float]] = []
    with real_run(model, device, training) as generator, torch.no_grad():
        args, kwargs = inputs.materialize(device, convert=lambda t: t.to(device), generator=generator)
        for run in range(warmup + repeats):
            stamps: list[_Stamp] = []
            with _timed_calls(model, device, stamps):
                model(*args, **kwargs)
            if device == "cuda":
                torch.cuda.synchronize()
            if run >= warmup:
                whole, own = _run_times(device, stamps)
                runs.append(whole)
                own_runs.append(own)
    total = statistics.median(r[0] if r else 0.0 for r in runs)
    return Timing(device, repeats, warmup, _medians(runs), _medians(own_runs), total)


def with_timing(report: Report, timing: Timing) -> Report:
    return dataclasses.replace(report, timing=timing)


def achieved(report: Report, row: LayerRow) -> tuple[float | None, float | None]:
    """(achieved FLOP/s, roofline time as % of the measured time) of ``row``; ``None`` where unknown."""
    seconds = report.timing.of(row) if report.timing else None
    if not seconds or seconds <= 0:
        return None, None
    flops = row.flops if isinstance(row.flops, int) else None
    rate = flops / seconds if flops is not None else None
    share = 100 * row.roofline.time_s / seconds if row.roofline is not None else None
    return rate, share


def timed_elsewhere(report: Report) -> bool:
    """Whether the model was timed on another kind of device than the roofline's (``--time cpu --hardware
    h100-sxm``): its utilisation then compares this machine with a datasheet, not a device with its peak."""
    if report.timing is None or report.totals.roofline is None:
        return False
    name = report.totals.roofline.hardware.name
    return (report.timing.device == "cpu" and name in HARDWARE) or (
        report.timing.device != "cpu" and name == CPU_MEASURED)


def flop_utilisation(report: Report) -> float | None:
    """Model FLOPs / measured forward time / peak of the roofline device, as a percentage."""
    if report.timing is None or report.totals.roofline is None or not report.timing.total_s:
        return None
    flops = report.totals.flops
    if not isinstance(flops, int):
        return None
    return 100 * flops / report.timing.total_s / report.totals.roofline.peak
