"""Accelerators for the roofline: dense peak FLOP/s per dtype and memory bandwidth.

The table holds **dense** datasheet peaks (NVIDIA headlines 2:4-sparse figures, exactly twice these; several
tools have shipped the sparse ones as peaks) and bandwidth in decimal TB/s (10¹² B/s, not TiB/s). FP32 is the
non-tensor-core peak: TF32 is not assumed. Sources, per entry: NVIDIA A100 Tensor Core GPU datasheet
(2021), NVIDIA H100 Tensor Core GPU datasheet (2023), NVIDIA H200 Tensor Core GPU product brief (2024); the
same figures are collected with their sparse/dense labels in stas00/ml-engineering (compute/accelerator).

``--hardware peak=989e12,bandwidth=3.35e12`` (SI suffixes allowed: ``peak=989T,bandwidth=3.35T``) describes any
other device; ``--hardware cpu`` measures this machine with a short matmul and copy benchmark.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch

from flopcalc.errors import InputError

TERA = 10**12


@dataclass(frozen=True)
class Hardware:
    """Peak FLOP/s by dtype name (``"bfloat16"``, ``"float32"``, …; ``"*"`` for any dtype) and bandwidth in B/s."""

    name: str
    peak_flops: Mapping[str, float]
    bandwidth: float
    source: str = ""

    def __post_init__(self) -> None:  # read-only, like everything a report holds
        object.__setattr__(self, "peak_flops", MappingProxyType(dict(self.peak_flops)))

    def peak_for(self, dtype: str) -> float:
        """The dense peak for ``dtype``; a dtype the device has no figure for is an input error."""
        if dtype in self.peak_flops:
            return self.peak_flops[dtype]
        if "*" in self.peak_flops:
            return self.peak_flops["*"]
        known = ", ".join(self.peak_flops)
        raise InputError(f"{self.name} has no peak for {dtype}; it has {known}")


def _gpu(name: str, bf16: float, fp8: float | None, tf32: float, fp32: float, bandwidth: float, source: str) -> Hardware:
    peaks = {"bfloat16": bf16 * TERA, "float16": bf16 * TERA, "tfloat32": tf32 * TERA, "float32": fp32 * TERA}
    if fp8 is not None:
        peaks["float8_e4m3fn"] = peaks["float8_e5m2"] = fp8 * TERA
    return Hardware(name, peaks, bandwidth * TERA, source)


_A100 = "NVIDIA A100 Tensor Core GPU datasheet (2021), dense figures"
_H100 = "NVIDIA H100 Tensor Core GPU datasheet (2023), dense figures (the sparse ones are 2x)"
_H200 = "NVIDIA H200 Tensor Core GPU product brief (2024): H100 SXM compute, 4.8 TB/s HBM3e"

HARDWARE: dict[str, Hardware] = {
    hw.name: hw
    for hw in (
        _gpu("a100-sxm-40gb", 312, None, 156, 19.5, 1.555, _A100),
        _gpu("a100-sxm-80gb", 312, None, 156, 19.5, 2.039, _A100),
        _gpu("a100-pcie-80gb", 312, None, 156, 19.5, 1.935, _A100),
        _gpu("h100-sxm", 989.4, 1978.9, 494.7, 66.9, 3.35, _H100),
        _gpu("h100-pcie", 756, 1513, 378, 51.2, 2.0, _H100),
        _gpu("h200-sxm", 989.4, 1978.9, 494.7, 66.9, 4.8, _H200),
    )
}

_SI = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}


def _quantity(text: str, what: str) -> float:
    match = re.fullmatch(r"\s*(-?[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([KMGTP]?)\s*", text, flags=re.IGNORECASE)
    if not match:
        raise InputError(f"--hardware {what}={text!r} is not a number; write e.g. {what}=989e12 or {what}=989T")
    value = float(match.group(1)) * _SI[match.group(2).upper()]
    if value <= 0:
        raise InputError(f"--hardware {what} must be positive, not {text!r}")
    return value


CPU_MEASURED = "cpu (measured)"


def hardware(spec: str) -> Hardware:
    """A table entry by name, ``cpu`` (measured here), or ``peak=…,bandwidth=…`` (FLOP/s and B/s)."""
    if spec in HARDWARE:
        return HARDWARE[spec]
    if spec == "cpu":
        return measure_cpu()
    if "=" in spec:
        fields = dict(part.split("=", 1) for part in spec.split(",") if "=" in part)
        if set(fields) != {"peak", "bandwidth"}:
            raise InputError("--hardware takes peak=FLOP/s,bandwidth=B/s, e.g. peak=989e12,bandwidth=3.35e12")
        peak, bandwidth = _quantity(fields["peak"], "peak"), _quantity(fields["bandwidth"], "bandwidth")
        return Hardware(f"peak {peak:.4g} FLOP/s, bandwidth {bandwidth:.4g} B/s", {"*": peak}, bandwidth, "given")
    known = ", ".join([*HARDWARE, "cpu"])
    raise InputError(f"unknown hardware {spec!r}; known: {known}, or peak=FLOP/s,bandwidth=B/s")


def _median_seconds(run: object, repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()  # type: ignore[operator]
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def measure_cpu(size: int = 1024, copy_bytes: int = 64 * 2**20, repeats: int = 5) -> Hardware:
    """This CPU's float32 matmul FLOP/s (``2·n³`` per ``n×n`` product) and copy bandwidth (read + write), each
    the median of ``repeats`` runs after a warm-up: an achieved ceiling, not a datasheet peak."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    source_tensor = torch.empty(copy_bytes // 4)
    target = torch.empty_like(source_tensor)
    torch.mm(a, b)
    target.copy_(source_tensor)
    flops = 2 * size**3 / _median_seconds(lambda: torch.mm(a, b), repeats)
    bandwidth = 2 * copy_bytes / _median_seconds(lambda: target.copy_(source_tensor), repeats)
    return Hardware(
        CPU_MEASURED, {"*": flops}, bandwidth,
        f"measured here: {size}x{size} float32 matmul and a {copy_bytes // 2**20} MiB copy, median of {repeats}",
    )
