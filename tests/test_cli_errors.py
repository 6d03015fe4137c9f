"""Error branches of the command line: ``--at``, ``--hint``, ``compare`` and the timm loader each fail with one
line on stderr and exit status 2, naming what is wrong and what would work."""

from __future__ import annotations

import sys

import pytest

from support import assert_one_line_error, run_cli


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
