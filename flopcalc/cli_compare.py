"""``flopcalc compare``: several models analysed side by side, as a table and an optional scatter plot."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flopcalc.cli_dynamo import meta_kernels_without_dynamo
from flopcalc.cli_model import Device, one_line_errors
from flopcalc.cli_parse import model_inputs, parse_arguments, read_accuracy, symbols_of
from flopcalc.cli_show import Format, check_output, echo, show_comparison
from flopcalc.errors import FlopcalcError, InputError

if TYPE_CHECKING:
    from flopcalc.inputs import ModelInputs
    from flopcalc.report import Report


class Axis(StrEnum):
    PARAMS = "params"
    MACS = "macs"
    FLOPS = "flops"
    PARAM_MEMORY = "param_memory"
    ACCURACY = "accuracy"


def run_compare(
    models: Sequence[str], inputs: Sequence[str], batch: int, arguments: Sequence[str] | None, device: Device,
    accuracy: Path | None, plot: Path | None, x: Axis, y: Axis | None, output_format: Format, output: Path | None,
) -> None:
    """Check the options, analyse every model, print the table and draw the plot."""
    from flopcalc.render.compare import ComparisonEntry, check_plot_path, plot_comparison

    with one_line_errors():
        request_inputs = model_inputs(inputs, str(batch))
        check_output(output)
        if symbols_of(request_inputs.shapes):
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
        reports = _analyze_all(models, request_inputs, device, parse_arguments(arguments))
        entries = [
            ComparisonEntry(name, report, accuracies.get(name)) for name, report in zip(models, reports, strict=True)
        ]
        show_comparison(entries, output_format, output)
        if plot:
            plot_comparison(entries, plot, x.value, y.value if y else None)
            echo(f"wrote {plot}", err=True)


def _analyze_all(
    models: Sequence[str], inputs: ModelInputs, device: Device, arguments: dict[str, Any]
) -> list[Report]:
    """Analyse each model in turn, with a progress bar on stderr when it is a terminal (elsewhere rich would
    leave a blank line before the output or an error)."""
    from rich.console import Console
    from rich.progress import Progress

    from flopcalc.analyze import analyze
    from flopcalc.models import load_model

    reports = []
    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("analysing", total=len(models))
        for name in models:
            progress.update(task, description=f"analysing {name}")
            try:
                model = load_model(name, device.value, arguments)
                with meta_kernels_without_dynamo():
                    reports.append(analyze(model, inputs, device=device.value, name=name))
            except FlopcalcError as exc:  # name the model among several
                raise FlopcalcError(f"{name}: {exc}") from exc
            progress.advance(task)
    return reports
