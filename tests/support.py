"""Test helpers: a layer's formula next to an independent measurement of the same call."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from flopcalc.formula import Evaluation
from flopcalc.measure import Count, measure
from flopcalc.registry import REGISTRY


def formula_and_measured(module: nn.Module, *args: Any, **kwargs: Any) -> tuple[Evaluation, Count, Any]:
    """Evaluate the registered formula for ``module(*args, **kwargs)`` and measure the same call (eval, no grad).

    Returns the formula's evaluation, the measured count and the module's output.
    """
    module.eval()
    binder = REGISTRY.binder_for(module)
    assert binder is not None, f"no formula registered for {type(module).__name__}"
    evaluation = binder(module, args, kwargs).evaluate()
    outputs: list[Any] = []
    with torch.no_grad():
        tally = measure(lambda: outputs.append(module(*args, **kwargs)))
    assert not tally.uncounted, f"uncounted ops: {dict(tally.uncounted)}"
    return evaluation, tally.count, outputs[0]


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def buffer_count(module: nn.Module) -> int:
    return sum(b.numel() for b in module.buffers())
