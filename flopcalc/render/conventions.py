"""Views of :mod:`flopcalc.conventions` results: one convention with its differences and blind spots, or every
convention side by side (``--convention all``), for the terminal and as Markdown."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.text import Text

from flopcalc.conventions import CONVENTIONS, ConventionResult
from flopcalc.render import cells
from flopcalc.render.fit import FitColumn, FitRow, FitTable
from flopcalc.render.markdown import escape
from flopcalc.render.units import fmt_scaled
from flopcalc.report import Report

SIDE_BY_SIDE = ("Convention", "Tool", "Prints", "Unit", "× flopcalc", "Why it differs (in its unit)")


def _ratio(result: ConventionResult) -> str:
    return f"{result.value / result.baseline:.4f}" if result.baseline else "–"


def figures(result: ConventionResult) -> tuple[ConventionResult, ...]:
    """The headline figure and any second one the tool prints (FLOPs next to MACs)."""
    return (result, *result.also)


def side_by_side_rows(results: Sequence[ConventionResult]) -> list[tuple[str, ...]]:
    """One row per printed figure: name, tool, value, unit, ratio to flopcalc's count in that unit, differences
    (one per line)."""
    return [
        (figure.name, figure.tool, f"{figure.value:,}", figure.unit, _ratio(figure),
         "\n".join(f"{d.rule} {d.amount:+,}" for d in figure.differences) or "same count")
        for result in results for figure in figures(result)
    ]


def _headline(result: ConventionResult) -> list[tuple[str, str]]:
    items = [(f"{result.tool} prints", fmt_scaled(figure.value, figure.unit)) for figure in figures(result)]
    items += [("flopcalc", fmt_scaled(figure.baseline, figure.unit)
               + (" (2 × its MACs)" if figure.unit == "FLOPs" else "")) for figure in figures(result)]
    return items


def convention_to_rich(report: Report, result: ConventionResult) -> RenderableType:
    """The number one tool would print, the differences from flopcalc's by rule, its blind spots and rules."""
    title = Text(f"{cells.title(report)}: counted as {result.tool} counts", style="bold")
    parts: list[RenderableType] = [title]
    parts += [Text.assemble((label, "bold"), "  ", value) for label, value in _headline(result)]
    for figure in figures(result):
        if not figure.differences:
            parts.append(Text(f"{figure.unit}: same count as flopcalc."))
            continue
        rows = [FitRow((Text(d.rule), Text(f"{d.amount:+,}"))) for d in figure.differences]
        parts.append(FitTable([FitColumn("Rule"), FitColumn(figure.unit, right=True)], rows,
                              title=Text(f"{figure.unit}: differences from flopcalc, by rule")))
    if result.blind_spots:
        parts.append(Text("Blind spots for this model", style="bold"))
        parts.extend(Text(f"  - {spot}") for spot in result.blind_spots)
    if result.notes:
        parts.append(Text("Read from this model", style="bold"))
        parts.extend(Text(f"  - {note}") for note in result.notes)
    parts.append(Text(f"Its rules ({CONVENTIONS[result.name].source})", style="bold"))
    parts.extend(Text(f"  - {rule}") for rule in CONVENTIONS[result.name].rules)
    return Group(*parts)


def _left_out(results: Sequence[ConventionResult]) -> str:
    """A note naming the language-model formulas that did not apply, if any."""
    shown = {result.name for result in results}
    missing = [c.name for c in CONVENTIONS.values() if c.language_model and c.name not in shown]
    return f"{', '.join(missing)}: left out, they are for language models (token ids as the first input)" \
        if missing else ""


def conventions_to_rich(report: Report, results: Sequence[ConventionResult]) -> RenderableType:
    """``--convention all``: one row per printed figure of each convention."""
    columns = [
        FitColumn(header, right=header in ("Prints", "× flopcalc"), fold=header == "Convention",
                  drop={"Tool": 0, "Unit": None}.get(header))
        for header in SIDE_BY_SIDE
    ]
    rows = [FitRow(tuple(Text(cell) for cell in row)) for row in side_by_side_rows(results)]
    table = FitTable(columns, rows, title=Text(f"{cells.title(report)}: every convention"),
                     how_to_see_all=", or --format markdown or json")
    note = _left_out(results)
    return Group(table, Text(note)) if note else table


def convention_to_markdown(report: Report, result: ConventionResult) -> str:
    lines = [f"### {escape(cells.title(report))}: counted as {escape(result.tool)} counts", ""]
    lines += [f"- **{escape(label)}**: {escape(value)}" for label, value in _headline(result)]
    for figure in figures(result):
        lines += ["", f"| Rule | {figure.unit} |", "|---|---:|"]
        lines += [f"| {escape(d.rule)} | {d.amount:+,} |" for d in figure.differences] or ["| same count | 0 |"]
    if result.blind_spots:
        lines += ["", "Blind spots:", *(f"- {escape(spot)}" for spot in result.blind_spots)]
    if result.notes:
        lines += ["", "Read from this model:", *(f"- {escape(note)}" for note in result.notes)]
    lines += ["", f"Rules ({escape(CONVENTIONS[result.name].source)}):"]
    lines += [f"- {escape(rule)}" for rule in CONVENTIONS[result.name].rules]
    return "\n".join(lines) + "\n"


def conventions_to_markdown(report: Report, results: Sequence[ConventionResult]) -> str:
    lines = [f"### {escape(cells.title(report))}: every convention", ""]
    lines.append("| " + " | ".join(SIDE_BY_SIDE) + " |")
    lines.append("|---|---|---:|---|---:|---|")
    for row in side_by_side_rows(results):
        cells_ = [f"`{row[0]}`", *(escape(cell).replace("\n", "; ") for cell in row[1:])]
        lines.append("| " + " | ".join(cells_) + " |")
    note = _left_out(results)
    return "\n".join([*lines, *(["", escape(note)] if note else [])]) + "\n"
