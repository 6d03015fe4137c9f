"""One adapter per counter: how to call it, on which device, and what unit its headline number is in.

Each adapter takes a model (already built on the tool's device) and the full input shape (batch included) and
returns ``(reported, params, ok)``: the tool's own headline number, its parameter count (``None`` where it has
none) and, for flopcalc only, whether every layer's formula matched its measurement (``report.ok``, the check
that comes with every analysis, so it is inside the timed call). Peers are imported inside the adapter, so a
worker only imports the one it measures; both thop distributions install the module ``thop``, so each lives in
its own directory of the peers venv and the worker puts the right one first on ``sys.path`` (setup_peers.sh).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models import TokenShape

Counted = tuple[float | None, int | None, bool | None]
"""(headline number, parameter count, whether flopcalc's per-layer check passed; None where not applicable)"""


@dataclass(frozen=True)
class Tool:
    name: str
    device: str
    """``meta`` where the tool counts a model without weights; ``cpu`` where it needs a real forward pass."""
    count: Callable[[nn.Module, tuple[int, ...]], Counted]
    flops_per_mac: int = 1
    """2 for a tool whose headline number is FLOPs = 2 x MACs (FlopCounterMode); the bench compares MACs."""
    path: str | None = None
    """Directory (relative to the peers venv) to put first on ``sys.path`` before importing the tool."""
    package: str | None = None
    """The distribution whose version is reported, and whose absence from the venv skips the tool."""
    convention: str | None = None
    """The name of this tool's convention in :mod:`flopcalc.conventions`, which predicts its number."""

    def activate(self, venv: Path) -> None:
        if self.path:
            sys.path.insert(0, str(venv / self.path))


def _input(shape: tuple[int, ...], device: str) -> torch.Tensor:
    if isinstance(shape, TokenShape):  # token ids: the count does not depend on which tokens
        return torch.zeros(shape, dtype=torch.int64, device=device)
    return torch.empty(shape, device=device) if device == "meta" else torch.randn(shape)


def _device(model: nn.Module) -> str:
    return next(model.parameters()).device.type


def _forward(model: nn.Module, shape: tuple[int, ...]) -> Counted:
    with torch.no_grad():
        model(_input(shape, _device(model)))
    return None, None, None


def _flopcalc(model: nn.Module, shape: tuple[int, ...]) -> Counted:
    import flopcalc

    inputs = [flopcalc.InputSpec(shape, torch.int64)] if isinstance(shape, TokenShape) else shape
    report = flopcalc.analyze(model, inputs)
    return int(report.totals.macs), int(report.totals.params), report.ok


def _flop_counter_mode(model: nn.Module, shape: tuple[int, ...]) -> Counted:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as mode:
        model(_input(shape, _device(model)))
    return mode.get_total_flops(), None, None


def _thop(model: nn.Module, shape: tuple[int, ...]) -> Counted:
    from thop import profile

    with torch.no_grad():
        macs, params = profile(model, inputs=(_input(shape, _device(model)),), verbose=False)
    return macs, int(params), None


def _ptflops(backend: str) -> Callable[[nn.Module, tuple[int, ...]], Counted]:
    def count(model: nn.Module, shape: tuple[int, ...]) -> Counted:
        from ptflops import get_model_complexity_info

        # Given the input itself: ptflops would otherwise build one of batch 1 (float); it prints a warning per
        # unsupported module to stdout.
        with contextlib.redirect_stdout(io.StringIO()):
            macs, params = get_model_complexity_info(
                model, shape[1:], as_strings=False, print_per_layer_stat=False, backend=backend,
                input_constructor=lambda _: _input(shape, _device(model)),
            )
        return macs, params, None

    return count


def _fvcore(model: nn.Module, shape: tuple[int, ...]) -> Counted:
    from fvcore.nn import FlopCountAnalysis, parameter_count

    analysis = FlopCountAnalysis(model, (_input(shape, _device(model)),))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return analysis.total(), parameter_count(model)[""], None


def _torchinfo(model: nn.Module, shape: tuple[int, ...]) -> Counted:
    from torchinfo import summary

    stats = summary(model, input_data=[_input(shape, _device(model))], verbose=0, device=_device(model))
    return stats.total_mult_adds, stats.total_params, None


def _deepspeed(model: nn.Module, shape: tuple[int, ...]) -> Counted:
    os.environ.setdefault("DS_ACCELERATOR", "cpu")  # no GPU needed to count
    from deepspeed.profiling.flops_profiler import get_model_profile

    with contextlib.redirect_stdout(io.StringIO()):
        flops, macs, params = get_model_profile(
            model, args=[_input(shape, _device(model))], print_profile=False, detailed=False, as_string=False
        )
    return {"MACs": macs, "FLOPs": flops}, params, None  # type: ignore[return-value]


def _calflops(model: nn.Module, shape: tuple[int, ...]) -> Counted:
    from calflops import calculate_flops

    with contextlib.redirect_stdout(io.StringIO()):
        flops, macs, params = calculate_flops(
            model, args=[_input(shape, _device(model))], output_as_string=False, print_results=False,
            print_detailed=False,
        )
    return {"MACs": macs, "FLOPs": flops}, params, None  # type: ignore[return-value]


FLOOR = Tool("meta forward", "meta", _forward)
"""The floor: one forward pass on the meta device, counting nothing."""

CPU_FORWARD = Tool("cpu forward", "cpu", _forward)
"""What a tool that needs real weights pays at least: one real forward pass on the CPU."""

FLOPCALC = Tool("flopcalc", "meta", _flopcalc, package="flopcalc")

PEERS = (
    Tool("FlopCounterMode", "meta", _flop_counter_mode, flops_per_mac=2, package="torch", convention="torch"),
    Tool("thop", "meta", _thop, path="thop-lyken17", package="thop", convention="thop"),
    Tool("ultralytics-thop", "meta", _thop, path="thop-ultralytics", package="ultralytics-thop",
         convention="ultralytics-thop"),
    # On meta, aten.linear runs a Python reference kernel that calls torch.mm, which ptflops' pytorch backend
    # has monkey-patched, so every Linear is counted twice there; it is measured the way it works: on CPU.
    Tool("ptflops (pytorch)", "cpu", _ptflops("pytorch"), package="ptflops", convention="ptflops"),
    Tool("ptflops (aten)", "meta", _ptflops("aten"), package="ptflops", convention="ptflops-aten"),
    Tool("fvcore", "cpu", _fvcore, package="fvcore", convention="fvcore"),
    Tool("torchinfo", "meta", _torchinfo, package="torchinfo", convention="torchinfo"),
)

PROFILERS = (
    # Both patch F.linear, whose meta kernel calls the patched torch.matmul again: they run on the CPU.
    Tool("DeepSpeed", "cpu", _deepspeed, package="deepspeed", convention="deepspeed"),
    Tool("calflops", "cpu", _calflops, package="calflops", convention="calflops"),
)
"""Counters that print MACs and FLOPs (``reported`` is ``{"MACs": ..., "FLOPs": ...}``); not timed by the bench,
only counted for the reference numbers of the tests (peer_counts.py)."""

TOOLS = {tool.name: tool for tool in (FLOOR, CPU_FORWARD, FLOPCALC, *PEERS, *PROFILERS)}


def version(tool: Tool, venv: Path) -> str:
    """The installed version of the tool's distribution (looked up in its own directory for the thops)."""
    from importlib import metadata

    if tool.package is None:
        return ""
    paths = [str(venv / tool.path)] if tool.path else sys.path
    found = list(metadata.distributions(name=tool.package, path=paths))
    return found[0].version if found else ""


def mac_count(tool: Tool, reported: Any) -> float | None:
    """The tool's headline number in MACs."""
    return None if reported is None else float(reported) / tool.flops_per_mac
