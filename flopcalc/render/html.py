"""HTML: the layer table with its Status legend, the ``--at`` points, then the totals and notes; mismatching
rows and ``(self)`` rows carry a class. A standalone page (:func:`to_html`) or a fragment for a notebook
(:func:`html_fragment`, behind ``Report._repr_html_``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from flopcalc.render import cells, totals
from flopcalc.report import Report

STYLE = (
    "body{font-family:sans-serif}table{border-collapse:collapse;margin-bottom:1em}"
    "th,td{padding:2px 8px;border-bottom:1px solid #ddd}td.num{text-align:right;font-variant-numeric:tabular-nums}"
    "tr.mismatch{color:#b00;font-weight:bold}tr.parent,tr.total{font-weight:bold}tr.self td{font-style:italic}"
)


def _td(column: cells.Column, html: str) -> str:
    return f'<td class="num">{html}</td>' if column.numeric else f"<td>{html}</td>"


def _layer_table(report: Report, depth: int | None, formulas: bool) -> list[str]:
    cols = cells.columns(formulas, report)
    visible = cells.layer_cells(report, depth, formulas)
    top = min((row.depth for row, _ in visible), default=0)
    shown = {row.index for row, _ in visible}
    lines = ["<table>", "<tr>" + "".join(f"<th>{escape(column.header)}</th>" for column in cols) + "</tr>"]
    for row, values in visible:
        classes = [row.status.value]
        if row.is_own:
            classes.append("self")
        elif any(child in shown for child in row.children):
            classes.append("parent")
        indent = {"name": "&nbsp;&nbsp;" * (row.depth - top)}
        tds = "".join(_td(column, indent.get(column.key, "") + escape(values[column.key])) for column in cols)
        lines.append(f'<tr class="{" ".join(classes)}">{tds}</tr>')
    total = cells.total_cells(report, formulas)
    tds = "".join(_td(column, escape(total[column.key])) for column in cols)
    lines += [f'<tfoot><tr class="total">{tds}</tr></tfoot>', "</table>", '<table class="legend">']
    for term, meaning in cells.legend(cells.visible_rows(report, depth)):
        lines.append(f"<tr><td><code>{escape(term)}</code></td><td>{escape(meaning)}</td></tr>")
    return [*lines, "</table>"]


def _evaluations(evaluated: Sequence[Mapping[str, Any]]) -> list[str]:
    if not evaluated:
        return []
    columns = cells.EVALUATION_COLUMNS
    lines = ["<table>", "<caption>Evaluated at sizes</caption>",
             "<tr>" + "".join(f"<th>{escape(column.header)}</th>" for column in columns) + "</tr>"]
    for values in cells.evaluation_cells(evaluated):
        lines.append("<tr>" + "".join(_td(column, escape(values[column.key])) for column in columns) + "</tr>")
    return [*lines, "</table>"]


def html_fragment(
    report: Report, depth: int | None = None, formulas: bool = False, evaluated: Sequence[Mapping[str, Any]] = ()
) -> str:
    """The report's tables as an HTML fragment (a ``<div>`` with its own style), for embedding."""
    lines = [f"<div><style>{STYLE}</style>", f"<h3>{escape(cells.title(report))}</h3>"]
    if cells.visible_rows(report, depth):
        lines += _layer_table(report, depth, formulas)
    lines += _evaluations(evaluated)
    lines.append("<table>")
    for label, value in totals.totals_items(report) + totals.notes(report):
        lines.append(f"<tr><th>{escape(label)}</th><td>{escape(value)}</td></tr>")
    lines += ["</table>", "</div>"]
    return "\n".join(lines) + "\n"


def to_html(
    report: Report, depth: int | None = None, formulas: bool = False, evaluated: Sequence[Mapping[str, Any]] = ()
) -> str:
    """The report as a standalone HTML page; arguments as for the console table (``depth=0``: totals only),
    ``evaluated`` the ``--at`` points."""
    title = escape(cells.title(report))
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head><body>\n'
        + html_fragment(report, depth, formulas, evaluated)
        + "</body></html>\n"
    )
