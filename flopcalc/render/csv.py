"""CSV: one line per shown layer, the table's columns keyed by name, numbers without separators."""

from __future__ import annotations

import csv
import io

from flopcalc.render import cells
from flopcalc.report import Report


def to_csv(report: Report, depth: int | None = None, formulas: bool = False) -> str:
    """The layer table as CSV (header: the column keys); totals are the model's, in :func:`to_json`."""
    keys = [column.key for column in cells.columns(formulas, report)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["depth", *keys], lineterminator="\n")
    writer.writeheader()
    for row, values in cells.layer_cells(report, depth, formulas, raw=True):
        writer.writerow({"depth": row.depth, **values})
    return buffer.getvalue()
