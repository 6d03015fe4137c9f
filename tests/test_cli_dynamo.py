"""The command line's pass keeps torch's meta kernels from importing ``torch._dynamo``, counts exactly as
before, restores torch afterwards (``torch.compile`` still works), and leaves a process that imported
``torch._dynamo`` itself alone. Each probe runs in a fresh process: this one has imported ``torch._dynamo``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from support import ROOT

_SETUP = """
import json, sys, torch
from torch import nn
import flopcalc
from flopcalc.cli_dynamo import meta_kernels_without_dynamo, _CACHED, _wrapped_functions

def model():
    with torch.device("meta"):
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(288, 10))

def counts(report):
    return [report.totals.macs, report.totals.other_ops, report.ok]

def cached():
    return sum(getattr(fn, _CACHED, None) is not None for fn, _ in _wrapped_functions())
"""


def _probe(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", _SETUP + textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


# conv: 8 outputs of 6x6 = 288 positions, 3*3*3 = 27 MACs each: 7,776; linear 288*10 = 2,880; 10,656 in all.
# other ops: conv bias 288; batch norm (eval) 8 adds + 8 sqrt + 8 div for rstd, then per element subtract the
# mean, times rstd, times gamma, plus beta: 24 + 4*288 = 1,176; relu 288 compares; linear bias 10:
# 288 + 1,176 + 288 + 10 = 1,762.
EXPECTED = [10_656, 1_762, True]


def test_the_pass_imports_no_dynamo_and_counts_the_same() -> None:
    found = _probe("""
        before = cached()
        with meta_kernels_without_dynamo():
            seeded = cached()
            quiet = counts(flopcalc.analyze(model(), (1, 3, 8, 8)))
            during = "torch._dynamo" in sys.modules
        after = cached()
        dynamo_after = "torch._dynamo" in sys.modules
        from flopcalc.measure import repeats
        repeats._shared.clear()  # run the kernels again: the meta passes' shared table would replay them all
        plain = counts(flopcalc.analyze(model(), (1, 3, 8, 8)))  # torch's own path: imports torch._dynamo
        print(json.dumps({"before": before, "seeded": seeded > 100, "after": after, "during": during,
                          "dynamo_after": dynamo_after, "quiet": quiet, "plain": plain,
                          "imported_by_plain": "torch._dynamo" in sys.modules}))
    """)
    assert found["quiet"] == EXPECTED
    assert found["plain"] == EXPECTED
    assert found["during"] is False and found["dynamo_after"] is False
    assert found["seeded"] is True  # hundreds of torch's wrappers get the plain call for the pass
    assert found["before"] == found["after"] == 0  # and none keeps it afterwards
    assert found["imported_by_plain"] is True  # without it, the same pass imports torch._dynamo


def test_restored_when_the_pass_raises_and_torch_compile_works_after() -> None:
    found = _probe("""
        try:
            with meta_kernels_without_dynamo():
                torch.relu(torch.empty(3, device="meta"))
                raise RuntimeError("the forward failed")
        except RuntimeError:
            pass
        left = cached()
        compiled = torch.compile(lambda x: torch.relu(x) * 2, backend="eager")
        value = compiled(torch.tensor([-1.0, 3.0])).tolist()
        refs = [fn for fn, _ in _wrapped_functions() if getattr(fn, _CACHED, None) is not None]
        print(json.dumps({"left": left, "value": value, "torch_cached": len(refs) > 0,
                          "all_torch_own": all(not fn.__dict__[_CACHED].__qualname__.startswith("_plain_call")
                                               for fn in refs)}))
    """)
    assert found["left"] == 0
    assert found["value"] == [0.0, 6.0]  # relu(-1)*2 = 0, relu(3)*2 = 6
    assert found["torch_cached"] is True and found["all_torch_own"] is True


def test_dynamo_imported_during_the_pass_takes_torchs_path() -> None:
    found = _probe("""
        def kinds():
            held = [getattr(fn, _CACHED) for fn, _ in _wrapped_functions() if getattr(fn, _CACHED, None)]
            plain = sum(call.__qualname__.startswith("_plain_call") for call in held)
            return [plain, len(held) - plain]

        with meta_kernels_without_dynamo():
            start = kinds()
            import torch._dynamo  # as a forward or a closed form might
            mid = counts(flopcalc.analyze(model(), (1, 3, 8, 8)))
            during = kinds()
        print(json.dumps({"start": start, "mid": mid, "during": during, "after": kinds()}))
    """)
    assert found["mid"] == EXPECTED
    assert found["start"][0] > 100 and found["start"][1] == 0
    assert found["during"][1] > 0  # the wrappers the pass ran now hold torch's own disable(fn)
    assert found["after"] == [0, found["during"][1]]  # kept, as torch would; every plain call removed


def test_a_process_that_imported_dynamo_is_left_alone() -> None:
    found = _probe("""
        import torch._dynamo  # as a model file that uses it would
        before = {id(fn): getattr(fn, _CACHED, None) for fn, _ in _wrapped_functions()}
        with meta_kernels_without_dynamo():
            during = {id(fn): getattr(fn, _CACHED, None) for fn, _ in _wrapped_functions()}
            report = counts(flopcalc.analyze(model(), (1, 3, 8, 8)))
        print(json.dumps({"same": before == during, "report": report}))
    """)
    assert found["same"] is True
    assert found["report"] == EXPECTED


def test_the_model_command_imports_no_dynamo() -> None:
    probe = textwrap.dedent("""
        import contextlib, io, sys
        from flopcalc.cli_start import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                main(["bench/plain_cnn.py:plain_cnn", "--input", "3x64x64", "--depth", "0"])
            except SystemExit as exit:
                status = exit.code
        print(status, "torch._dynamo" in sys.modules, "MACs" in out.getvalue())
    """)
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.stdout.split() == ["0", "False", "True"], done.stderr
