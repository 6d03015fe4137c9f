"""Measured time per layer: the model run for real, warm-up first, then the median of repeats.

On the CPU each module call is timed with ``time.perf_counter`` between its forward pre- and post-hook; on CUDA
with a pair of CUDA events per call, read after one synchronisation per repeat (so timing adds no syncs inside
the forward). The run uses the report's inputs made real (random floats, zero indices), under ``no_grad``, in
the mode the count used, and leaves the model as it was: hooks removed, training flags restored.

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
from flopcalc.inputs import ModelInputs
from flopcalc.report import Report


@dataclass(frozen=True)
class Timing:
    """Median seconds per module call (indexed like ``report.rows``; ``None`` for a call the timed run did
    not make) and for the whole forward, on ``device``."""

    device: str
    repeats: int
    warmup: int
    by_call: tuple[float | None, ...]
    total_s: float

    def of(self, index: int) -> float | None:
        return self.by_call[index] if index < len(self.by_call) else None


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


@contextlib.contextmanager
def _timed_calls(model: nn.Module, device: str, stamps: list[list[Any]]) -> Iterator[None]:
    """Hooks appending ``[start, end]`` per module call, in call order (CUDA events on ``cuda``)."""
    open_calls: list[list[Any]] = []

    def stamp() -> Any:
        if device == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def pre_hook(module: nn.Module, args: Any) -> None:
        entry = [stamp(), None]
        stamps.append(entry)
        open_calls.append(entry)

    def post_hook(module: nn.Module, args: Any, output: Any) -> None:
        open_calls.pop()[1] = stamp()

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


def time_layers(
    model: nn.Module, inputs: ModelInputs, device: str = "cpu", repeats: int = 10, warmup: int = 2,
    training: bool = False,
) -> Timing:
    """Run ``model`` ``warmup + repeats`` times on ``device`` and time every module call (see the module doc)."""
    check_device(model, device)
    if repeats < 1 or warmup < 0:
        raise InputError("--time needs at least one repeat")
    args, kwargs = inputs.materialize(device)
    flags = [(m, m.training) for m in model.modules()]
    runs: list[list[float]] = []
    totals: list[float] = []
    try:
        model.train(training)
        with torch.no_grad():
            for run in range(warmup + repeats):
                stamps: list[list[Any]] = []
                with _timed_calls(model, device, stamps):
                    model(*args, **kwargs)
                if device == "cuda":
                    torch.cuda.synchronize()
                if run >= warmup:
                    runs.append([_seconds(device, start, end) for start, end in stamps])
                    totals.append(runs[-1][0] if runs[-1] else 0.0)
    finally:
        for module, flag in flags:
            module.training = flag
    calls = max((len(r) for r in runs), default=0)
    by_call = tuple(
        statistics.median(r[i] for r in runs if i < len(r)) if any(i < len(r) for r in runs) else None
        for i in range(calls)
    )
    return Timing(device, repeats, warmup, by_call, statistics.median(totals))


def with_timing(report: Report, timing: Timing) -> Report:
    return dataclasses.replace(report, timing=timing)


def achieved(report: Report, index: int) -> tuple[float | None, float | None]:
    """(achieved FLOP/s, roofline time as % of the measured time) of row ``index``; ``None`` where unknown."""
    timing = report.timing
    seconds = timing.of(index) if timing else None
    if not seconds:
        return None, None
    row = report.rows[index]
    flops = row.flops if isinstance(row.flops, int) else None
    rate = flops / seconds if flops is not None else None
    share = 100 * row.roofline.time_s / seconds if row.roofline is not None else None
    return rate, share


def flop_utilisation(report: Report) -> float | None:
    """Model FLOPs / measured forward time / peak of the roofline device, as a percentage."""
    if report.timing is None or report.totals.roofline is None or not report.timing.total_s:
        return None
    flops = report.totals.flops
    if not isinstance(flops, int):
        return None
    return 100 * flops / report.timing.total_s / report.totals.roofline.peak
