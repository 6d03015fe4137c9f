"""GitHub-flavoured Markdown: a layer table (names in code spans, numbers right-aligned) with its legend, the
``--at`` points, then totals and notes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flopcalc.render import cells, totals
from flopcalc.report import Report, Status


LEGEND_COLUMNS = (cells.Column("status", "Status"), cells.Column("meaning", "Meaning"))


def escape(text: str) -> str:
    """Make text safe inside a table cell: pipes are escaped, and emphasis characters too."""
    for char in ("\\", "|", "*", "_", "`"):
        text = text.replace(char, "\\" + char)
    return text


def _code(text: str) -> str:
    """A code span (underscores and dots stay literal); only the pipe needs escaping inside a table."""
    return "`" + text.replace("|", "\\|") + "`" if text else ""


def _table(columns: Sequence[cells.Column], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table of already escaped cells."""
    lines = ["| " + " | ".join(column.header for column in columns) + " |"]
    lines.append("|" + "|".join("---:" if column.numeric else "---" for column in columns) + "|")
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _layer_table(report: Report, depth: int | None, formulas: bool) -> list[str]:
    cols = cells.columns(formulas, report)
    rows = []
    for row, values in cells.layer_cells(report, depth, formulas):
        out = []
        for column in cols:
            text = values[column.key]
            if column.key == "name":
                text = _code(text)
            elif column.key == "status" and row.status is Status.MISMATCH:
                text = f"**{escape(text)}**"
            else:
                text = escape(text)
            out.append(text)
        rows.append(out)
    total = cells.total_cells(report, formulas)
    rows.append([f"**{escape(total[column.key])}**" if total[column.key] else "" for column in cols])
    legend = [[_code(term), escape(meaning)] for term, meaning in cells.legend(cells.visible_rows(report, depth))]
    return [*_table(cols, rows), "", *_table(LEGEND_COLUMNS, legend), ""]


def evaluations_markdown(evaluations: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ``--at`` points as a Markdown table, or nothing."""
    if not evaluations:
        return []
    columns = cells.EVALUATION_COLUMNS
    rows = [[escape(values[column.key]) for column in columns] for values in cells.evaluation_cells(evaluations)]
    return ["Evaluated at sizes:", "", *_table(columns, rows), ""]


def to_markdown(
    report: Report, depth: int | None = None, formulas: bool = False, evaluated: Sequence[Mapping[str, Any]] = ()
) -> str:
    """The report as Markdown; ``depth`` and ``formulas`` as in :func:`flopcalc.render.console.to_rich`
    (``depth=0``: totals only), ``evaluated`` the ``--at`` points."""
    lines = [f"### {escape(cells.title(report))}", ""]
    if cells.visible_rows(report, depth):
        lines += _layer_table(report, depth, formulas)
    lines += evaluations_markdown(evaluated)
    lines += [f"- **{label}**: {escape(value)}" for label, value in totals.totals_items(report)]
    lines.append("")
    lines += [f"- **{label}**: {escape(value)}" for label, value in totals.notes(report)]
    return "\n".join(lines) + "\n"
