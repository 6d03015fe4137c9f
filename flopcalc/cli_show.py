"""Where the command line's results go: a report, a convention view, an LLM summary or a comparison, printed in
colour on a terminal, as plain text to a pipe, or written to ``--output`` in the format asked for. Renderers are
imported only for the format in use, so the commands that print nothing of this kind start without rich.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import RenderableType

    from flopcalc.llm import LLMSummary
    from flopcalc.render.compare import ComparisonEntry
    from flopcalc.report import Report


class Format(StrEnum):
    TABLE = "table"
    MARKDOWN = "markdown"
    LATEX = "latex"
    CSV = "csv"
    JSON = "json"
    HTML = "html"


Points = Sequence[Mapping[str, Any]]


def echo(text: str, err: bool = False, nl: bool = True) -> None:
    """``text`` on stdout (or stderr), flushed, as ``typer.echo`` writes plain text, without importing typer."""
    stream = sys.stderr if err else sys.stdout
    stream.write(f"{text}\n" if nl else text)
    stream.flush()


def render(report: Report, output_format: Format, depth: int | None, formulas: bool, evaluated: Points = ()) -> str:
    """``report`` as text in ``output_format``, with the ``--at`` points (the renderer is imported only for the
    format asked)."""
    from flopcalc.render import csv, html, json, latex, markdown
    from flopcalc.render.console import to_plain_text

    renderers: dict[Format, Callable[..., str]] = {
        Format.TABLE: to_plain_text, Format.MARKDOWN: markdown.to_markdown, Format.LATEX: latex.to_latex,
        Format.CSV: csv.to_csv, Format.JSON: json.to_json, Format.HTML: html.to_html,
    }
    return renderers[output_format](report, depth, formulas, evaluated)


def check_output(output: Path | None) -> None:
    """Refuse, before any analysis, an ``--output`` that cannot be written."""
    import os

    from flopcalc.errors import InputError

    if output is None:
        return
    folder = output.parent if str(output.parent) else Path(".")
    if output.is_dir():
        raise InputError(f"--output {output} is a folder; give a file name, e.g. --output {output / 'report.txt'}")
    if not folder.is_dir():
        raise InputError(f"--output {output}: the folder {folder} does not exist; create it or write elsewhere")
    if not os.access(folder, os.W_OK) or (output.exists() and not os.access(output, os.W_OK)):
        raise InputError(f"--output {output} is not writable; choose a file in a folder you can write to")


def write(text: str, output: Path | None) -> None:
    """``text`` to stdout, or to ``output`` with a note on stderr."""
    if output is None:
        echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        echo(f"wrote {output}", err=True)


def show_renderable(renderable: RenderableType, plain: Callable[[], str]) -> None:
    """``renderable`` in colour on a terminal; ``plain()`` (no colour, as wide as the table needs) when stdout
    is redirected, where rich would otherwise wrap the table at 80 columns."""
    from rich.console import Console

    console = Console()
    if console.is_terminal:
        console.print(renderable)
    else:
        echo(plain(), nl=False)


def show_report(
    report: Report, evaluated: Points, output_format: Format, output: Path | None, depth: int | None, formulas: bool
) -> None:
    """Print or write the report in ``output_format``, with the ``--at`` points."""
    if output is None and output_format is Format.TABLE:
        from flopcalc.render.console import to_plain_text, to_rich

        show_renderable(to_rich(report, depth, formulas, evaluated),
                        lambda: to_plain_text(report, depth, formulas, evaluated=evaluated))
    else:
        write(render(report, output_format, depth, formulas, evaluated), output)


def show_llm(summary: LLMSummary, output_format: Format, output: Path | None, depth: int | None, formulas: bool) -> None:
    """An ``hf:`` model's main-phase report followed by the LLM summary block (prefill, decode, KV cache)."""
    from flopcalc.render import llm as render_llm

    report = summary.main.report
    if output_format is Format.JSON:
        write(render_llm.to_json(summary, depth), output)
    elif output is None and output_format is Format.TABLE:
        from flopcalc.render.console import to_plain_text, to_rich

        show_renderable(to_rich(report, depth, formulas), lambda: to_plain_text(report, depth, formulas))
        echo("\n" + render_llm.block(summary, "table"), nl=False)
    else:
        text = render(report, output_format, depth, formulas)
        write(render_llm.with_block(text, summary, output_format.value), output)


def show_convention(report: Report, name: str, output_format: Format, depth: int | None, output: Path | None) -> None:
    """The number one counter (or every one, for ``all``) would print for this model and input."""
    from flopcalc import conventions
    from flopcalc.render.console import plain_text
    from flopcalc.render.conventions import (
        convention_to_markdown, convention_to_rich, conventions_to_markdown, conventions_to_rich,
    )
    from flopcalc.render.json import to_json

    results = conventions.apply_all(report) if name == "all" else [conventions.apply(report, name)]
    if output_format is Format.JSON:
        write(to_json(report, depth, as_convention=results if name == "all" else results[0]), output)
        return
    if output_format is Format.MARKDOWN:
        text = conventions_to_markdown(report, results) if name == "all" else convention_to_markdown(report, results[0])
        write(text, output)
        return
    view = conventions_to_rich(report, results) if name == "all" else convention_to_rich(report, results[0])
    if output is None:
        show_renderable(view, lambda: plain_text(view))
    else:
        write(plain_text(view), output)


def show_comparison(entries: Sequence[ComparisonEntry], output_format: Format, output: Path | None) -> None:
    """``flopcalc compare``'s table in ``output_format``."""
    from flopcalc.render import compare_export

    if output_format is Format.TABLE:
        from flopcalc.render.console import comparison_to_rich, plain_text

        table = comparison_to_rich(entries)
        if output is None:
            show_renderable(table, lambda: plain_text(table))
        else:
            write(plain_text(table), output)
        return
    renderers: dict[Format, Callable[[Sequence[ComparisonEntry]], str]] = {
        Format.MARKDOWN: compare_export.comparison_markdown, Format.LATEX: compare_export.comparison_latex,
        Format.CSV: compare_export.comparison_csv, Format.JSON: compare_export.comparison_json,
        Format.HTML: compare_export.comparison_html,
    }
    write(renderers[output_format](entries), output)


def show_roofline_plot(report: Report, path: Path) -> None:
    """``--plot``: the layers of a ``--hardware`` report on the device's roofline, written to ``path``."""
    from flopcalc.render.roofline_plot import plot_roofline

    plot_roofline(report, path)
    echo(f"wrote {path}", err=True)
