"""LaTeX with booktabs: the layer table (formulas in math mode), then the totals and notes as a second table.

The output needs ``\\usepackage{booktabs}``; every text cell is escaped, so names such as ``features.0``,
``blocks_1`` or ``call#2`` are safe.
"""

from __future__ import annotations

import re

from flopcalc.render import cells
from flopcalc.report import Report, Status

_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "×": r"$\times$",
    "·": r"$\cdot$",
}
INDENT = r"\quad "


def escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped and × and · written as math symbols."""
    return "".join(_ESCAPES.get(char, char) for char in text)


def _symbolic(column: cells.Column, report: Report) -> bool:
    """Counts and shapes of a symbolic report are formulas in the named sizes: set in math mode."""
    return report.is_symbolic and column.key in ("params", "macs", "other_ops", "output_shape")


def _math(text: str) -> str:
    """``text`` in math mode (a plain count's separators as ``{,}``); nothing for an empty cell."""
    if not text:
        return ""
    return f"${text.replace(',', '{,}')}$" if re.fullmatch(r"[\d,]+", text) else f"${text}$"


def to_latex(report: Report, depth: int | None = None, formulas: bool = False) -> str:
    """The report as a LaTeX ``table`` of two booktabs tabulars; arguments as for the console table."""
    cols = cells.columns(formulas, report)
    spec = "".join("r" if column.numeric else "l" for column in cols)
    lines = [
        "% requires \\usepackage{booktabs}",
        "\\begin{table}[htbp]",
        "\\centering",
        f"\\caption{{{escape(cells.title(report))}}}",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(escape(column.header) for column in cols) + " \\\\",
        "\\midrule",
    ]
    visible = cells.layer_cells(report, depth, formulas, latex=True)
    top = min((row.depth for row, _ in visible), default=0)
    for row, values in visible:
        out = []
        for column in cols:
            text = values[column.key]
            text = _math(text) if column.math or _symbolic(column, report) else escape(text)
            if column.key == "name":
                text = INDENT * (row.depth - top) + text
            if column.key == "status" and row.status is Status.MISMATCH:
                text = f"\\textbf{{{text}}}"
            out.append(text)
        lines.append(" & ".join(out) + " \\\\")
    total = cells.total_cells(report, formulas, latex=True)
    lines += [
        "\\midrule",
        " & ".join(_math(total[c.key]) if _symbolic(c, report) else escape(total[c.key]) for c in cols) + " \\\\",
    ]
    lines += ["\\bottomrule", "\\end{tabular}", "", "\\medskip", "", "\\begin{tabular}{lp{0.7\\linewidth}}"]
    lines.append("\\toprule")
    lines += [
        f"{escape(label)} & {value if isinstance(value, cells.Latex) else escape(value)} \\\\"
        for label, value in cells.totals_items(report, latex=True)
    ]
    lines.append("\\midrule")
    lines += [f"{escape(label)} & {escape(value)} \\\\" for label, value in cells.notes(report)]
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"
