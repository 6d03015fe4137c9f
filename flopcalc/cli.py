"""The ``flopcalc`` command: parse the arguments, call the library, pick a renderer.

``flopcalc MODEL --input 3x224x224`` analyses a model (the ``analyze`` command is the default, so its name may
be left out); ``flopcalc formula``, ``flopcalc ratio`` and ``flopcalc compare`` are the other commands. Reports
go to stdout and diagnostics to stderr. A domain error (unknown model, malformed shape, failing forward pass,
missing file or factory) is one line on stderr and exit status 2; ``--check`` and ``--strict`` exit 1.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import re
from collections.abc import Callable, Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import sympy as sp
import torch
import typer
from rich.console import Console, RenderableType
from rich.progress import Progress
from typer.core import TyperGroup

from flopcalc import conventions, hf, llm
from flopcalc.analyze import analyze, evaluate_at
from flopcalc.errors import FlopcalcError, InputError
from flopcalc.formula import FormulaError, to_text
from flopcalc.inputs import Dim, InputSpec
from flopcalc.layers.conv import depthwise_separable_ratio, group_ratio
from flopcalc.models import load_model
from flopcalc.registry import REGISTRY
from flopcalc.render.compare import ComparisonEntry, check_plot_path, plot_comparison
from flopcalc.render.compare_export import (
    comparison_csv,
    comparison_html,
    comparison_json,
    comparison_latex,
    comparison_markdown,
)
from flopcalc.render.conventions import (
    convention_to_markdown,
    convention_to_rich,
    conventions_to_markdown,
    conventions_to_rich,
)
from flopcalc.render.console import comparison_to_rich, plain_text, to_plain_text, to_rich
from flopcalc.render.csv import to_csv
from flopcalc.render.formulas import formula_sheet
from flopcalc.render.html import to_html
from flopcalc.render.json import to_json
from flopcalc.render import llm as render_llm
from flopcalc.render.latex import to_latex
from flopcalc.render.markdown import to_markdown
from flopcalc.report import Report
from flopcalc.symbolic import SymbolicTraceError


class Format(StrEnum):
    TABLE = "table"
    MARKDOWN = "markdown"
    LATEX = "latex"
    CSV = "csv"
    JSON = "json"
    HTML = "html"


class Device(StrEnum):
    META = "meta"
    CPU = "cpu"


class FormulaFormat(StrEnum):
    TEXT = "text"
    LATEX = "latex"


class RatioKind(StrEnum):
    DEPTHWISE_SEPARABLE = "depthwise-separable"
    GROUP = "group"


RENDERERS: dict[Format, Callable[..., str]] = {
    # each takes (report, depth, formulas, evaluated)
    Format.TABLE: to_plain_text,
    Format.MARKDOWN: to_markdown,
    Format.LATEX: to_latex,
    Format.CSV: to_csv,
    Format.JSON: to_json,
    Format.HTML: to_html,
}

RATIOS = {
    RatioKind.DEPTHWISE_SEPARABLE: (
        depthwise_separable_ratio,
        "depthwise-separable (K×K depthwise + 1×1 pointwise) / standard K×K convolution, M output channels",
    ),
    RatioKind.GROUP: (group_ratio, "group convolution with G groups / standard convolution"),
}

SHAPE_HELP = (
    "dims without the batch joined by x, e.g. 3x224x224, or with capitalised names for a closed form, e.g. 3xHxW; "
    "optional dtype suffix, e.g. 128:int64"
)


def parse_dim(text: str, whole: str) -> Dim:
    """One dimension: a positive integer, or a name starting with a capital letter (``H``, ``Seq``) for a
    closed form over that size."""
    text = text.strip()
    if text.isidentifier() and text[0].isupper():
        return text
    if not text.lstrip("-").isdigit():
        raise InputError(f"malformed input shape {whole!r}: expected {SHAPE_HELP}")
    if int(text) <= 0:
        raise InputError(f"input shape {whole!r} has a dimension <= 0; every dimension must be a positive integer")
    return int(text)


def parse_shape(text: str, batch: Dim = 1) -> InputSpec:
    """``"3x224x224"`` -> ``InputSpec((batch, 3, 224, 224))``; ``"128:int64"`` -> an int64 spec of ``(batch, 128)``;
    ``"3xHxW"`` names two sizes, for closed-form counts.

    Raises:
        InputError: empty, zero or negative dimensions, other characters, or an unknown dtype.
    """
    dims_text, _, dtype_name = text.strip().partition(":")
    if not dims_text:
        raise InputError(f"malformed input shape {text!r}: expected {SHAPE_HELP}")
    dims = tuple(parse_dim(part, text) for part in re.split(r"x|(?<=\d)X(?=\d)", dims_text))
    dtype = getattr(torch, dtype_name, None) if dtype_name else torch.float32
    if not isinstance(dtype, torch.dtype):
        raise InputError(f"unknown dtype {dtype_name!r} in {text!r}; use e.g. float32, float16, int64, bool")
    return InputSpec((batch, *dims), dtype)


def parse_batch(text: str) -> Dim:
    """``--batch``: a positive integer, or a symbol name (``N``) for a closed form in the batch size."""
    return parse_dim(text, f"--batch {text}")


def parse_points(text: str, symbols: Sequence[str]) -> list[dict[str, int]]:
    """``--at 224x224,320x320``: one size per symbol, in the order the symbols first appear in the inputs."""
    points = []
    for point in text.split(","):
        values = point.strip().split("x")
        if len(values) != len(symbols) or not all(v.strip().isdigit() and int(v) > 0 for v in values):
            raise InputError(
                f"malformed --at point {point!r}: give {len(symbols)} positive sizes joined by x for "
                f"{'x'.join(symbols)}, points separated by commas, e.g. --at {'x'.join(['224'] * len(symbols))}"
            )
        points.append({name: int(v) for name, v in zip(symbols, values)})
    return points


def symbols_of(specs: Sequence[InputSpec]) -> list[str]:
    """Symbol names in the inputs, in order of first appearance."""
    return list(dict.fromkeys(d for spec in specs for d in spec.shape if isinstance(d, str)))


def parse_assignment(text: str) -> tuple[str, int]:
    """``"C_in=3"`` -> ``("C_in", 3)``."""
    name, sep, value = text.partition("=")
    if not sep or not name or not value.strip().lstrip("-").isdigit():
        raise InputError(f"malformed value {text!r}: expected SYMBOL=INTEGER, e.g. C_in=3")
    return name.strip(), int(value)


def read_accuracy(path: Path) -> dict[str, float]:
    """The ``model`` and ``accuracy`` columns of a CSV file (header names compared case-insensitively)."""
    if not path.is_file():
        raise InputError(f"no such accuracy file: {path}; give a CSV with columns model,accuracy")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = {name.strip().lower(): name for name in reader.fieldnames or ()}
        if "model" not in columns or "accuracy" not in columns:
            raise InputError(f"{path} needs a header with columns model,accuracy; it has {reader.fieldnames}")
        found: dict[str, float] = {}
        for line, record in enumerate(reader, start=2):
            try:
                found[record[columns["model"]].strip()] = float(record[columns["accuracy"]])
            except (TypeError, ValueError):
                raise InputError(f"{path}:{line}: accuracy {record[columns['accuracy']]!r} is not a number") from None
    return found


class _DefaultsToAnalyze(TyperGroup):
    """Dispatch ``flopcalc MODEL ...`` to the ``analyze`` command when the first word names no other command."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] != "--help":
            args = ["analyze", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_DefaultsToAnalyze,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Parameters, MACs and FLOPs of PyTorch models, per layer, with the formula behind each number.",
)


@contextlib.contextmanager
def _one_line_errors() -> Iterator[None]:
    """Turn a domain error into one line on stderr and exit status 2, never a traceback."""
    try:
        yield
    except (FlopcalcError, FormulaError, OSError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        typer.echo(f"Error: {message}", err=True)
        raise typer.Exit(2) from None


def _write(text: str, output: Path | None) -> None:
    """``text`` to stdout, or to ``output`` with a note on stderr."""
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)


def _print(renderable: RenderableType, plain: Callable[[], str]) -> None:
    """``renderable`` in colour on a terminal; ``plain()`` (no colour, as wide as the table needs) when stdout
    is redirected, where rich would otherwise wrap the table at 80 columns."""
    console = Console()
    if console.is_terminal:
        console.print(renderable)
    else:
        typer.echo(plain(), nl=False)


MODEL_HELP = "torchvision name, timm:NAME, package.module:factory or path/to/file.py:factory"
ANALYZE_MODEL_HELP = MODEL_HELP + ", or hf:PATH (a Hugging Face config.json, its directory or a cached model id)"
Inputs = Annotated[list[str], typer.Option("--input", "-i", help=SHAPE_HELP)]
Batch = Annotated[str, typer.Option(help="batch size prepended to every input shape: a number, or a name (N)")]
DeviceOption = Annotated[Device, typer.Option(help="meta: shapes only, nothing computed; cpu: run for real")]


@app.command("analyze")
def analyze_command(
    model: Annotated[str, typer.Argument(metavar="MODEL", help=ANALYZE_MODEL_HELP)],
    inputs: Annotated[list[str] | None, typer.Option("--input", "-i", help=SHAPE_HELP)] = None,
    batch: Batch = "1",
    depth: Annotated[
        int | None, typer.Option(min=0, help="fold the hierarchy below this depth; 0 shows the totals alone")
    ] = None,
    formulas: Annotated[bool, typer.Option(help="show each layer's formulas with numbers substituted")] = False,
    check: Annotated[bool, typer.Option(help="exit 1 if any formula disagrees with the measurement")] = False,
    strict: Annotated[bool, typer.Option(help="exit 1 if any op without a counting rule ran")] = False,
    device: DeviceOption = Device.META,
    output_format: Annotated[Format, typer.Option("--format", "-f")] = Format.TABLE,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write to FILE instead of stdout")] = None,
    at: Annotated[str | None, typer.Option(help="evaluate a closed form at sizes, e.g. 224x224,320x320")] = None,
    hint: Annotated[
        list[str] | None, typer.Option(help="size torch assumes for a named dim while tracing, e.g. H=224")
    ] = None,
    convention: Annotated[str | None, typer.Option(
        help=f"print what another counter would: {', '.join(conventions.names())}")] = None,
    seq: Annotated[str | None, typer.Option(help="hf: prompt length for prefill, e.g. 2048, or a name (S)")] = None,
    decode: Annotated[bool, typer.Option(help="hf: count one decode step against a KV cache of --context")] = False,
    context: Annotated[str | None, typer.Option(help="hf: cached tokens for --decode, e.g. 4096, or P")] = None,
    generate: Annotated[str | None, typer.Option(help="hf: decode steps after a --seq prompt, e.g. 128, or T")] = None,
    dtype: Annotated[str | None, typer.Option(help="hf: parameter and KV-cache dtype, e.g. bfloat16")] = None,
    attention: Annotated[str, typer.Option(help="hf: attention implementation, sdpa or eager")] = "sdpa",
) -> None:
    """Per-layer table of output shape, params, MACs and other ops of MODEL, then the totals."""
    llm_options = {"--seq": seq, "--decode": decode or None, "--context": context, "--generate": generate,
                   "--dtype": dtype}
    if model.startswith("hf:"):
        with _one_line_errors():
            if inputs or at:
                raise InputError("hf: models take --seq N and/or --decode --context P instead of --input and --at")
            if decode != (context is not None):
                raise InputError("--decode and --context go together: --decode --context 4096 (or a name, P)")
            if convention is not None:
                if decode or generate or seq is None:
                    raise InputError("--convention with hf: applies to a prefill: give --seq N without --decode")
                sizes = [parse_dim(seq, f"--seq {seq}"), parse_batch(batch)]
                _check_convention_request(convention, output_format, [d for d in sizes if isinstance(d, str)])
            report = _analyze_hf(model.removeprefix("hf:"), seq, batch, context, generate, dtype, attention,
                                 dict(parse_assignment(text) for text in hint or ()), depth, formulas,
                                 output_format, output, convention)
        _exit_on_check(report, check, strict)
        return
    with _one_line_errors():
        given = [name for name, value in llm_options.items() if value is not None]
        if given:
            raise InputError(f"{', '.join(given)} apply to hf:PATH models only")
        if not inputs:
            raise InputError(f"Missing option '--input' ({SHAPE_HELP})")
        specs = [parse_shape(text, parse_batch(batch)) for text in inputs]
        symbols = symbols_of(specs)
        if convention is not None:
            _check_convention_request(convention, output_format, symbols)
        if (at or hint) and not symbols:
            raise InputError("--at and --hint need a named size in --input or --batch, e.g. --input 3xHxW")
        points = parse_points(at, symbols) if at else []
        hints = dict(parse_assignment(text) for text in hint or ())
        loaded = load_model(model, device)
        try:
            report = analyze(loaded, specs, device=device.value, name=model, hints=hints)
        except SymbolicTraceError as exc:
            if exc.concrete is None:
                raise
            typer.echo(f"warning: {' '.join(str(exc).split())}", err=True)
            report, points = exc.concrete, []
        evaluated = evaluate_at(loaded, specs, report, points, device.value) if points else []
        if convention is not None:
            _show_convention(report, convention, output_format, depth, output)
        elif output is None and output_format is Format.TABLE:
            _print(to_rich(report, depth, formulas, evaluated),
                   lambda: to_plain_text(report, depth, formulas, evaluated=evaluated))
        else:
            _write(RENDERERS[output_format](report, depth, formulas, evaluated), output)
    _exit_on_check(report, check, strict)


def _analyze_hf(
    source: str, seq: str | None, batch: str, context: str | None, generate: str | None, dtype: str | None,
    attention: str, hints: dict[str, int], depth: int | None, formulas: bool, output_format: Format,
    output: Path | None, convention: str | None = None,
) -> Report:
    """``flopcalc hf:PATH``: the main phase's report (decode when asked for, else prefill) and the LLM summary;
    with ``convention``, what that counter would print for the prefill instead."""
    hf_model = hf.load(source, dtype=dtype, attention=attention)
    summary = llm.summarize(
        hf_model,
        seq=parse_dim(seq, f"--seq {seq}") if seq is not None else None,
        batch=parse_batch(batch),
        context=parse_dim(context, f"--context {context}") if context is not None else None,
        generate=parse_dim(generate, f"--generate {generate}") if generate is not None else None,
        hints=hints,
    )
    report = summary.main.report
    if convention is not None:
        _show_convention(report, convention, output_format, depth, output)
    elif output_format is Format.JSON:
        _write(render_llm.to_json(summary, depth), output)
    elif output is None and output_format is Format.TABLE:
        _print(to_rich(report, depth, formulas), lambda: to_plain_text(report, depth, formulas))
        typer.echo("\n" + render_llm.block(summary, "table"), nl=False)
    else:
        text = RENDERERS[output_format](report, depth, formulas)
        _write(render_llm.with_block(text, summary, output_format.value), output)
    return report


def _exit_on_check(report: Report, check: bool, strict: bool) -> None:
    """``--check`` and ``--strict``: exit status 1 on a mismatch or an uncounted op."""
    if check and report.mismatches:
        names = ", ".join(row.name or report.model for row in report.mismatches)
        typer.echo(f"check failed: formula and measurement disagree in {names}", err=True)
        raise typer.Exit(1)
    if strict and report.uncounted:
        listed = ", ".join(f"{op} ×{n}" for op, n in sorted(report.uncounted.items()))
        typer.echo(f"strict: ops without a counting rule ran: {listed}", err=True)
        raise typer.Exit(1)


def _check_convention_request(name: str, output_format: Format, symbols: Sequence[str]) -> None:
    """Reject, before the analysis, what ``--convention`` cannot do."""
    if name != "all":
        conventions.get(name)
    if symbols:
        raise InputError("--convention needs concrete sizes (e.g. --input 3x224x224); other counters count one "
                         "input at a time")
    if output_format not in (Format.TABLE, Format.MARKDOWN, Format.JSON):
        raise InputError("--convention goes with --format table, markdown or json")


def _show_convention(report: Report, name: str, output_format: Format, depth: int | None, output: Path | None) -> None:
    """The number one counter (or every one, for ``all``) would print for this model and input."""
    results = conventions.apply_all(report) if name == "all" else [conventions.apply(report, name)]
    if output_format is Format.JSON:
        _write(to_json(report, depth, as_convention=results if name == "all" else results[0]), output)
        return
    if output_format is Format.MARKDOWN:
        text = conventions_to_markdown(report, results) if name == "all" else convention_to_markdown(report, results[0])
        _write(text, output)
        return
    view = conventions_to_rich(report, results) if name == "all" else convention_to_rich(report, results[0])
    if output is None:
        _print(view, lambda: plain_text(view))
    else:
        _write(plain_text(view), output)


@app.command("formula")
def formula_command(
    family: Annotated[str | None, typer.Argument(help="formula name; leave out to list them")] = None,
    values: Annotated[list[str] | None, typer.Argument(help="SYMBOL=VALUE, e.g. C_in=3 K_h=11")] = None,
    output_format: Annotated[FormulaFormat, typer.Option("--format", "-f")] = FormulaFormat.TEXT,
) -> None:
    """A layer family's formulas, symbolically and with the given numbers substituted."""
    with _one_line_errors():
        if family is None:
            for name, formula in sorted(REGISTRY.formulas.items()):
                typer.echo(f"{name:<24} {formula.description}")
            return
        if family not in REGISTRY.formulas:
            close = difflib.get_close_matches(family, list(REGISTRY.formulas), n=5, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            known = ", ".join(sorted(REGISTRY.formulas))
            raise InputError(f"unknown formula {family!r}; {hint}known formulas: {known}")
        formula = REGISTRY.formula(family)
        assigned = dict(parse_assignment(text) for text in values or ())
        typer.echo(formula_sheet(formula, assigned, latex=output_format is FormulaFormat.LATEX), nl=False)


@app.command("ratio")
def ratio_command(
    kind: Annotated[RatioKind, typer.Argument(help="which convolution to compare with a standard one")],
    params: Annotated[bool, typer.Option("--params", help="the ratio of parameters instead of MACs")] = False,
) -> None:
    """The cost ratio of a convolution variant to a standard convolution, simplified by sympy."""
    derive, description = RATIOS[kind]
    expr = derive("params" if params else "macs")
    typer.echo(f"{description}; {'params' if params else 'MACs'}, biases left out")
    typer.echo(f"text:  {to_text(expr)}")
    typer.echo(f"latex: {sp.latex(expr, order='grlex')}")


COMPARE_SHAPE_HELP = "dims without the batch joined by x, e.g. 3x224x224; optional dtype suffix, e.g. 128:int64"
COMPARISON_RENDERERS: dict[Format, Callable[[Sequence[ComparisonEntry]], str]] = {
    Format.MARKDOWN: comparison_markdown,
    Format.LATEX: comparison_latex,
    Format.CSV: comparison_csv,
    Format.JSON: comparison_json,
    Format.HTML: comparison_html,
}


class Axis(StrEnum):
    PARAMS = "params"
    MACS = "macs"
    FLOPS = "flops"
    PARAM_MEMORY = "param_memory"
    ACCURACY = "accuracy"


@app.command("compare")
def compare_command(
    models: Annotated[list[str], typer.Argument(metavar="MODEL...", help=MODEL_HELP)],
    inputs: Annotated[list[str], typer.Option("--input", "-i", help=COMPARE_SHAPE_HELP)],
    batch: Annotated[int, typer.Option(min=1, help="batch size prepended to every input shape")] = 1,
    device: DeviceOption = Device.META,
    accuracy: Annotated[
        Path | None, typer.Option(help="CSV with columns model,accuracy, joined by name; every model needs a row")
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="draw a scatter plot to FILE.png, .svg or .pdf")] = None,
    x: Annotated[Axis, typer.Option("--x", help="the plot's x axis")] = Axis.PARAMS,
    y: Annotated[
        Axis | None, typer.Option("--y", help="the plot's y axis [default: accuracy with --accuracy, else macs]")
    ] = None,
    output_format: Annotated[Format, typer.Option("--format", "-f")] = Format.TABLE,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write to FILE instead of stdout")] = None,
) -> None:
    """Several models side by side: params, MACs, FLOPs and parameter memory, and a plot of any two."""
    with _one_line_errors():
        specs = [parse_shape(text, batch) for text in inputs]
        if symbols_of(specs):
            raise InputError("compare needs concrete sizes (e.g. --input 3x224x224); named sizes work with "
                             "flopcalc MODEL --input 3xHxW --at ...")
        accuracies = read_accuracy(accuracy) if accuracy else {}
        missing = [name for name in models if accuracy and name not in accuracies]
        if missing:
            raise InputError(f"{accuracy} has no accuracy for {', '.join(missing)}; add a row model,accuracy for "
                             f"each (it has {', '.join(accuracies) or 'none'})")
        if Axis.ACCURACY in (x, y) and not accuracy:
            raise InputError("an accuracy axis needs --accuracy FILE (a CSV with columns model,accuracy)")
        if plot:
            check_plot_path(plot)
        entries = [
            ComparisonEntry(name, report, accuracies.get(name))
            for name, report in zip(models, _analyze_all(models, specs, device), strict=True)
        ]
        if output_format is Format.TABLE:
            table = comparison_to_rich(entries)
            if output is None:
                _print(table, lambda: plain_text(table))
            else:
                _write(plain_text(table), output)
        else:
            _write(COMPARISON_RENDERERS[output_format](entries), output)
        if plot:
            plot_comparison(entries, plot, x.value, y.value if y else None)
            typer.echo(f"wrote {plot}", err=True)


def _analyze_all(models: Sequence[str], specs: list[InputSpec], device: Device) -> list[Report]:
    """Analyse each model in turn, with a progress bar on stderr when it is a terminal (elsewhere rich would
    leave a blank line before the output or an error)."""
    reports = []
    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("analysing", total=len(models))
        for name in models:
            progress.update(task, description=f"analysing {name}")
            reports.append(analyze(load_model(name, device), specs, device=device.value, name=name))
            progress.advance(task)
    return reports


def main() -> None:
    """Console-script entry point. Usage errors (a missing --input, an unknown option or choice) are one line
    on stderr with exit status 2, like every other error, instead of typer's multi-line box."""
    try:
        status = app(prog_name="flopcalc", standalone_mode=False)
    except Exception as exc:
        # typer vendors click privately; its usage errors carry exit_code 2 and format_message().
        if getattr(exc, "exit_code", None) != 2 or not hasattr(exc, "format_message"):
            raise
        context = getattr(exc, "ctx", None)
        hint = f" (see {context.command_path} --help)" if context else ""
        typer.echo(f"Error: {' '.join(exc.format_message().split())}{hint}", err=True)
        raise SystemExit(2) from None
    raise SystemExit(status if isinstance(status, int) else 0)
