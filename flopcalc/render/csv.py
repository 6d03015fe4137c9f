"""CSV: one line per shown layer, the table's columns keyed by name, numbers without separators."""

from __future__ import annotations

import csv
import io

from flopcalc.render import cells
from flopcalc.report import Report


def to_csv(report: Report, depth: int | None = None, formulas: bool = False) -> str:
    """The layer table as CSV (header: the column keys, then the share of the row's MACs that a matching
    formula checks, 0..1); totals are the model's, in :func:`to_json`."""
    keys = [column.key for column in cells.columns(formulas)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["depth", *keys, "checked_macs_share"], lineterminator="\n")
    writer.writeheader()
    for row, values in cells.layer_cells(report, depth, formulas, raw=True):
        share = row.checked.macs_share if row.checked else None
        writer.writerow({"depth": row.depth, **values, "checked_macs_share": "" if share is None else f"{share:.6f}"})
    return buffer.getvalue()
