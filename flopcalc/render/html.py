"""A standalone HTML page: the layer table, then the totals and notes; mismatching rows carry a class."""

from __future__ import annotations

from html import escape

from flopcalc.render import cells
from flopcalc.report import Report

STYLE = (
    "body{font-family:sans-serif}table{border-collapse:collapse;margin-bottom:1em}"
    "th,td{padding:2px 8px;border-bottom:1px solid #ddd}td.num{text-align:right;font-variant-numeric:tabular-nums}"
    "tr.mismatch{color:#b00;font-weight:bold}tr.parent,tr.total{font-weight:bold}"
)


def _td(column: cells.Column, html: str) -> str:
    return f'<td class="num">{html}</td>' if column.numeric else f"<td>{html}</td>"


def to_html(report: Report, depth: int | None = None, formulas: bool = False) -> str:
    """The report as an HTML document; arguments as for the console table."""
    cols = cells.columns(formulas, report)
    visible = cells.layer_cells(report, depth, formulas)
    top = min((row.depth for row, _ in visible), default=0)
    shown = {row.index for row, _ in visible}
    title = escape(cells.title(report))
    lines = [
        "<!DOCTYPE html>",
        f'<html><head><meta charset="utf-8"><title>{title}</title><style>{STYLE}</style></head><body>',
        f"<h3>{title}</h3>",
        "<table>",
        "<tr>" + "".join(f"<th>{escape(column.header)}</th>" for column in cols) + "</tr>",
    ]
    for row, values in visible:
        classes = [row.status.value]
        if any(child in shown for child in row.children):
            classes.append("parent")
        indent = {"name": "&nbsp;&nbsp;" * (row.depth - top)}
        tds = "".join(_td(column, indent.get(column.key, "") + escape(values[column.key])) for column in cols)
        lines.append(f'<tr class="{" ".join(classes)}">{tds}</tr>')
    total = cells.total_cells(report, formulas)
    tds = "".join(_td(column, escape(total[column.key])) for column in cols)
    lines.append(f'<tfoot><tr class="total">{tds}</tr></tfoot>')
    lines.append("</table>")
    lines.append("<table>")
    for label, value in cells.totals_items(report) + cells.notes(report):
        lines.append(f"<tr><th>{escape(label)}</th><td>{escape(value)}</td></tr>")
    lines += ["</table>", "</body></html>"]
    return "\n".join(lines) + "\n"
