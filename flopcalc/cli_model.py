"""``flopcalc MODEL``'s options and what the command does with them, without typer.

:class:`ModelOptions` holds the ``analyze`` command's options as parsed, whether by typer (:mod:`flopcalc.cli`)
or, for the common command lines, by :mod:`flopcalc.cli_fast`; :func:`run_model_command` checks them, calls the
library (:mod:`flopcalc.cli_run`) and prints the result. Nothing here imports typer, so the model command can start
without it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from flopcalc.cli_parse import (
    SHAPE_HELP, model_inputs, parse_arguments, parse_batch, parse_hint, parse_points, parse_size, symbols_of,
)
from flopcalc.cli_show import (
    Format, check_output, echo, show_convention, show_llm, show_report, show_roofline_plot,
)
from flopcalc.errors import FlopcalcError, InputError

if TYPE_CHECKING:
    from flopcalc.cli_run import Views
    from flopcalc.report import Report


class Device(StrEnum):
    META = "meta"
    CPU = "cpu"


class TimeDevice(StrEnum):
    CPU = "cpu"
    CUDA = "cuda"


class Optimizer(StrEnum):
    ADAM = "adam"
    ADAMW = "adamw"
    SGD = "sgd"


@dataclass(frozen=True)
class ModelOptions:
    """The ``analyze`` command's arguments, typed as the command declares them (defaults: the command's)."""

    model: str
    inputs: list[str] | None = None
    batch: str = "1"
    arguments: list[str] | None = None
    depth: int | None = None
    formulas: bool = False
    check: bool = False
    strict: bool = False
    device: Device | None = None
    output_format: Format = Format.TABLE
    output: Path | None = None
    at: list[str] | None = None
    hint: list[str] | None = None
    convention: str | None = None
    seq: str | None = None
    decode: bool = False
    context: str | None = None
    generate: str | None = None
    dtype: str | None = None
    attention: str = "sdpa"
    backward: bool = False
    memory: bool = False
    optimizer: Optimizer | None = None
    hardware: str | None = None
    plot: Path | None = None
    time: TimeDevice | None = None
    repeats: int = 10


def exit_after(run: Callable[[], Any]) -> NoReturn:
    """Run a command and exit with its status (0 unless it returns an int). An interrupt, or an error flopcalc
    did not foresee, is one line on stderr too (``FLOPCALC_TRACEBACK=1`` shows its traceback)."""
    try:
        status = run()
    except KeyboardInterrupt:
        echo("Error: interrupted", err=True)
        raise SystemExit(130) from None
    except Exception as exc:
        if os.environ.get("FLOPCALC_TRACEBACK"):
            raise
        message = " ".join(str(exc).split())
        echo(f"Error: flopcalc failed unexpectedly: {type(exc).__name__}: {message} (please report this; "
             "FLOPCALC_TRACEBACK=1 shows the traceback)", err=True)
        raise SystemExit(2) from None
    raise SystemExit(status if isinstance(status, int) else 0)


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn a domain error into one line on stderr and exit status 2, never a traceback."""
    from flopcalc.formula import FormulaError

    try:
        yield
    except (FlopcalcError, FormulaError, OSError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        echo(f"Error: {message}", err=True)
        raise SystemExit(2) from None


def run_model_command(o: ModelOptions) -> None:
    """Analyse ``o.model`` as the options ask and print the report; exit 1 for a failed ``--check``/``--strict``."""
    from flopcalc import cli_run

    views = cli_run.Views(o.backward, o.memory, o.optimizer.value if o.optimizer else None, o.hardware,
                          o.time.value if o.time else None, o.repeats, o.dtype)
    if o.model.startswith("hf:"):
        _run_hf(o, views)
        return
    with one_line_errors():
        llm_options = {"--seq": o.seq, "--decode": o.decode or None, "--context": o.context, "--generate": o.generate}
        given = [name for name, value in llm_options.items() if value is not None]
        if given:
            raise InputError(f"{', '.join(given)}: only for hf:PATH models")
        if not o.inputs:
            raise InputError(f"Missing option '--input' ({SHAPE_HELP})")
        check_output(o.output)
        request_inputs = model_inputs(o.inputs, o.batch)
        symbols = symbols_of(request_inputs.shapes)
        if o.convention is not None:
            _check_convention_request(o.convention, o.output_format, symbols)
        if (o.at or o.hint) and not symbols:
            raise InputError("--at and --hint need a named size in --input or --batch, e.g. --input 3xHxW")
        points = parse_points(",".join(o.at), symbols) if o.at else []
        _check_plot(o.plot, o.hardware)
        request = cli_run.Request(
            o.model, request_inputs, o.device.value if o.device else None, parse_arguments(o.arguments),
            dict(parse_hint(text) for text in o.hint or ()), points, views,
        )
        outcome = cli_run.run(request)
        for note in outcome.notes:
            echo(note, err=True)
        report, evaluated = outcome.report, outcome.evaluated
        if o.convention is not None:
            show_convention(report, o.convention, o.output_format, o.depth, o.output)
        else:
            show_report(report, evaluated, o.output_format, o.output, o.depth, o.formulas)
        if o.plot is not None:
            show_roofline_plot(report, o.plot)
    _exit_on_check(report, o.check, o.strict)


def _run_hf(o: ModelOptions, views: Views) -> None:
    """``hf:PATH``: the model built from its config, its prefill, decode step or generation counted."""
    from flopcalc import cli_run

    with one_line_errors():
        check_output(o.output)
        _check_plot(o.plot, o.hardware)
        if o.inputs or o.at or o.arguments:
            raise InputError("hf: models take --seq N and/or --decode --context P instead of --input, --at and --arg")
        if o.decode != (o.context is not None):
            raise InputError("--decode and --context go together: --decode --context 4096 (or a name, P)")
        if o.convention is not None:
            if o.decode or o.generate or o.seq is None:
                raise InputError("--convention with hf: applies to a prefill: give --seq N without --decode")
            sizes = [parse_size(o.seq, "--seq"), parse_batch(o.batch)]
            _check_convention_request(o.convention, o.output_format, [d for d in sizes if isinstance(d, str)])
        summary = cli_run.run_hf(cli_run.LLMRequest(
            o.model.removeprefix("hf:"), o.seq, o.batch, o.context, o.generate, o.dtype, o.attention,
            dict(parse_hint(text) for text in o.hint or ()), views,
        ))
        if o.convention is not None:
            show_convention(summary.main.report, o.convention, o.output_format, o.depth, o.output)
        else:
            show_llm(summary, o.output_format, o.output, o.depth, o.formulas)
        if o.plot is not None:
            show_roofline_plot(summary.main.report, o.plot)
    _exit_on_check(summary.main.report, o.check, o.strict)


def _check_plot(plot: Path | None, hardware: str | None) -> None:
    """``--plot`` draws a roofline: it needs ``--hardware`` and a file type matplotlib writes."""
    if plot is None:
        return
    from flopcalc.render.compare import check_plot_path

    if hardware is None:
        raise InputError("--plot needs --hardware: the roofline of a device, e.g. --hardware h100-sxm")
    check_plot_path(plot)


def _exit_on_check(report: Report, check: bool, strict: bool) -> None:
    """``--check`` and ``--strict``: exit status 1 on a mismatch or an uncounted op."""
    if check and (report.mismatches or report.backward_mismatches):
        names = ", ".join(row.name or report.model for row in (*report.mismatches, *report.backward_mismatches))
        echo(f"check failed: formula and measurement disagree in {names}", err=True)
        raise SystemExit(1)
    if strict and report.uncounted:
        listed = ", ".join(f"{op} ×{n}" for op, n in sorted(report.uncounted.items()))
        echo(f"strict: ops without a counting rule ran: {listed}", err=True)
        raise SystemExit(1)


def _check_convention_request(name: str, output_format: Format, symbols: Sequence[str]) -> None:
    """Reject, before the analysis, what ``--convention`` cannot do."""
    from flopcalc import conventions

    if name != "all":
        conventions.get(name)
    if symbols:
        raise InputError("--convention needs concrete sizes (e.g. --input 3x224x224); other counters count one "
                         "input at a time")
    if output_format not in (Format.TABLE, Format.MARKDOWN, Format.JSON):
        raise InputError("--convention goes with --format table, markdown or json")
