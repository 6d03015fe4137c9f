"""flopcalc's dispatch modes leave ``torch._dynamo`` unimported until something could compile, and then keep
``torch.compile`` out of their ``__torch_dispatch__`` as torch's own wrapper does."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import torch

from flopcalc.dispatch import DispatchMode
from flopcalc.measure import measure
from support import ROOT


def test_cpu_analysis_does_not_import_dynamo() -> None:
    probe = textwrap.dedent("""
        import sys, torch, flopcalc
        report = flopcalc.analyze(torch.nn.Linear(4, 5), (2, 4), device="cpu", memory=True)
        print(report.totals.macs, "torch._dynamo" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=True)
    assert done.stdout.split() == ["40", "False"]  # 2*4*5 = 40 MACs, and no torch._dynamo


def test_counts_the_same_once_dynamo_is_imported() -> None:
    import torch._dynamo  # noqa: F401  (from here on every op goes through torch._dynamo.disable)

    x, y = torch.ones(2, 3), torch.ones(3, 5)
    assert measure(lambda: x @ y).count.macs == 30  # 2*3*5 = 30


def test_torch_does_not_wrap_a_subclass_again() -> None:
    class Passthrough(DispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            return func(*args, **(kwargs or {}))

    assert Passthrough._should_skip_dynamo() is False
    ours = Passthrough.__dict__["__torch_dispatch__"]
    assert not hasattr(ours.__wrapped__, "__wrapped__")  # our wrapper around the method itself, not torch's
    with Passthrough():
        assert torch.add(torch.ones(2), 1).tolist() == [2.0, 2.0]
