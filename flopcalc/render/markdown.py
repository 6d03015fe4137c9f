"""GitHub-flavoured Markdown: a layer table (names in code spans, numbers right-aligned), totals and notes."""

from __future__ import annotations

from flopcalc.render import cells
from flopcalc.report import Report, Status


def escape(text: str) -> str:
    """Make text safe inside a table cell: pipes are escaped, and emphasis characters too."""
    for char in ("\\", "|", "*", "_", "`"):
        text = text.replace(char, "\\" + char)
    return text


def _code(text: str) -> str:
    """A code span (underscores and dots stay literal); only the pipe needs escaping inside a table."""
    return "`" + text.replace("|", "\\|") + "`" if text else ""


def to_markdown(report: Report, depth: int | None = None, formulas: bool = False) -> str:
    """The report as Markdown; ``depth`` and ``formulas`` as in :func:`flopcalc.render.console.to_rich`."""
    cols = cells.columns(formulas, report)
    lines = [f"### {escape(cells.title(report))}", ""]
    lines.append("| " + " | ".join(column.header for column in cols) + " |")
    lines.append("|" + "|".join("---:" if column.numeric else "---" for column in cols) + "|")
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
        lines.append("| " + " | ".join(out) + " |")
    total = [escape(text) for text in cells.total_cells(report, formulas).values()]
    lines.append("| " + " | ".join(f"**{text}**" if text else "" for text in total) + " |")
    lines.append("")
    lines += [f"- **{label}**: {escape(value)}" for label, value in cells.totals_items(report)]
    lines.append("")
    lines += [f"- **{label}**: {escape(value)}" for label, value in cells.notes(report)]
    return "\n".join(lines) + "\n"
