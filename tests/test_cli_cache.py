"""The fixed commands' cached output (issue 13, target 4): every spelling of a cached command prints what the
live command prints, the entry point answers without importing typer, sympy or torch, and anything the cache
does not cover, or a cache whose sources changed, goes to the live command. (That the cache is current is
tests/test_golden.py::test_cli_cache, which ``--update-golden`` turns into rewriting it.)
"""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import pytest

from flopcalc import cli_start
from flopcalc.cli import main as live_main
from support import run_fresh

ROOT = Path(__file__).resolve().parent.parent


def live(argv: list[str]) -> tuple[object, str, str]:
    """``flopcalc ARGV`` through typer in this process: exit status, stdout, stderr."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            live_main(argv)
        except SystemExit as exc:
            status = exc.code
    return status, stdout.getvalue(), stderr.getvalue()


@pytest.mark.parametrize("argv", [
    [], ["--help"], ["-h"], ["--version"], ["analyze", "-h"], ["compare", "--help"], ["formula", "--help"],
    ["ratio", "-h"], ["formula"], ["formula", "conv2d"], ["formula", "linear", "--format", "latex"],
    ["formula", "-f", "latex", "layer_norm"], ["formula", "--format=text", "max_pool2d"],
    ["ratio", "depthwise-separable"], ["ratio", "--params", "group"],
])
def test_every_spelling_of_a_cached_command_prints_what_typer_prints(argv, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")  # help at any width >= 80 is laid out at 78 columns
    status, stdout, stderr = live(argv)
    assert status in (0, None) and stderr == ""
    assert cli_start.cached_output(argv) == stdout


@pytest.mark.parametrize("argv", [
    ["formula", "conv2d", "C_in=3"], ["formula", "no_such_layer"], ["formula", "-f", "pdf", "conv2d"],
    ["formula", "--format", "latex"], ["ratio", "group", "--no-params"], ["ratio"], ["resnet50", "--help"],
    ["alexnet", "--input", "3x224x224"], ["--version", "--help"], ["formula", "conv2d", "linear"],
])
def test_what_the_cache_does_not_cover_goes_to_typer(argv):
    assert cli_start.cached_output(argv) is None


def test_help_on_a_narrow_terminal_goes_to_typer(monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")  # click wraps at 58 columns there
    status, stdout, _ = live(["--help"])
    assert status == 0 and max(len(line) for line in stdout.splitlines()) <= 58
    assert cli_start.cached_output(["--help"]) is None
    assert cli_start.cached_output(["ratio", "group"]) is not None  # not laid out by click


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["formula", "conv2d"], ["ratio", "group"]])
def test_cached_commands_import_neither_typer_nor_sympy(argv):
    result = run_fresh(argv, env={"COLUMNS": "100"})
    assert result.status == 0 and result.loaded == [], result
    assert result.stdout == cli_start.cached_output(argv)


def test_an_edited_formula_is_printed_live_until_the_cache_is_rewritten(tmp_path):
    shutil.copytree(ROOT / "flopcalc", tmp_path / "flopcalc", ignore=shutil.ignore_patterns("__pycache__"))
    conv = tmp_path / "flopcalc" / "layers" / "conv.py"
    text = conv.read_text(encoding="utf-8")
    old = '"Pointwise (1×1) 2-d convolution (K_h = K_w = 1)"'
    assert old in text
    conv.write_text(text.replace(old, '"Pointwise convolution, edited"'), encoding="utf-8")
    result = run_fresh(["formula", "pointwise_conv2d"], package_root=tmp_path, env={"COLUMNS": "100"})
    assert result.status == 0 and "sympy" in result.loaded, result
    assert result.stdout.startswith("pointwise_conv2d: Pointwise convolution, edited\n")
