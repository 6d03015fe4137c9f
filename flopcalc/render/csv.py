"""CSV: one line per shown layer (the table's columns keyed by name, plus FLOPs), then the total line and
the ``--at`` points; numbers without separators."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

from flopcalc.render import cells
from flopcalc.report import Checked, Report

TOTAL_DEPTH = 0
"""The ``depth`` of the total line and of the ``--at`` lines: the model itself, as in the JSON layers."""


def to_csv(
    report: Report, depth: int | None = None, formulas: bool = False, evaluated: Sequence[Mapping[str, Any]] = ()
) -> str:
    """The layer table as CSV (header: ``depth`` and the column keys, ``flops`` after ``other_ops``, then
    ``checked_macs_share``, the share of the row's MACs that a matching formula checks, 0..1), closed by a
    ``Total`` line with the model's counts; each ``--at`` point (``evaluated``) adds a ``Total at N=1, H=224``
    line whose ``type`` says where its counts come from. ``depth=0`` writes the total lines alone."""
    keys = [column.key for column in cells.columns(formulas, report)]
    keys.insert(keys.index("other_ops") + 1, "flops")
    buffer = io.StringIO()
    fields = ["depth", *keys, "checked_macs_share"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row, values in cells.layer_cells(report, depth, formulas, raw=True):
        writer.writerow({"depth": row.depth, **values, "checked_macs_share": _share(row.checked)})
    totals = cells.total_cells(report, formulas, raw=True)
    writer.writerow({"depth": TOTAL_DEPTH, **totals, "checked_macs_share": _share(report.totals.checked)})
    for point in cells.evaluation_cells(evaluated, raw=True):
        writer.writerow({
            "depth": TOTAL_DEPTH, "name": f"Total at {point['at']}", "type": point["source"],
            "params": point["params"], "macs": point["macs"], "flops": point["flops"],
            "other_ops": int(point["flops"]) - 2 * int(point["macs"]),  # FLOPs = 2 × MACs + other ops
        })
    return buffer.getvalue()


def _share(checked: Checked | None) -> str:
    """A 0..1 share with six decimals, where only a whole check reads 1.000000; empty for a row without MACs."""
    share = checked.macs_share if checked else None
    if share is None:
        return ""
    return f"{min(share, 0.999999):.6f}" if share < 1 else "1.000000"
