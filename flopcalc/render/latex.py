"""LaTeX with booktabs: the layer table (formulas in math mode; a ``longtable`` when it is long), then the
Status legend, totals and notes as a second table.

The output needs ``\\usepackage{booktabs}``; every text cell is escaped, so names such as ``features.0``,
``blocks_1`` or ``call#2`` are safe.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from flopcalc.render import cells, totals
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
LONGTABLE_ROWS = 40
"""A layer table with more rows than this is a ``longtable``: about what one page holds."""


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


def _row(texts: list[str]) -> str:
    return " & ".join(texts) + " \\\\"


def _layer_rows(report: Report, depth: int | None, formulas: bool) -> list[str]:
    """The body of the layer table: one line per shown row, then the total line."""
    cols = cells.columns(formulas, report)
    lines = []
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
        lines.append(_row(out))
    total = cells.total_cells(report, formulas, latex=True)
    lines += ["\\midrule", _row([_math(total[c.key]) if _symbolic(c, report) else escape(total[c.key]) for c in cols])]
    return lines


def _long_table(report: Report, depth: int | None, formulas: bool) -> list[str]:
    """A ``longtable``: the header repeats on every page and a page ends with a 'continued' line."""
    cols = cells.columns(formulas, report)
    header = [_row([escape(column.header) for column in cols]), "\\midrule"]
    return [
        f"\\begin{{longtable}}{{{_spec(cols)}}}",
        f"\\caption{{{escape(cells.title(report))}}} \\\\",
        "\\toprule", *header, "\\endfirsthead",
        "\\toprule", *header, "\\endhead",
        "\\midrule", f"\\multicolumn{{{len(cols)}}}{{r}}{{\\emph{{continued on the next page}}}} \\\\", "\\endfoot",
        "\\bottomrule", "\\endlastfoot",
        *_layer_rows(report, depth, formulas),
        "\\end{longtable}",
    ]


def _spec(cols: tuple[cells.Column, ...]) -> str:
    return "".join("r" if column.numeric else "l" for column in cols)


def _evaluations(evaluated: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ``--at`` points as a booktabs tabular, or nothing."""
    if not evaluated:
        return []
    columns = cells.EVALUATION_COLUMNS
    lines = ["", "\\medskip", "", f"\\begin{{tabular}}{{{_spec(columns)}}}", "\\toprule"]
    lines += [_row([escape(column.header) for column in columns]), "\\midrule"]
    lines += [_row([escape(values[c.key]) for c in columns]) for values in cells.evaluation_cells(evaluated)]
    return lines + ["\\bottomrule", "\\end{tabular}"]


def to_latex(
    report: Report,
    depth: int | None = None,
    formulas: bool = False,
    evaluated: Sequence[Mapping[str, Any]] = (),
    longtable: bool | None = None,
) -> str:
    """The report as LaTeX: the layer table, the ``--at`` points (``evaluated``), then the Status legend,
    totals and notes; arguments as for the console table (``depth=0``: no layer table).

    ``longtable``: set the layer table as a ``longtable`` that breaks across pages (needs
    ``\\usepackage{longtable}``); by default when it has more than :data:`LONGTABLE_ROWS` rows. Otherwise it is
    a ``table`` float.
    """
    cols = cells.columns(formulas, report)
    rows = cells.visible_rows(report, depth)
    long = len(rows) > LONGTABLE_ROWS if longtable is None else longtable
    lines = ["% requires \\usepackage{booktabs}" + (" and \\usepackage{longtable}" if long and rows else "")]
    if rows and long:
        lines += _long_table(report, depth, formulas)
        lines += ["", "\\begin{center}"]
    else:
        lines += ["\\begin{table}[htbp]", "\\centering", f"\\caption{{{escape(cells.title(report))}}}"]
    if rows and not long:
        lines += [f"\\begin{{tabular}}{{{_spec(cols)}}}", "\\toprule", _row([escape(c.header) for c in cols]),
                  "\\midrule", *_layer_rows(report, depth, formulas), "\\bottomrule", "\\end{tabular}"]
    lines += _evaluations(evaluated)
    if rows or evaluated:
        lines += ["", "\\medskip", ""]
    lines += ["\\begin{tabular}{lp{0.7\\linewidth}}", "\\toprule"]
    if rows:
        lines += [_row([f"\\texttt{{{escape(term)}}}", escape(meaning)]) for term, meaning in cells.legend(rows)]
        lines.append("\\midrule")
    lines += [_row([escape(label), value if isinstance(value, cells.Latex) else escape(value)])
              for label, value in totals.totals_items(report, latex=True)]
    lines.append("\\midrule")
    lines += [_row([escape(label), escape(value)]) for label, value in totals.notes(report)]
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{center}" if rows and long else "\\end{table}"]
    return "\n".join(lines) + "\n"
