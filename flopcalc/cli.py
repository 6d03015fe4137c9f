"""The ``flopcalc`` command's typer commands: parse the arguments and hand them on (the model command to
:mod:`flopcalc.cli_model`, ``compare`` to :mod:`flopcalc.cli_compare`); the plain model command lines are parsed
without typer (:mod:`flopcalc.cli_fast`).

``flopcalc MODEL --input 3x224x224`` analyses a model (the ``analyze`` command is the default, so its name may
be left out); ``flopcalc formula``, ``flopcalc ratio`` and ``flopcalc compare`` are the other commands. Reports
go to stdout and diagnostics to stderr. A domain error (unknown model, malformed shape, failing forward pass,
missing file or factory) is one line on stderr and exit status 2; ``--check`` and ``--strict`` exit 1.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperGroup

from flopcalc import __version__
from flopcalc.cli_compare import Axis, run_compare
from flopcalc.cli_fast import _SHORT, COMMANDS, EXAMPLES
from flopcalc.cli_model import (
    Device, ModelOptions, Optimizer, TimeDevice, exit_after, one_line_errors, run_model_command,
)
from flopcalc.cli_parse import SHAPE_HELP, parse_assignments
from flopcalc.cli_show import Format
from flopcalc.errors import InputError

# Imports are deferred to the commands that need them: ``--help``, ``--version``, ``formula`` and ``ratio`` never
# import torch (or rich, or torchvision), so they start at once.


class FormulaFormat(StrEnum):
    TEXT = "text"
    LATEX = "latex"


class RatioKind(StrEnum):
    DEPTHWISE_SEPARABLE = "depthwise-separable"
    GROUP = "group"


class _UntypedArgument(TyperArgument):
    """An argument shown in the help by its metavar and help alone, without typer's type tag (``MODEL <str>``)."""

    def display_type_rich(self, ctx: Any) -> None:
        return None


class _DefaultsToAnalyze(TyperGroup):
    """Dispatch ``flopcalc MODEL ...`` to the ``analyze`` command when the first word names no other command
    and is no option of the group itself; ``flopcalc`` alone prints the help."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args:
            typer.echo(ctx.get_help())
            ctx.exit(0)
        if args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["analyze", *args]
        return super().parse_args(ctx, args)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        for param in getattr(command, "params", ()):
            if type(param) is TyperArgument:
                param.__class__ = _UntypedArgument
        return command


app = typer.Typer(
    cls=_DefaultsToAnalyze,
    add_completion=False,
    invoke_without_command=True,
    rich_markup_mode=None,  # click's plain help: no type column (``<bool>``), and rich is not imported for it
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Parameters, MACs and FLOPs of PyTorch models, per layer, with the formula behind each number.\n\n"
    "flopcalc MODEL --input SHAPE [options] analyses a model (the analyze command, named or not).",
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"flopcalc {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Parameters, MACs and FLOPs of PyTorch models, per layer, with the formula behind each number."""


MODEL_HELP = "torchvision name, timm:NAME, package.module:factory or path/to/file.py:factory"
COMPARE_SHAPE_HELP = ("dims without the batch joined by x, e.g. 3x224x224; optional dtype suffix, e.g. 128:int64; "
                      "NAME=SHAPE for a keyword input")
ANALYZE_MODEL_HELP = MODEL_HELP + ", or hf:PATH (a Hugging Face config.json, its directory or a cached model id)"
Batch = Annotated[
    str, typer.Option(metavar="N", help="batch size prepended to every input shape: a number, or a name (N)")
]
Arguments = Annotated[
    list[str] | None,
    typer.Option("--arg", metavar="NAME=VALUE",
                 help="constructor argument, a Python literal, e.g. num_classes=11 (repeatable)"),
]
DeviceOption = Annotated[
    Device | None,
    typer.Option(metavar="meta|cpu", help="meta: shapes only, nothing computed (the default; a forward that needs "
                 "real values is then counted on cpu, with a note); cpu: run for real"),
]


@app.command("analyze", short_help="per-layer params, MACs and FLOPs of a model (the default)")
def analyze_command(
    model: Annotated[str, typer.Argument(metavar="MODEL", help=ANALYZE_MODEL_HELP)],
    inputs: Annotated[list[str] | None, typer.Option("--input", "-i", metavar="SHAPE", help=SHAPE_HELP)] = None,
    batch: Batch = "1",
    arguments: Arguments = None,
    depth: Annotated[int | None, typer.Option(
        min=0, metavar="N", help="fold the hierarchy below this depth; 0 shows the totals alone")] = None,
    formulas: Annotated[bool, typer.Option(help="show each layer's formulas with numbers substituted")] = False,
    check: Annotated[bool, typer.Option(help="exit 1 if any formula disagrees with the measurement")] = False,
    strict: Annotated[bool, typer.Option(help="exit 1 if any op without a counting rule ran")] = False,
    device: DeviceOption = None,
    output_format: Annotated[Format, typer.Option("--format", "-f", metavar="table|markdown|latex|csv|json|html")]
    = Format.TABLE,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
    ] = None,
    at: Annotated[
        list[str] | None,
        typer.Option(metavar="SIZES", help="evaluate a closed form at sizes, e.g. 224x224,320x320 (repeatable)"),
    ] = None,
    hint: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME=SIZE", help="size torch assumes for a named dim while tracing, e.g. H=224"),
    ] = None,
    convention: Annotated[str | None, typer.Option(
        metavar="NAME|all", help="print what another counter would (thop, fvcore, torch, ...; all: every one; "
        "an unknown name lists them)")] = None,
    seq: Annotated[str | None, typer.Option(
        metavar="S", help="hf: prompt length for prefill, e.g. 2048, or a name (S)")] = None,
    decode: Annotated[bool, typer.Option(help="hf: count one decode step against a KV cache of --context")] = False,
    context: Annotated[str | None, typer.Option(
        metavar="P", help="hf: cached tokens for --decode, e.g. 4096, or a name (P)")] = None,
    generate: Annotated[str | None, typer.Option(
        metavar="T", help="hf: decode steps after a --seq prompt, e.g. 128, or a name (T)")] = None,
    dtype: Annotated[str | None, typer.Option(
        metavar="DTYPE", help="parameter dtype, e.g. bfloat16: hf: also the KV cache; a --input model and its "
        "floating-point inputs are cast (float32, bfloat16, float16)")] = None,
    attention: Annotated[str, typer.Option(metavar="sdpa|eager", help="hf: attention implementation")] = "sdpa",
    backward: Annotated[bool, typer.Option(
        help="also count the backward pass per layer: grad-input, grad-weight, checkpointing recompute")] = False,
    memory: Annotated[bool, typer.Option(
        help="output bytes per layer, the activation peak, bytes kept for --backward")] = False,
    optimizer: Annotated[Optimizer | None, typer.Option(
        metavar="adam|adamw|sgd",
        help="training state bytes with this optimizer (sgd: with momentum; implies --memory)")] = None,
    hardware: Annotated[str | None, typer.Option(
        metavar="NAME", help="bytes moved and roofline time on h100-sxm, h200-sxm, a100-sxm-80gb, ... (all: "
        "flopcalc.hardware), cpu (measured here) or peak=FLOP/s,bandwidth=B/s")] = None,
    plot: Annotated[Path | None, typer.Option(
        metavar="FILE", help="with --hardware: draw the layers on the roofline to FILE.png or .svg")] = None,
    time: Annotated[TimeDevice | None, typer.Option(
        "--time", metavar="cpu|cuda", help="also run the model for real there and time each layer")] = None,
    repeats: Annotated[int, typer.Option(min=1, metavar="N", help="--time: timed runs after 2 warm-up runs")] = 10,
) -> None:
    """Per-layer table of output shape, params, MACs and other ops of MODEL, then the totals."""
    run_model_command(ModelOptions(
        model, inputs, batch, arguments, depth, formulas, check, strict, device, output_format, output, at, hint,
        convention, seq, decode, context, generate, dtype, attention, backward, memory, optimizer, hardware, plot,
        time, repeats,
    ))


@app.command("formula", short_help="a layer family's formulas, with numbers substituted")
def formula_command(
    family: Annotated[str | None, typer.Argument(metavar="NAME", help="formula name; leave out to list them")]
    = None,
    values: Annotated[
        list[str] | None, typer.Argument(metavar="SYMBOL=VALUE", help="e.g. C_in=3 K_h=11")
    ] = None,
    output_format: Annotated[FormulaFormat, typer.Option("--format", "-f", metavar="text|latex")]
    = FormulaFormat.TEXT,
) -> None:
    """A layer family's formulas, symbolically and with the given numbers substituted; symbols left out take
    the layer's defaults (stride 1, padding 0, ...), listed under the sheet."""
    import flopcalc.layers  # noqa: F401  (registers the formulas)
    from flopcalc.registry import REGISTRY
    from flopcalc.render.formulas import formula_list, formula_sheet

    with one_line_errors():
        if family is None:
            typer.echo(formula_list(REGISTRY.formulas), nl=False)
            return
        if family not in REGISTRY.formulas:
            close = difflib.get_close_matches(family, list(REGISTRY.formulas), n=5, cutoff=0.5)
            suggestion = f"did you mean {', '.join(close)}? " if close else ""
            known = ", ".join(sorted(REGISTRY.formulas))
            raise InputError(f"unknown formula {family!r}; {suggestion}known formulas: {known}")
        formula = REGISTRY.formula(family)
        assigned = parse_assignments(values or ())
        typer.echo(formula_sheet(formula, assigned, latex=output_format is FormulaFormat.LATEX), nl=False)


@app.command("ratio", short_help="cost ratio of a convolution variant, simplified by sympy")
def ratio_command(
    kind: Annotated[RatioKind, typer.Argument(metavar="depthwise-separable|group",
                                              help="which convolution to compare with a standard one")],
    params: Annotated[bool, typer.Option("--params", help="the ratio of parameters instead of MACs")] = False,
) -> None:
    """The cost ratio of a convolution variant to a standard convolution, simplified by sympy."""
    from flopcalc.render.formulas import ratio_sheet

    typer.echo(ratio_sheet(kind.value, params), nl=False)


@app.command("compare", short_help="several models side by side, with an optional plot")
def compare_command(
    models: Annotated[list[str], typer.Argument(metavar="MODEL...", help=MODEL_HELP)],
    inputs: Annotated[list[str], typer.Option("--input", "-i", metavar="SHAPE", help=COMPARE_SHAPE_HELP)],
    batch: Annotated[int, typer.Option(min=1, metavar="N", help="batch size prepended to every input shape")] = 1,
    arguments: Arguments = None,
    device: Annotated[Device, typer.Option(metavar="meta|cpu", help="meta: shapes only; cpu: run for real")]
    = Device.META,
    accuracy: Annotated[Path | None, typer.Option(
        metavar="FILE", help="CSV with columns model,accuracy, joined by name; every model needs a row")] = None,
    plot: Annotated[
        Path | None, typer.Option(metavar="FILE", help="draw a scatter plot to FILE.png, .svg or .pdf")
    ] = None,
    x: Annotated[Axis, typer.Option("--x", help="the plot's x axis")] = Axis.PARAMS,
    y: Annotated[
        Axis | None, typer.Option("--y", help="the plot's y axis [default: accuracy with --accuracy, else macs]")
    ] = None,
    output_format: Annotated[Format, typer.Option("--format", "-f", metavar="table|markdown|latex|csv|json|html")]
    = Format.TABLE,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
    ] = None,
) -> None:
    """Several models side by side: params, MACs, FLOPs and parameter memory, and a plot of any two."""
    run_compare(models, inputs, batch, arguments, device, accuracy, plot, x, y, output_format, output)


_OTHER_EXAMPLES = {("compare", "--accuracy"): "accuracy.csv", ("compare", "--x"): "macs",
                   ("compare", "--y"): "accuracy", ("formula", "--format"): "latex"}
"""Example values of the options of ``compare`` and ``formula`` that the model command's table
(:data:`flopcalc.cli_fast.EXAMPLES`) lacks or gives another value."""
_WHOLE = re.compile(r"-?[0-9]+")


def _missing_value(exc: Exception, words: Sequence[str]) -> str | None:
    """``--input needs a value, e.g. --input 3x224x224`` for click's "Option '--input' requires an argument."
    (an option given last, without its value, in the command line ``words``); ``None`` for any other usage
    error."""
    option = getattr(exc, "option_name", None)
    if not isinstance(option, str) or "requires an argument" not in exc.format_message():  # type: ignore[attr-defined]
        return None
    command = words[0] if words and words[0] in COMMANDS else "analyze"  # click's parser error has no context
    long = _SHORT.get(option, option)
    example = _OTHER_EXAMPLES.get((command, long)) or EXAMPLES.get(long)
    return f"{option} needs a value, e.g. {option} {example}" if example else None


_WHOLE_NUMBERS = {"--depth": ("1", 0), "--repeats": ("10", 1), "--batch": ("8", 1)}
"""The options typer reads as integers (the model command's ``--depth`` and ``--repeats``, ``compare --batch``):
an example and the least value each takes."""


def _not_a_whole_number(exc: Exception, words: Sequence[str]) -> str | None:
    """``--depth x: not a whole number; e.g. --depth 1`` for typer's refusal of an integer option's value (its
    own message names neither the value nor one that would work); ``None`` for any other usage error."""
    opts = getattr(getattr(exc, "param", None), "opts", ())
    option = next((name for name in opts if name in _WHOLE_NUMBERS), None)
    if option is None:
        return None
    values = [after for word, after in zip(words, words[1:]) if word == option]
    values += [word.partition("=")[2] for word in words if word.startswith(f"{option}=")]
    if not values:
        return None
    example, least = _WHOLE_NUMBERS[option]
    value = values[-1]  # click keeps the last value of an option given twice
    if _WHOLE.fullmatch(value.strip()):
        return f"{option} {value}: must be at least {least}; e.g. {option} {example}"
    return f"{option} {value}: not a whole number; e.g. {option} {example}"


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point. Usage errors (a missing --input, an unknown option or choice, an option
    without its value) are one line on stderr with exit status 2, like every other error, instead of typer's
    multi-line box; an error flopcalc did not foresee is one line too (``FLOPCALC_TRACEBACK=1`` shows its
    traceback)."""

    words = list(sys.argv[1:] if argv is None else argv)

    def invoke() -> Any:
        try:
            return app(args=words, prog_name="flopcalc", standalone_mode=False)
        except Exception as exc:
            # typer vendors click privately; its usage errors carry exit_code 2 and format_message().
            if getattr(exc, "exit_code", None) == 2 and hasattr(exc, "format_message"):
                missing = _missing_value(exc, words) or _not_a_whole_number(exc, words)
                if missing is not None:
                    typer.echo(f"Error: {missing}", err=True)
                    raise SystemExit(2) from None
                context = getattr(exc, "ctx", None)
                hint = f" (see {context.command_path} --help)" if context else ""
                message = " ".join(exc.format_message().split()).replace("Value error, ", "")  # typer's enum check
                typer.echo(f"Error: {message}{hint}", err=True)
                raise SystemExit(2) from None
            raise

    exit_after(invoke)


if __name__ == "__main__":  # python -m flopcalc.cli
    main()
