"""A rich table that fits the terminal without ever cutting or wrapping a number.

rich shrinks every column of a table that is wider than the terminal, which crops numbers (``1,814,073,34``)
and folds words (``BatchNorm2``/``d``). :class:`FitTable` decides the layout itself instead, at render time:

1. every column at its natural width, when that fits;
2. otherwise text that may fold (module names) folds, and cells wrap only between words, never inside one,
   so a count, a type name or a status stays whole;
3. when that is still too wide, optional columns are left out in a fixed order, and a note under the table
   names them and how to see them;
4. when even the essential columns do not fit, each row is stacked as ``name`` over ``Header value`` pairs,
   which wrap between pairs.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

FOLD_WIDTH = 12
"""The narrowest a folding column (module names) gets before columns are left out."""
STACK_INDENT = "    "


@dataclass(frozen=True)
class FitColumn:
    """How one column may give way. ``fold``: its text may break anywhere (names, never counts); other cells
    wrap only between words, and the header never. ``drop``: the column may be left out, lowest rank first;
    ``None`` keeps it always."""

    header: str
    right: bool = False
    fold: bool = False
    drop: int | None = None


@dataclass(frozen=True)
class FitRow:
    """One row's cells, in column order, and the style of the whole row."""

    cells: tuple[Text, ...]
    style: str = ""


def _fold(text: Text, width: int) -> Text:
    """``text`` broken into lines of at most ``width`` cells, preferably after a ``.`` (module paths), each
    continuation indented two more than the first line."""
    plain = text.plain
    if cell_len(plain) <= width:
        return text
    indent = len(plain) - len(plain.lstrip()) + 2
    lines, start, first = [], 0, True
    while start < len(plain):
        room = width - (0 if first else indent)
        end = start + max(room, 1)
        if end < len(plain):
            dot = plain.rfind(".", start + 1, end)
            end = dot + 1 if dot > start else end
        lines.append(("" if first else " " * indent) + plain[start:end])
        start, first = end, False
    return Text("\n".join(lines), style=text.style)


def _longest_word(text: str) -> int:
    return max((cell_len(word) for word in text.split()), default=0)


@cache
def _overhead(columns: int) -> int:
    """Columns taken by the table's edges, separators and padding around ``columns`` columns."""
    probe = _table([(FitColumn("x"), 1)] * columns, title=None)
    probe.add_row(*("x" for _ in range(columns)))
    console = Console(file=io.StringIO(), width=10_000)
    return Measurement.get(console, console.options, probe).maximum - columns


def _table(columns: Sequence[tuple[FitColumn, int]], title: Text | None, footer: bool = False) -> Table:
    # One space of padding on the left only: two spaces between columns, as with collapsed padding, but rich's
    # measurement of collapsed padding is one cell short, which would crop the first column.
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", show_footer=footer, padding=(0, 0, 0, 1))
    for column, width in columns:
        table.add_column(column.header, justify="right" if column.right else "left", width=width,
                         overflow="fold")
    return table


class FitTable:
    """A table of text cells, laid out at render time for the width it is given (see the module docstring).

    Args:
        columns: the columns, in order; the first is the row's label in the stacked layout.
        rows: the body rows.
        footer: a closing row (the totals), or None.
        title: shown above the table.
        how_to_see_all: completes the note about left-out columns, e.g. "or use --format markdown".
    """

    def __init__(
        self,
        columns: Sequence[FitColumn],
        rows: Sequence[FitRow],
        footer: FitRow | None = None,
        title: Text | None = None,
        how_to_see_all: str = "",
    ) -> None:
        self.columns = tuple(columns)
        self.rows = tuple(rows)
        self.footer = footer
        self.title = title
        self.how_to_see_all = how_to_see_all
        all_rows = [*self.rows, *([footer] if footer else [])]
        texts = [[column.header, *(row.cells[i].plain for row in all_rows)] for i, column in enumerate(columns)]
        self.natural = [max(cell_len(line) for text in col for line in text.splitlines() or [""]) for col in texts]
        self.minimum = [
            min(natural, FOLD_WIDTH) if column.fold else max(cell_len(column.header), *map(_longest_word, col))
            for column, natural, col in zip(self.columns, self.natural, texts, strict=True)
        ]

    def _width(self, kept: Sequence[int], widths: Sequence[int]) -> int:
        return sum(widths[i] for i in kept) + _overhead(len(kept))

    def _kept_columns(self, width: int) -> list[int] | None:
        """Indices of the columns to show at ``width``, dropping optional ones in rank order; None when even
        the essential columns do not fit."""
        kept = list(range(len(self.columns)))
        droppable = sorted((c.drop, i) for i, c in enumerate(self.columns) if c.drop is not None)
        while self._width(kept, self.minimum) > width:
            if not droppable:
                return None
            kept.remove(droppable.pop(0)[1])
        return kept

    def _allot(self, kept: Sequence[int], width: int) -> dict[int, int]:
        """Each kept column's width: its natural width when everything fits, else its minimum plus a share of
        what is left, in proportion to how much it would like."""
        if self._width(kept, self.natural) <= width:
            return {i: self.natural[i] for i in kept}
        spare = width - self._width(kept, self.minimum)
        wants = {i: self.natural[i] - self.minimum[i] for i in kept}
        total = sum(wants.values())
        widths = {i: self.minimum[i] + spare * wants[i] // total for i in kept}
        leftover = spare - sum(widths[i] - self.minimum[i] for i in kept)
        for i in kept:  # the remainder of the integer division, one column each
            if leftover and widths[i] < self.natural[i]:
                widths[i] += 1
                leftover -= 1
        return widths

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        kept = self._kept_columns(width)
        if kept is None:
            yield from self._stacked(width)
            return
        widths = self._allot(kept, width)
        table = _table([(self.columns[i], widths[i]) for i in kept], self.title, footer=self.footer is not None)
        if self.footer is not None:
            for i, column in zip(kept, table.columns, strict=True):
                column.footer = self.footer.cells[i]
        for row in self.rows:
            cells = (_fold(row.cells[i], widths[i]) if self.columns[i].fold else row.cells[i] for i in kept)
            table.add_row(*cells, style=row.style)
        yield table
        left_out = [column.header for i, column in enumerate(self.columns) if i not in kept]
        if left_out:
            yield Text(
                f"Left out to fit {width} columns: {', '.join(left_out)}. A terminal "
                f"{self._width(range(len(self.columns)), self.natural)} columns wide shows them{self.how_to_see_all}.",
                style="dim",
            )

    def _stacked(self, width: int) -> RenderResult:
        """Each row as its label, then ``Header value`` pairs packed on indented lines; a line breaks only
        between pairs (or, for a pair wider than the line, between words)."""
        if self.title is not None:
            yield self.title
        essential = [i for i, column in enumerate(self.columns) if column.drop is None]
        yield Text(
            f"Stacked to fit {width} columns: a terminal {self._width(essential, self.minimum)} columns wide "
            f"shows a table{self.how_to_see_all}.",
            style="dim",
        )
        for row in [*self.rows, *([self.footer] if self.footer else [])]:
            label = row.cells[0].copy()
            label.stylize(row.style)
            yield label
            indent = " " * (len(label.plain) - len(label.plain.lstrip())) + STACK_INDENT
            line = Text(indent)
            for column, cell in zip(self.columns[1:], row.cells[1:], strict=True):
                if not cell.plain:
                    continue
                pair = Text.assemble((f"{column.header} ", "dim"), cell)
                if len(line.plain) > len(indent) and cell_len(line.plain) + 2 + pair.cell_len > width:
                    yield line
                    line = Text(indent)
                if len(line.plain) > len(indent):
                    line.append("  ")
                line.append(pair)
            yield line

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        everything = range(len(self.columns))
        return Measurement(max(self.minimum, default=0), self._width(everything, self.natural))
