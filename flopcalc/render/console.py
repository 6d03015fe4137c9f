"""The terminal view: a rich table of the layers, then the totals block and the notes.

This and ``flopcalc.cli`` are the only modules that import rich. ``Report.__rich__`` calls :func:`to_rich`, so
``rich.print(report)`` works without the CLI.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Mapping, Sequence

from rich import box
from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from flopcalc.render import cells
from flopcalc.render.compare import ComparisonEntry, comparison_cells, comparison_columns
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
FOLD_WIDTH = 10
"""On a narrow terminal, text columns fold down to this width; numbers and statuses never wrap."""


def _layer_table(report: Report, depth: int | None, formulas: bool) -> Table:
    """Rows indented by depth; numeric and status columns keep their full width, text columns may fold."""
    table = Table(
        title=Text(cells.title(report)), box=box.SIMPLE_HEAD, title_justify="left", show_footer=True, collapse_padding=True
    )
    total = cells.total_cells(report, formulas)
    visible = cells.layer_cells(report, depth, formulas)
    top = min((row.depth for row, _ in visible), default=0)
    rows = [(row, dict(values, name=INDENT * (row.depth - top) + values["name"])) for row, values in visible]
    for column in cells.columns(formulas, report):
        texts = [column.header, total[column.key], *(v[column.key] for _, v in rows)]
        widest = max(len(text) for text in texts)
        fixed = column.numeric or column.key == "status"
        wraps = column.numeric and report.is_symbolic  # a closed form wraps between its terms, never inside one
        if wraps:
            widest = max(len(word) for text in texts for word in text.split()) + len(" +")
        table.add_column(
            column.header,
            footer=Text(total[column.key]),
            justify="right" if column.numeric else "left",
            no_wrap=fixed and not wraps,
            overflow="fold",
            min_width=widest if fixed else min(widest, FOLD_WIDTH),
        )
    shown = {row.index for row, _ in visible}
    for row, values in rows:
        table.add_row(*_styled(report, row, values, formulas), style=_row_style(row, shown))
    return table


def _row_style(row: LayerRow, shown: set[int]) -> str:
    if row.status is Status.MISMATCH:
        return MISMATCH_ROW_STYLE
    return PARENT_STYLE if any(child in shown for child in row.children) else ""


def _styled(report: Report, row: LayerRow, values: dict[str, str], formulas: bool) -> list[Text | str]:
    out: list[Text | str] = []
    for column in cells.columns(formulas, report):
        text = values[column.key]
        # Text, not str: module and model names are shown as written, never read as rich markup or emoji codes.
        status = row.status if column.key == "status" else row.backward.status if column.key == "backward_status" and row.backward else None
        out.append(Text(text, style=STATUS_STYLES[status] if status else ""))
    return out


def _label_value_grid(items: Sequence[tuple[str, str]], styles: dict[str, str] | None = None) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style=LABEL_STYLE, no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in items:
        grid.add_row(label, Text(value, style=(styles or {}).get(label, "")))
    return grid


def to_rich(report: Report, depth: int | None = None, formulas: bool = False) -> RenderableType:
    """The layer table, the totals block and the notes, as one rich renderable.

    Args:
        report: what :func:`flopcalc.analyze` returned; not modified.
        depth: fold the hierarchy below this depth (1 = the model's direct children); a folded row shows the
            inclusive counts of its subtree.
        formulas: add the formula name and the params and MACs formulas with their numbers substituted.
    """
    return Group(
        _layer_table(report, depth, formulas),
        _label_value_grid(cells.totals_items(report)),
        Text(),
        _label_value_grid(cells.notes(report), NOTE_STYLES),
    )


def comparison_to_rich(entries: Sequence[ComparisonEntry]) -> RenderableType:
    """Several models side by side: params, MACs, FLOPs, parameter memory and the user's accuracy if given."""
    table = Table(box=box.SIMPLE_HEAD)
    cols = comparison_columns(entries)
    for column in cols:
        table.add_column(
            column.header, justify="right" if column.numeric else "left", no_wrap=column.numeric, overflow="fold"
        )
    for values in comparison_cells(entries):
        table.add_row(*(values[column.key] for column in cols))
    return table


def evaluations_to_rich(report: Report, evaluations: Sequence[Mapping[str, object]]) -> RenderableType:
    """The ``--at`` table: one row per point, from the closed form or (outside its conditions) a concrete run."""
    table = Table(title=Text(f"{report.model}: evaluated at sizes"), box=box.SIMPLE_HEAD, title_justify="left")
    columns = (("At", "left", "at"), ("Params", "right", "params"), ("MACs", "right", "macs"),
               ("FLOPs", "right", "flops"), ("From", "left", "source"))
    for header, justify, _ in columns:
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for row in cells.evaluation_cells(evaluations):
        table.add_row(*(Text(row[key]) for _, _, key in columns))
    return table


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


def to_plain_text(report: Report, depth: int | None = None, formulas: bool = False, width: int | None = None) -> str:
    """The console view as plain text (for files, pipes and golden tests); by default as wide as the layer
    table needs, so no cell is wrapped (the notes below wrap at that width)."""
    if width is None:
        width = _natural_width(_layer_table(report, depth, formulas))
        if report.is_symbolic:  # a closed form wraps between its terms instead of growing the table
            width = min(width, max(MIN_WIDTH, shutil.get_terminal_size((CLOSED_FORM_WIDTH, 24)).columns))
    return plain_text(to_rich(report, depth, formulas), width)
