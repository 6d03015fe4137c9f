"""Every failure of the command is one line on stderr and exit status 2, and success is never faked (issue 10 §4).

In process through typer's CliRunner for the messages, plus real subprocesses for what only a process shows:
the exit status of a model that calls ``sys.exit(0)``, and that no traceback reaches the terminal.
The small net: Linear(4, 2) on 1×4 -> params 4·2 + 2 = 10, MACs 4·2 = 8.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support import assert_one_line_error, run_cli

ROOT = Path(__file__).resolve().parent.parent

MODELS = '''
import sys
import torch
from torch import nn


def small():
    return nn.Sequential(nn.Linear(4, 2))


class ExitInForward(nn.Module):
    def forward(self, x):
        sys.exit(0)


def exit_in_factory():
    raise SystemExit(0)


def scripted():
    return torch.jit.script(nn.Sequential(nn.Linear(4, 2)))


class TrainWithoutMode(nn.Module):
    """A train() override that takes no mode argument: flopcalc must not call it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def train(self):
        raise AssertionError("train() was called")

    def forward(self, x):
        return self.fc(x)


class ReadsValues(nn.Module):
    """nonzero: its output size depends on the values, which a shape-only pass does not have."""

    def forward(self, x):
        return x[x.nonzero(as_tuple=True)]


def factory_with_a_bug():
    raise ValueError("boom from factory")


class FixedLength(nn.Module):
    """Asserts the sequence length is 5: no closed form in L, a concrete count at L = 5 instead."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        assert x.shape[1] == 5, "length must be 5"
        return self.fc(x)
'''


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("failures") / "failing_models.py"
    path.write_text(textwrap.dedent(MODELS))
    return path


@pytest.mark.parametrize(("args", "fragment"), [
    (["--input", "3x--3x224"], "malformed input shape '3x--3x224'"),
    (["--input", "3x²x224"], "malformed input shape '3x²x224'"),
    (["--input", "3xHxW", "--at", "²x224"], "malformed --at point '²x224'"),
    (["--input", "3xHxW", "--hint", "H=--3"], "malformed value 'H=--3': expected SYMBOL=INTEGER, e.g. --hint H=224"),
    (["--input", "3xHxW", "--hint", "H=-3"], "a size must be a positive integer"),
    (["--input", "3x224x224:qint8"], "an input cannot be 'qint8'"),
    (["--input", "100000x100000x100000", "--device", "cpu"], "cannot create the input 1x100000x100000x100000"),
    (["--input", "3x8x8", "--arg", "num_classes=eleven"], "'eleven' is not a Python literal"),
], ids=["double-minus", "superscript", "at-superscript", "hint-double-minus", "hint-negative", "quantized-dtype",
        "input-too-large", "arg-not-literal"])
def test_malformed_values_are_one_line(args, fragment):
    assert_one_line_error(run_cli("alexnet", *args), fragment)


def test_formula_with_double_minus():
    assert_one_line_error(run_cli("formula", "conv2d", "C_in=--3"), "malformed value 'C_in=--3'")


@pytest.mark.parametrize(("values", "fragment"), [
    (["C_in=-3"], "C_in = -3, but C_in must be a positive integer"),
    (["s_h=0"], "s_h = 0, but s_h must be a positive integer"),
    (["p_h=-1"], "p_h = -1, but p_h must be an integer >= 0"),
    (["G=3", "C_in=4"], "C_in divisible by G is required, but C_in=4, G=3"),
    (["H=3", "K_h=11"], "H_out = -7 with these values, but a size must be at least 1"),  # 3 - 11 + 1 = -7
], ids=["negative-channels", "zero-stride", "negative-padding", "groups", "kernel-larger-than-input"])
def test_formula_refuses_values_no_layer_has(values, fragment):
    assert_one_line_error(run_cli("formula", "conv2d", *values), fragment)


def test_exit_in_model_file_import_is_an_error(tmp_path):
    model_file = tmp_path / "exits.py"
    model_file.write_text("import sys\nsys.exit(0)\n")
    assert_one_line_error(run_cli(f"{model_file}:net", "--input", "4"), "importing", "SystemExit: 0")


def test_exit_in_factory_and_forward_are_errors(models):
    assert_one_line_error(run_cli(f"{models}:exit_in_factory", "--input", "4"), "building", "SystemExit: 0")
    assert_one_line_error(run_cli(f"{models}:ExitInForward", "--input", "4"), "forward pass failed", "SystemExit: 0")


def test_module_import_raising_any_error(tmp_path, monkeypatch):
    (tmp_path / "raising_pkg_for_test.py").write_text("raise ValueError('broken at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert_one_line_error(run_cli("raising_pkg_for_test:net", "--input", "4"),
                          "importing raising_pkg_for_test failed: ValueError: broken at import")


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torchscript_model(models):
    assert_one_line_error(run_cli(f"{models}:scripted", "--input", "4"), "TorchScript", "before torch.jit.script")


def test_train_override_without_mode_is_not_called(models):
    result = run_cli(f"{models}:TrainWithoutMode", "--input", "4", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["totals"]["macs"] == 4 * 2


def test_accuracy_file_not_utf8_or_short_row(models, tmp_path):
    small = f"{models}:small"
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("model,accuracy\ncaf\xe9,61.5\n".encode("latin-1"))
    assert_one_line_error(run_cli("compare", small, "--input", "4", "--accuracy", latin), "is not UTF-8")
    short = tmp_path / "short.csv"
    short.write_text(f"model,accuracy\n{small}\n")
    assert_one_line_error(run_cli("compare", small, "--input", "4", "--accuracy", short), "short.csv:2", "no accuracy")


def test_at_points_evaluated_concretely_when_the_closed_form_falls_back(models):
    result = run_cli(f"{models}:FixedLength", "--input", "Lx8", "--hint", "L=5", "--at", "5", "--format", "json")
    assert result.exit_code == 0, result.output
    assert "cannot be counted in closed form" in result.stderr
    evaluated = json.loads(result.stdout)["evaluated"]
    # Linear(8, 2) on 1×5×8: 5·8·2 = 80 MACs; FLOPs 2·80 + 5·2 bias adds = 170
    assert evaluated == [{"at": {"L": 5}, "params": 18, "macs": 80, "flops": 170, "source": "concrete"}]


def _flopcalc(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real command, through the checkout's cli.py shim (so it runs this worktree's code)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_exit_zero_from_a_model_is_exit_two_in_a_real_process(models):
    for target in ("ExitInForward", "exit_in_factory"):
        done = _flopcalc(f"{models}:{target}", "--input", "4", cwd=models.parent)
        assert done.returncode == 2, (target, done.stdout, done.stderr)
        assert done.stdout == "" and "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith("Error: ")


def test_malformed_shape_in_a_real_process_has_no_traceback(tmp_path):
    done = _flopcalc("alexnet", "--input", "3x²x224", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]


def test_explicit_meta_that_needs_values_says_what_would_work(models):
    result = run_cli(f"{models}:ReadsValues", "--input", "16", "--device", "meta")
    assert_one_line_error(result, "DynamicOutputShapeException", "run it on the CPU", "--device cpu")


def test_factory_failure_suggests_arguments_only_for_a_type_error(models):
    result = run_cli(f"{models}:factory_with_a_bug", "--input", "4")
    assert_one_line_error(result, "ValueError: boom from factory")
    assert "--arg" not in result.stderr


@pytest.mark.parametrize(("output", "fragment"), [
    ("missing-folder/x.txt", "the folder"),
    (".", "is a folder"),
], ids=["no-folder", "a-folder"])
def test_unwritable_output_is_refused_before_the_analysis(models, tmp_path, output, fragment):
    result = run_cli(f"{models}:small", "--input", "4", "--output", tmp_path / output)
    assert_one_line_error(result, "--output", fragment)


def test_compare_names_the_model_that_failed():
    # alexnet's third max-pool has nothing left to pool at 32×32; resnet18 is fine there
    result = run_cli("compare", "resnet18", "alexnet", "--input", "3x32x32")
    assert_one_line_error(result, "alexnet: forward pass failed in features.12 (MaxPool2d)")


def test_empty_accuracy_file_says_it_has_no_header(tmp_path):
    empty = tmp_path / "acc.csv"
    empty.write_text("")
    result = run_cli("compare", "alexnet", "--input", "3x224x224", "--accuracy", empty)
    assert_one_line_error(result, "needs a header with columns model,accuracy; it has no header line")
