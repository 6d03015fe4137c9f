"""Bytes moved per op, arithmetic intensity and roofline time per layer on a named accelerator.

Convention (docs/conventions.md, "Bytes moved and roofline"): every aten op reads each tensor argument once
and writes each output once, at their dtypes (``numel × element size``): the compulsory traffic of the op, as
if nothing stayed in cache between ops. Views, metadata changes and ``empty`` allocations move nothing; other
allocations (``zeros``, ``full``) write their output; a lookup (``embedding``, ``index_select``) reads its
indices and the rows it gathers, not the whole table. A layer's bytes are those of the ops it executed.

A layer's roofline time is ``max(FLOPs / peak, bytes / bandwidth)`` over the work of its own (the ops not
inside a child call), named ``compute``- or ``memory``-bound by which term is larger; a container sums its
subtree. FLOPs are the measured ones (the same ops the bytes come from), the forward pass only.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from flopcalc.dispatch import DispatchMode
from flopcalc.hardware import Hardware
from flopcalc.measure.core import rule_for
from flopcalc.inputs import ModelInputs
from flopcalc.report import LayerRow, Report

aten = torch.ops.aten
_UNWRITTEN = {aten.empty, aten.empty_like, aten.empty_strided, aten.new_empty, aten.new_empty_strided}
_GATHERS = {aten.embedding: 1, aten.index_select: 2}
"""Lookups, by the position of their indices: they read the indices and the rows they gather, not the table."""


def _tensor_bytes(value: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tree_leaves(value) if isinstance(t, torch.Tensor))


def op_bytes(func: Any, args: Any, kwargs: Any, out: Any) -> int:
    """Bytes ``func`` reads and writes (see the module docstring)."""
    rule = rule_for(func)
    if func.is_view or (isinstance(rule, str) and rule.startswith("view")) or func.overloadpacket in _UNWRITTEN:
        return 0
    if isinstance(rule, str) and rule.startswith("tensor creation"):
        return _tensor_bytes(out)
    if func.overloadpacket in _GATHERS:
        indices = args[_GATHERS[func.overloadpacket]]
        return _tensor_bytes(indices) + 2 * _tensor_bytes(out)  # the gathered rows read, then written
    return _tensor_bytes((args, kwargs)) + _tensor_bytes(out)


class BytesMoved(DispatchMode):
    """Charges each op's bytes to the innermost open module call of ``stack`` (a tracer's call stack), or to the
    model (call 0) outside every call."""

    def __init__(self, stack: list[int]) -> None:
        super().__init__()
        self.stack = stack
        self.by_call: Counter[int] = Counter()
        self.counting = True

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.counting:  # work outside every module call is the model's own, as for the op counts
            self.by_call[self.stack[-1] if self.stack else 0] += op_bytes(func, args, kwargs, out)
        return out


@dataclass(frozen=True)
class Roofline:
    """A layer's (or the model's) measured FLOPs and bytes, and its roofline time on one device.

    ``compute_s`` and ``memory_s`` sum ``FLOPs / peak`` and ``bytes / bandwidth`` over the work of the call
    and its subtree; ``time_s`` sums the larger of the two per call, so for a layer without children it is
    ``max(compute_s, memory_s)``."""

    flops: int
    bytes: int
    time_s: float
    compute_s: float
    memory_s: float

    @property
    def intensity(self) -> float | None:
        """FLOPs per byte moved; ``None`` when nothing was moved."""
        return self.flops / self.bytes if self.bytes else None

    @property
    def bound(self) -> str:
        if not self.flops and not self.bytes:
            return "none"
        return "compute" if self.compute_s >= self.memory_s else "memory"

    @property
    def attained_flops_per_s(self) -> float | None:
        return self.flops / self.time_s if self.time_s else None


@dataclass(frozen=True)
class RooflineTotals:
    """The device and dtype the roofline used, and the model's :class:`Roofline`."""

    hardware: Hardware
    dtype: str
    peak: float
    model: Roofline


def compute_dtype(model: nn.Module, input_dtypes: Sequence[torch.dtype]) -> str:
    """The dtype the pass computes in: that of most floating-point parameter elements, else of the inputs."""
    by_dtype: Counter[str] = Counter()
    for param in model.parameters():
        if param.is_floating_point():
            by_dtype[str(param.dtype).removeprefix("torch.")] += param.numel()
    if by_dtype:
        return by_dtype.most_common(1)[0][0]
    floating = [d for d in input_dtypes if d.is_floating_point]
    return str(floating[0]).removeprefix("torch.") if floating else "float32"


def with_roofline(report: Report, model: nn.Module, inputs: ModelInputs, moved: BytesMoved, hardware: Hardware) -> Report:
    """``report`` with every row's :class:`Roofline` (a ``(self)`` row's is its call's own work) and the
    model's in ``totals.roofline``."""
    dtype = compute_dtype(model, inputs.dtypes)
    rooflines = roofline_rows(report.rows, moved.by_call, hardware, dtype)
    new_rows = tuple(
        dataclasses.replace(row, roofline=whole, own=row.own and dataclasses.replace(row.own, roofline=own))
        for row, (whole, own) in zip(report.rows, rooflines, strict=True)
    )
    totals = RooflineTotals(hardware, dtype, hardware.peak_for(dtype), rooflines[0][0]) if rooflines else None
    return dataclasses.replace(report, rows=new_rows, totals=dataclasses.replace(report.totals, roofline=totals))


def roofline_rows(
    rows: Sequence[LayerRow], self_bytes: Counter[int], hardware: Hardware, dtype: str
) -> list[tuple[Roofline, Roofline]]:
    """Each row's :class:`Roofline` and that of its own work outside its children, children first (rows are in
    call order, parents before children)."""
    peak = hardware.peak_for(dtype)
    result: list[Roofline | None] = [None] * len(rows)
    own: list[Roofline | None] = [None] * len(rows)
    for row in reversed(rows):
        flops, moved = int(row.measured_self.flops), self_bytes[row.index]
        compute, memory = flops / peak, moved / hardware.bandwidth
        own[row.index] = Roofline(flops, moved, max(compute, memory), compute, memory)
        time_s = max(compute, memory)
        for child in row.children:
            done = result[child]
            assert done is not None
            flops, moved = flops + done.flops, moved + done.bytes
            compute, memory, time_s = compute + done.compute_s, memory + done.memory_s, time_s + done.time_s
        result[row.index] = Roofline(flops, moved, time_s, compute, memory)
    return [(whole, mine) for whole, mine in zip(result, own, strict=True) if whole is not None and mine is not None]
