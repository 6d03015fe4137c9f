"""Error branches of the command line: ``--at``, ``--hint``, ``compare``, the timm loader, an option given without
its value and a size that is no number each fail with one line on stderr and exit status 2, naming what is wrong
and what would work."""

from __future__ import annotations

import sys

import pytest

from flopcalc import cli_start
from flopcalc.cli_fast import EXAMPLES, model_options
from support import assert_one_line_error, run_cli


def error_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one line ``flopcalc ARGV`` prints on stderr, through the command's entry point (the fast parser,
    then typer), which must exit 2 with nothing on stdout."""
    with pytest.raises(SystemExit) as exited:
        cli_start.main(argv)
    out, err = capsys.readouterr()
    assert exited.value.code == 2 and out == "" and err.endswith("\n") and err.count("\n") == 1, (out, err)
    return err.rstrip("\n")


@pytest.mark.parametrize("option", sorted(EXAMPLES))
def test_an_option_without_its_value_names_it_with_an_example(option, capsys):
    line = error_line(["alexnet", "--input", "3x8x8", option], capsys)
    assert line == f"Error: {option} needs a value, e.g. {option} {EXAMPLES[option]}"
    assert model_options(["alexnet", option, EXAMPLES[option]]) is not None  # the example is one it takes


@pytest.mark.parametrize(("argv", "line"), [
    (["alexnet", "-i"], "Error: -i needs a value, e.g. -i 3x224x224"),
    (["analyze", "alexnet", "-i", "3x8x8", "-o"], "Error: -o needs a value, e.g. -o report.txt"),
    (["formula", "conv2d", "-f"], "Error: -f needs a value, e.g. -f latex"),
    (["formula", "conv2d", "--format"], "Error: --format needs a value, e.g. --format latex"),
    (["compare", "alexnet", "--input"], "Error: --input needs a value, e.g. --input 3x224x224"),
    (["compare", "alexnet", "-i", "3x8x8", "--accuracy"],
     "Error: --accuracy needs a value, e.g. --accuracy accuracy.csv"),
    (["compare", "alexnet", "-i", "3x8x8", "--y"], "Error: --y needs a value, e.g. --y accuracy"),
])
def test_short_options_and_other_commands_name_the_option_too(argv, line, capsys):
    assert error_line(argv, capsys) == line


@pytest.mark.parametrize(("argv", "line"), [
    (["alexnet", "--input", "3x8x8", "--batch", "abc"],
     "Error: --batch abc: not a whole number; e.g. --batch 8 (or a capitalised name for a closed form, --batch N)"),
    (["alexnet", "--input", "3x8x8", "--batch", "0"], "Error: --batch 0: must be at least 1; e.g. --batch 8"),
    (["alexnet", "--input", "3x8x8", "--depth", "x"], "Error: --depth x: not a whole number; e.g. --depth 1"),
    (["alexnet", "--input", "3x8x8", "--depth=-1"], "Error: --depth -1: must be at least 0; e.g. --depth 1"),
    (["alexnet", "--input", "3x8x8", "--repeats", "2.5"],
     "Error: --repeats 2.5: not a whole number; e.g. --repeats 10"),
    (["compare", "alexnet", "--input", "3x8x8", "--batch", "0"],
     "Error: --batch 0: must be at least 1; e.g. --batch 8"),
])
def test_a_size_that_is_no_number_has_its_own_message(argv, line, capsys):
    assert error_line(argv, capsys) == line


@pytest.mark.parametrize(("args", "fragments"), [
    (["--input", "3x32x32", "--at", "32x32"], ["--at and --hint need a named size", "--input 3xHxW"]),
    (["--input", "3x32x32", "--hint", "H=64"], ["--at and --hint need a named size"]),
    (["--input", "3xHxW", "--at", "64"], ["malformed --at point '64'", "2 positive sizes", "HxW", "--at 224x224"]),
    (["--input", "3xHxW", "--at", "64x0"], ["malformed --at point '64x0'"]),
    (["--input", "3xHxW", "--hint", "H=big"], ["malformed value 'H=big'", "SYMBOL=INTEGER"]),
], ids=["at-concrete", "hint-concrete", "at-too-few", "at-zero", "hint-not-a-number"])
def test_at_and_hint_errors(args: list[str], fragments: list[str]) -> None:
    assert_one_line_error(run_cli("resnet18", *args), *fragments)


def test_compare_accuracy_that_is_not_a_number(tmp_path) -> None:
    accuracy = tmp_path / "accuracy.csv"
    accuracy.write_text("model,accuracy\nalexnet,high\n")
    result = run_cli("compare", "alexnet", "squeezenet1_0", "--input", "3x64x64", "--accuracy", accuracy)
    assert_one_line_error(result, f"{accuracy}:2: accuracy 'high' is not a number")


def test_compare_unknown_model() -> None:
    assert_one_line_error(run_cli("compare", "alexnet", "resnt18", "--input", "3x64x64"), "unknown model 'resnt18'",
                          "resnet18")


def test_unknown_timm_model() -> None:
    pytest.importorskip("timm")
    assert_one_line_error(run_cli("timm:resnet5O", "--input", "3x64x64"), "unknown timm model 'resnet5O'", "resnet50")


def test_timm_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)
    assert_one_line_error(run_cli("timm:resnet50", "--input", "3x64x64"), "timm:resnet50 needs timm", "pip install timm")
