"""The model command's typer-free parser (``flopcalc.cli_fast``) reads a command line exactly as typer does, or
declines it: its option table is typer's, and on every command line below (and hundreds of generated ones) it
either gives the options typer gives or declines (``None``, and typer parses the line), never options where typer
refuses the line."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flopcalc.cli
from flopcalc.cli_fast import _FLAGS, _SHORT, _VALUED, COMMANDS, EXAMPLES, model_options
from flopcalc.cli_model import ModelOptions
from support import ROOT


def _typer_options(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> ModelOptions | None:
    """What typer hands the model command for ``argv``; ``None`` when it refuses the line or runs no model."""
    seen: list[ModelOptions] = []
    with monkeypatch.context() as patch:
        patch.setattr(flopcalc.cli, "run_model_command", seen.append)
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            with pytest.raises(SystemExit) as exit_status:
                flopcalc.cli.main(argv)
    return seen[0] if seen and exit_status.value.code == 0 else None


def _agree(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> ModelOptions | None:
    fast = model_options(argv)
    typer_parsed = _typer_options(argv, monkeypatch)
    if fast is not None:
        assert fast == typer_parsed, argv
    return fast


def test_the_option_table_is_typers() -> None:
    import typer.main

    command = typer.main.get_command(flopcalc.cli.app).commands["analyze"]  # type: ignore[attr-defined]
    valued, flags, short = {}, set(), {}
    for param in command.params:
        if param.param_type_name == "argument":
            assert param.name == "model"
            continue
        long = [name for name in param.opts if name.startswith("--")]
        assert len(long) == 1, param.opts
        if param.is_flag:
            assert param.secondary_opts == [f"--no-{long[0][2:]}"] and param.default is False
            flags.add(long[0][2:])
            continue
        valued[long[0]] = (param.name, param.multiple)
        short.update({name: long[0] for name in param.opts if not name.startswith("--")})
    assert {name: (field, repeatable) for name, (field, _, repeatable) in _VALUED.items()} == valued
    assert set(_FLAGS) == flags
    assert set(EXAMPLES) == set(valued)  # each valued option has an example for "--input needs a value"
    assert _SHORT == short
    assert set(COMMANDS) == set(typer.main.get_command(flopcalc.cli.app).commands)  # type: ignore[attr-defined]


PARSED = [
    ["resnet50", "--input", "3x224x224"],
    ["analyze", "resnet50", "-i", "3x224x224", "--batch", "N"],
    ["--input", "3x224x224", "resnet50"],
    ["bench/plain_cnn.py:plain_cnn", "--input=3x64x64", "--depth", "0", "--formulas", "--no-check", "--strict"],
    ["m", "-i", "128:int64", "-i", "mask=128:int64", "--arg", "num_classes=11", "--arg", "x='a'"],
    ["m", "-i", "3xHxW", "--at", "224x224", "--at", "320x320", "--hint", "H=224"],
    ["m", "-i", "3x8x8", "-f", "json", "-o", "out.json", "--device", "cpu", "--convention", "all"],
    ["m", "-i", "3x8x8", "--backward", "--memory", "--optimizer", "adamw", "--hardware", "h100-sxm",
     "--plot", "r.png", "--time", "cpu", "--repeats", "3", "--dtype", "bfloat16"],
    ["hf:gpt2", "--seq", "128", "--decode", "--context", "P", "--generate", "4", "--attention", "eager"],
    ["m", "--input", "-"],
    ["", "--input", "3x8x8"],
    ["m", "--depth", "0", "--repeats", "1", "--format", "markdown"],
    ["resnet50"],  # parsed; the command itself then says --input is missing
]

DECLINED = [
    [], ["--help"], ["resnet50", "--help"], ["resnet50", "-h"], ["--version"], ["formula", "conv2d"],
    ["ratio", "group"], ["compare", "a", "b", "-i", "3x8x8"],
    ["a", "b", "--input", "3x8x8"], ["m", "--input"], ["m", "--depth", "-1"], ["m", "--depth", "x"],
    ["m", "--depth", "007"], ["m", "--repeats", "0"], ["m", "--device", "gpu"], ["m", "--format", "TABLE"],
    ["m", "--batch", "2", "--batch", "3"], ["m", "--check", "--check"], ["m", "--check=true"],
    ["m", "-i3x8x8"], ["m", "-i=3x8x8"], ["m", "--", "-i"], ["m", "--inp", "3x8x8"], ["m", "--no-input", "x"],
    ["m", "--output", "-"], ["m", "--output="], ["m", "--batch", "-1"], ["m", "-x"], ["m", "--time", "tpu"],
]


@pytest.mark.parametrize("argv", PARSED, ids=" ".join)
def test_plain_command_lines_parse_as_typer_parses_them(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert _agree(argv, monkeypatch) is not None


def test_defaults_are_typers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert model_options(["m"]) == ModelOptions("m") == _typer_options(["m"], monkeypatch)


@pytest.mark.parametrize("argv", DECLINED, ids=lambda argv: " ".join(argv) or "(none)")
def test_everything_else_goes_to_typer(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert _agree(argv, monkeypatch) is None


_WORDS = st.sampled_from([
    "m", "analyze", "resnet50", "3x8x8", "0", "1", "2", "-1", "007", "N", "json", "table", "cpu", "meta", "cuda",
    "adam", "sgd", "out.txt", "-", "", "x=1", "224x224", "H=224", "all", "--", "-i", "-f", "-o", "-h", "-x",
    "formula", "--help", "--version", "--check=1", "--depth=0", "--input=3x8x8", "--format=csv",
    *(f"--{flag}" for flag in _FLAGS), *(f"--no-{flag}" for flag in _FLAGS), *_VALUED,
])


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(_WORDS, max_size=7))
def test_generated_command_lines(argv: list[str]) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        _agree(argv, monkeypatch)


def test_the_fast_path_imports_no_typer() -> None:
    probe = textwrap.dedent("""
        import contextlib, io, sys
        from flopcalc.cli_start import main
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                main(["bench/plain_cnn.py:plain_cnn", "--input", "3x64x64", "--depth", "0", "--strict"])
            except SystemExit as exit:
                status = exit.code
        print(status, sorted(name for name in ("typer", "click", "pydantic") if name in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.stdout.split() == ["0", "[]"], done.stderr
