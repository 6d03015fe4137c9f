"""Test helpers: a layer's formula next to an independent measurement of the same call, and the command run in
process or in a fresh interpreter."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flopcalc.formula import Evaluation
from flopcalc.measure import Count, measure
from flopcalc.registry import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
HEAVY_MODULES = ("typer", "sympy", "rich", "torch", "torchvision", "timm", "matplotlib")


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


Inputs = Callable[[str], tuple[Any, ...]]
"""Builds a module's inputs on a device (``"cpu"`` or ``"meta"``)."""


def assert_agrees(module: nn.Module, make_inputs: Inputs) -> Evaluation:
    """Formula == measured (MACs and ops by kind) on cpu and on meta; params and output shape match torch."""
    module.eval()
    for device in ("cpu", "meta"):
        evaluation, measured, out = formula_and_measured(copy.deepcopy(module).to(device), *make_inputs(device))
        assert evaluation.macs == measured.macs, device
        assert evaluation.ops == measured.ops, device
        assert evaluation.output_shape == tuple(out.shape), device
    assert evaluation.params == param_count(module)
    return evaluation


def run_cli(*args: object) -> Any:
    """The ``flopcalc`` command run in process (typer's CliRunner), stdout and stderr kept apart."""
    from typer.testing import CliRunner

    from flopcalc.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line_error(result: Any, *fragments: str) -> None:
    """Exit 2, nothing on stdout, and one ``Error: ...`` line on stderr holding every fragment; no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@dataclass(frozen=True)
class FreshRun:
    """What ``flopcalc ARGV`` did in a fresh interpreter: its exit status, its stdout, and which of
    :data:`HEAVY_MODULES` it imported."""

    status: object
    stdout: str
    loaded: list[str]


def run_fresh(
    argv: list[str], *, entry: str = "flopcalc.cli_start", package_root: Path = ROOT, cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> FreshRun:
    """Run ``flopcalc ARGV`` through ``entry``'s ``main`` in a new interpreter, with ``package_root`` (the folder
    holding the ``flopcalc`` package) first on the path; start-up imports are only visible there."""
    probe = textwrap.dedent(f"""
        import json, sys
        from {entry} import main
        status = 0
        try:
            main({argv!r})
        except SystemExit as exc:
            status = exc.code
        loaded = [name for name in {HEAVY_MODULES!r} if name in sys.modules]
        print(json.dumps({{"status": status, "loaded": loaded}}), file=sys.stderr)
    """)
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd or package_root, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(package_root), **(env or {})},
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return FreshRun(report["status"], done.stdout, report["loaded"])
