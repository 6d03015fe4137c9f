"""The terminal view: a rich table of the layers, then the totals block and the notes.

Only the terminal renderers (this, ``fit``, ``conventions``) and the command line's output (``flopcalc.cli_show``,
``flopcalc.cli_compare``) import rich. ``Report.__rich__`` calls :func:`to_rich`, so
``rich.print(report)`` works without the CLI.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Mapping, Sequence

from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from flopcalc.render import cells, totals
from flopcalc.render.fit import FitColumn, FitRow, FitTable
from flopcalc.render.compare import ComparisonEntry, comparison_cells, comparison_columns, comparison_title
from flopcalc.report import LayerRow, Report, Status

STATUS_STYLES = {
    Status.MATCH: "green",
    Status.MISMATCH: "bold red",
    Status.MEASURED_ONLY: "",
    Status.FORMULA_ONLY: "yellow",
}
PARENT_STYLE = "bold"
MISMATCH_ROW_STYLE = "red"
LABEL_STYLE = "bold"
NOTE_STYLES = {"Mismatch": "bold red", "Uncounted ops": "yellow", "Never called": "yellow"}
INDENT = "  "
MIN_WIDTH = 80
CLOSED_FORM_WIDTH = 120
"""Width of a closed-form table written to a file or pipe (where no terminal says how wide), unless COLUMNS
says otherwise."""


DROP_ORDER = (
    "macs_formula", "params_formula", "formula", "share", "output_shape", "type",
    # the training views' columns: the less telling first, the backward split and the times last
    "intensity", "achieved", "backward_other_ops", "output_bytes", "bytes_moved", "of_roofline", "recompute_macs",
    "bound", "roofline_time", "time", "backward_status",
)
"""Columns left out, in this order, when the table is too wide for the terminal; the others are essential."""
ESSENTIAL = ("name", "params", "macs", "other_ops", "status", "grad_input_macs", "grad_weight_macs")
"""Never left out: a narrower terminal stacks each row instead. The backward split is there only with
``--backward``, which asks for it."""
SEE_ALL = ", or --format markdown, csv or json (every column, at any width)"


def _fit_column(column: cells.Column) -> FitColumn:
    """Names fold; counts, types and statuses never break; optional columns go first (unknown ones before
    the known, so a new column cannot push out an essential one)."""
    drop = None if column.key in ESSENTIAL else (DROP_ORDER.index(column.key) if column.key in DROP_ORDER else -1)
    return FitColumn(column.header, right=column.numeric, fold=column.key == "name", drop=drop)


def _layer_table(report: Report, depth: int | None, formulas: bool) -> FitTable:
    """Rows indented by depth; see :mod:`flopcalc.render.fit` for how it fits a narrow terminal."""
    cols = cells.columns(formulas, report)
    total = cells.total_cells(report, formulas)
    visible = cells.layer_cells(report, depth, formulas)
    top = min((row.depth for row, _ in visible), default=0)
    shown = {row.index for row, _ in visible}
    rows = [
        FitRow(tuple(_styled(report, row, dict(values, name=INDENT * (row.depth - top) + values["name"]), formulas)),
               _row_style(row, shown))
        for row, values in visible
    ]
    return FitTable(
        [_fit_column(column) for column in cols],
        rows,
        footer=FitRow(tuple(Text(total[column.key]) for column in cols)),
        title=Text(cells.title(report)),
        how_to_see_all=SEE_ALL,
    )


def _row_style(row: LayerRow, shown: set[int]) -> str:
    if row.status is Status.MISMATCH:
        return MISMATCH_ROW_STYLE
    return PARENT_STYLE if not row.is_own and any(child in shown for child in row.children) else ""


def _styled(report: Report, row: LayerRow, values: dict[str, str], formulas: bool) -> list[Text]:
    # Text, not str: module and model names are shown as written, never read as rich markup or emoji codes.
    statuses = {"status": row.status, "backward_status": row.backward.status if row.backward else None}
    return [
        Text(values[column.key], style=STATUS_STYLES[status] if (status := statuses.get(column.key)) else "")
        for column in cells.columns(formulas, report)
    ]


def _label_value_grid(items: Sequence[tuple[str, str]], styles: dict[str, str] | None = None) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style=LABEL_STYLE, no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in items:
        grid.add_row(label, Text(value, style=(styles or {}).get(label, "")))
    return grid


def to_rich(
    report: Report, depth: int | None = None, formulas: bool = False, evaluated: Sequence[Mapping[str, object]] = ()
) -> RenderableType:
    """The layer table, the totals block and the notes, as one rich renderable.

    Args:
        report: what :func:`flopcalc.analyze` returned; not modified.
        depth: fold the hierarchy below this depth (1 = the model's direct children); a folded row shows the
            inclusive counts of its subtree.
        formulas: add the formula name and the params and MACs formulas with their numbers substituted.
        evaluated: the ``--at`` points (:func:`flopcalc.analyze.evaluate_at`), shown after the layer table.
    """
    rows = cells.visible_rows(report, depth)
    table: list[RenderableType] = [Text(cells.title(report)), Text()]
    if rows:
        table = [_layer_table(report, depth, formulas), _label_value_grid(cells.legend(rows)), Text()]
    if evaluated:
        table += [evaluations_to_rich(report, evaluated)]  # the table ends in a blank line of its own
    return Group(
        *table,
        _label_value_grid(totals.totals_items(report)),
        Text(),
        _label_value_grid(totals.notes(report), NOTE_STYLES),
    )


def comparison_to_rich(entries: Sequence[ComparisonEntry]) -> RenderableType:
    """Several models side by side: params, MACs, FLOPs, parameter memory and the user's accuracy if given."""
    cols = comparison_columns(entries)
    fit_columns = [
        FitColumn(column.header, right=column.numeric, fold=column.key == "model",
                  drop=0 if column.key == "param_memory" else None)
        for column in cols
    ]
    rows = [FitRow(tuple(Text(values[column.key]) for column in cols)) for values in comparison_cells(entries)]
    return FitTable(fit_columns, rows, title=Text(comparison_title(entries)),
                    how_to_see_all=", or --format markdown, csv or json")


def evaluations_to_rich(report: Report, evaluations: Sequence[Mapping[str, object]]) -> RenderableType:
    """The ``--at`` table: one row per point, from the closed form or (outside its conditions) a concrete run."""
    columns = [FitColumn(column.header, right=column.numeric, fold=column.key == "at") for column in cells.EVALUATION_COLUMNS]
    rows = [
        FitRow(tuple(Text(row[column.key]) for column in cells.EVALUATION_COLUMNS))
        for row in cells.evaluation_cells(evaluations)
    ]
    return FitTable(columns, rows, title=Text(f"{report.model}: evaluated at sizes"))


def _natural_width(renderable: RenderableType) -> int:
    """Columns ``renderable`` needs to show every cell unwrapped, at least :data:`MIN_WIDTH`."""
    probe = Console(file=io.StringIO(), width=10_000)
    return max(MIN_WIDTH, Measurement.get(probe, probe.options, renderable).maximum)


def plain_text(renderable: RenderableType, width: int | None = None) -> str:
    """``renderable`` as text without colour, ``width`` columns wide (default: its natural width), without the
    trailing spaces rich pads lines with."""
    buffer = io.StringIO()
    Console(file=buffer, color_system=None, width=width or _natural_width(renderable)).print(renderable)
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())


def to_plain_text(
    report: Report,
    depth: int | None = None,
    formulas: bool = False,
    evaluated: Sequence[Mapping[str, object]] = (),
    width: int | None = None,
) -> str:
    """The console view as plain text (for files, pipes and golden tests); by default as wide as the layer
    table needs, so no cell is wrapped (the notes below wrap at that width)."""
    if width is None:
        width = _natural_width(_layer_table(report, depth, formulas)) if cells.visible_rows(report, depth) else MIN_WIDTH
        if report.is_symbolic:  # a closed form wraps between its terms instead of growing the table
            width = min(width, max(MIN_WIDTH, shutil.get_terminal_size((CLOSED_FORM_WIDTH, 24)).columns))
    return plain_text(to_rich(report, depth, formulas, evaluated), width)
