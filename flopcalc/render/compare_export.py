"""``flopcalc compare`` in every export format: Markdown, LaTeX (booktabs), CSV, JSON and HTML.

Each writes the same cells as the terminal table (:func:`flopcalc.render.compare.comparison_cells`) under the
same title, which names the input and what a MAC and a FLOP are.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from html import escape as html_escape
from typing import Any

from flopcalc.render import latex, markdown
from flopcalc.render.compare import ComparisonEntry, comparison_cells, comparison_columns, comparison_title
from flopcalc.render.html import STYLE
from flopcalc.report import CONVENTION, SCHEMA_VERSION


def comparison_markdown(entries: Sequence[ComparisonEntry]) -> str:
    columns = comparison_columns(entries)
    lines = [f"### {markdown.escape(comparison_title(entries))}", ""]
    lines.append("| " + " | ".join(column.header for column in columns) + " |")
    lines.append("|" + "|".join("---:" if column.numeric else "---" for column in columns) + "|")
    for values in comparison_cells(entries):
        cells = [f"`{values['model']}`" if column.key == "model" else markdown.escape(values[column.key])
                 for column in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_latex(entries: Sequence[ComparisonEntry]) -> str:
    columns = comparison_columns(entries)
    spec = "".join("r" if column.numeric else "l" for column in columns)
    lines = [
        "% requires \\usepackage{booktabs}",
        "\\begin{table}[htbp]",
        "\\centering",
        f"\\caption{{{latex.escape(comparison_title(entries))}}}",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(latex.escape(column.header) for column in columns) + " \\\\",
        "\\midrule",
    ]
    for values in comparison_cells(entries):
        lines.append(" & ".join(latex.escape(values[column.key]) for column in columns) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def comparison_csv(entries: Sequence[ComparisonEntry]) -> str:
    """One line per model, keyed like the columns; parameter memory in MB (1 kB = 1024 B)."""
    keys = [column.key for column in comparison_columns(entries)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(comparison_cells(entries, raw=True))
    return buffer.getvalue()


def comparison_dict(entries: Sequence[ComparisonEntry]) -> dict[str, Any]:
    """The comparison as JSON-ready data: exact integer counts per model (docs/json-schema.md); compare takes
    concrete sizes only, so every count is an int."""
    models = []
    for entry in entries:
        totals = entry.report.totals
        models.append({
            "model": entry.name,
            "inputs": [{"shape": list(shape)} for shape in entry.report.input_shapes],
            "params": totals.params,
            "macs": totals.macs,
            "other_ops": totals.other_ops,
            "flops": totals.flops,
            "param_bytes": totals.param_bytes,
            "accuracy": entry.accuracy,
        })
    return {"schema_version": SCHEMA_VERSION, "convention": CONVENTION, "models": models}


def comparison_json(entries: Sequence[ComparisonEntry]) -> str:
    return json.dumps(comparison_dict(entries), indent=2, ensure_ascii=False) + "\n"


def comparison_html(entries: Sequence[ComparisonEntry]) -> str:
    columns = comparison_columns(entries)
    title = html_escape(comparison_title(entries))

    def cell(numeric: bool, text: str) -> str:
        return f'<td class="num">{html_escape(text)}</td>' if numeric else f"<td>{html_escape(text)}</td>"

    lines = [
        "<!DOCTYPE html>",
        f'<html><head><meta charset="utf-8"><title>{title}</title><style>{STYLE}</style></head><body>',
        f"<h3>{title}</h3>",
        "<table>",
        "<tr>" + "".join(f"<th>{html_escape(column.header)}</th>" for column in columns) + "</tr>",
    ]
    for values in comparison_cells(entries):
        lines.append("<tr>" + "".join(cell(column.numeric, values[column.key]) for column in columns) + "</tr>")
    lines += ["</table>", "</body></html>"]
    return "\n".join(lines) + "\n"
