"""Assertions for a test suite: counts equal an expectation, every formula equals its measurement, a budget holds.

Each helper takes a model and its inputs, in any form :func:`flopcalc.analyze` takes (a shape with batch, a
list of shapes, example tensors, a dict of keyword arguments) plus ``analyze()``'s keyword options, or a
:class:`~flopcalc.report.Report` made earlier (e.g. by the pytest fixture ``flopcalc_analyze``). It returns the
report. A failure raises ``AssertionError`` whose message is a plain-text per-layer table: the expected and
the actual numbers, and for every layer with a formula the formula and the formula with its numbers
substituted, so that the model or the expectation can be fixed from the test log alone.

Counts are the report's: MACs and FLOPs of a layer with a formula are the formula's, other layers are measured
(see :data:`flopcalc.report.CONVENTION`). ``non_trainable_params`` is Keras' figure: frozen parameters plus
floating-point buffers such as BatchNorm's running statistics.

>>> from torch import nn
>>> report = assert_counts(nn.Conv2d(3, 64, 11, stride=4, padding=2), (1, 3, 224, 224), params=3 * 11 * 11 * 64 + 64)
>>> report.totals.macs == 64 * 55 * 55 * 3 * 11 * 11
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from flopcalc.analyze import analyze
from flopcalc.failure_messages import (
    budget_message,
    counts_message,
    layer_expectations,
    layer_failures,
    layers_message,
)
from flopcalc.report import Report

LAYER_COUNTS = ("params", "macs", "other_ops", "flops")
"""The counts a per-layer expectation (``assert_counts(..., layers=...)``) may give."""


def assert_counts(
    model: nn.Module | Report,
    inputs: Any = None,
    *,
    params: int | None = None,
    macs: int | None = None,
    flops: int | None = None,
    trainable_params: int | None = None,
    non_trainable_params: int | None = None,
    layers: Mapping[str, Mapping[str, int]] | None = None,
    **options: Any,
) -> Report:
    """Assert the model's total counts, and per-layer counts: only the counts given are checked.

    ``layers`` maps a qualified module name to its expected counts, e.g. ``{"conv1": {"macs": 118_013_952}}``
    (keys: ``params``, ``macs``, ``other_ops``, ``flops``); a failure then lists expected and got per layer.

    Raises:
        AssertionError: a count differs; the message has expected, got and the per-layer breakdown.
        TypeError: no count to check was given, or a layer expectation names an unknown count.
    """
    __tracebackhide__ = True  # pytest shows the failure message, not the frames of this module
    expected = {
        key: value
        for key, value in {
            "params": params, "macs": macs, "flops": flops, "trainable_params": trainable_params,
            "non_trainable_params": non_trainable_params,
        }.items()
        if value is not None
    }
    if not expected and not layers:
        raise TypeError(
            "assert_counts needs one of params=, macs=, flops=, trainable_params=, non_trainable_params=, layers="
        )
    for name, counts in (layers or {}).items():
        if unknown := set(counts) - set(LAYER_COUNTS):
            raise TypeError(f"layers[{name!r}] has {sorted(unknown)}; a layer's counts are {', '.join(LAYER_COUNTS)}")
    report = _report(model, inputs, options)
    got = {key: getattr(report.totals, key) for key in expected}
    wrong = [key for key in expected if got[key] != expected[key]]
    layer_rows = layer_expectations(report, layers or {})
    if wrong or any(exp != got_ for *_, exp, got_ in layer_rows):
        raise AssertionError(counts_message(report, expected, got, wrong, layer_rows))
    return report


def assert_layers_match(
    model: nn.Module | Report, inputs: Any = None, *, allow_measured_only: bool = True, **options: Any
) -> Report:
    """Assert that every layer's formula equals what its forward pass executed, and that no op went uncounted.

    A layer fails when its formula and measurement differ in params, buffers, MACs, any op kind or output
    shape; when an op without a counting rule ran inside it; and, with ``allow_measured_only=False``, when it
    did arithmetic of its own without any formula (a module type flopcalc has no formula for).
    """
    __tracebackhide__ = True
    report = _report(model, inputs, options)
    failures = layer_failures(report, allow_measured_only)
    if failures:
        raise AssertionError(layers_message(report, failures))
    return report


def assert_within_budget(
    model: nn.Module | Report,
    inputs: Any = None,
    *,
    max_params: int | None = None,
    max_macs: int | None = None,
    max_flops: int | None = None,
    **options: Any,
) -> Report:
    """Assert the model's totals are at most the given budgets (each optional, at least one required).

    A MAC or FLOP budget also fails when ops without a counting rule ran, because the totals would then be a
    lower bound and could pass a model that is over budget.
    """
    __tracebackhide__ = True
    budget = {
        key: value
        for key, value in {"params": max_params, "macs": max_macs, "flops": max_flops}.items()
        if value is not None
    }
    if not budget:
        raise TypeError("assert_within_budget needs one of max_params=, max_macs=, max_flops=")
    report = _report(model, inputs, options)
    got = {key: getattr(report.totals, key) for key in budget}
    over = [key for key in budget if got[key] > budget[key]]
    incomplete = bool(report.uncounted) and bool({"macs", "flops"} & budget.keys())
    if over or incomplete:
        raise AssertionError(budget_message(report, budget, got, over, incomplete))
    return report


def _report(model: nn.Module | Report, inputs: Any, options: Mapping[str, Any]) -> Report:
    if isinstance(model, Report):
        if inputs is not None or options:
            raise TypeError("pass either a Report, or a model with its inputs and analyze() options, not both")
        return model
    return analyze(model, inputs, **options)
