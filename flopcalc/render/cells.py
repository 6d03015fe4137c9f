"""The one step every renderer shares: report rows -> typed values -> formatted cells, with the table's
columns, title and legend.

Each format (console, markdown, LaTeX, CSV, HTML, JSON) takes its columns and values from here (and its totals
and notes from :mod:`flopcalc.render.totals`), so two formats of the same report cannot disagree; they differ
only in escaping and layout. Nothing here mutates the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sympy as sp

from flopcalc.formula import Number
from flopcalc.render import closed_forms, training
from flopcalc.render.closed_forms import Style
from flopcalc.render.training import UNCOUNTED_MARK
from flopcalc.render.units import fmt_count, format_measure
from flopcalc.report import LayerRow, Report, Status
from flopcalc.sizes import SizeNames, simplify_sizes


@dataclass(frozen=True)
class Column:
    """One column of the layer table. ``numeric`` columns are right-aligned; ``math`` columns hold formulas,
    which LaTeX sets in math mode instead of escaping."""

    key: str
    header: str
    numeric: bool = False
    math: bool = False


COLUMNS = (
    Column("name", "Layer"),
    Column("type", "Type"),
    Column("output_shape", "Output shape"),
    Column("params", "Params", numeric=True),
    Column("macs", "MACs", numeric=True),
    Column("share", "% MACs", numeric=True),
    Column("other_ops", "Other ops", numeric=True),
    Column("status", "Status"),
)
BACKWARD_COLUMNS = (
    Column("grad_input_macs", "Grad-input MACs", numeric=True),
    Column("grad_weight_macs", "Grad-weight MACs", numeric=True),
    Column("backward_other_ops", "Bwd other ops", numeric=True),
    Column("backward_status", "Backward"),
)
RECOMPUTE_COLUMN = Column("recompute_macs", "Recompute MACs", numeric=True)
OUTPUT_BYTES_COLUMN = Column("output_bytes", "Output bytes", numeric=True)
TIMING_COLUMNS = (
    Column("time", "Time", numeric=True),
    Column("achieved", "FLOP/s", numeric=True),
    Column("of_roofline", "% roofline", numeric=True),
)
ROOFLINE_COLUMNS = (
    Column("bytes_moved", "Bytes moved", numeric=True),
    Column("intensity", "FLOP/B", numeric=True),
    Column("roofline_time", "Roofline time", numeric=True),
    Column("bound", "Bound"),
)
FORMULA_COLUMNS = (
    Column("formula", "Formula"),
    Column("params_formula", "Params = formula", math=True),
    Column("macs_formula", "MACs = formula", math=True),
)

STATUS_LEGEND = (
    ("match", "formula and executed operators agree (params, MACs, ops, shape)"),
    ("measured-only", "no formula for (part of) the row: the count is what executed"),
    ("formula-only", "uncounted op inside: the count is the formula's, unchecked"),
    ("mismatch", "formula and executed operators disagree"),
)
"""One line per status value, shown under every layer table."""
OWN_LEGEND = ("(self)", "what a module's own forward did outside its child modules")
FUNCTION_LEGEND = ("← call", "a functional call (F.linear, @, softmax, ...) in a module's forward, as a layer")
UNCOUNTED_LEGEND = (UNCOUNTED_MARK, "ops without a counting rule ran inside: counts are a lower bound")


class Latex(str):
    """A value already written in LaTeX (math in ``$…$``): the LaTeX renderer sets it as it is."""


def size_names(report: Report) -> SizeNames | None:
    """For a closed-form report, its intermediate sizes named once (``H₁ = ⌈H/2⌉``); ``None`` otherwise."""
    return closed_forms.size_names(report) if report.is_symbolic else None


def count_style(raw: bool, latex: bool) -> Style:
    """How a closed-form count is written: plain text (``raw``, CSV), LaTeX, or Unicode."""
    return Style.TEXT if raw else Style.LATEX if latex else Style.UNICODE


def columns(formulas: bool = False, report: Report | None = None) -> tuple[Column, ...]:
    """The layer table's columns, with the three formula columns when ``formulas`` is set, the output bytes
    when ``report`` tracked memory, and the backward columns when it counted the backward pass (recompute only
    when checkpointing re-ran a forward)."""
    chosen = COLUMNS
    if report is not None and report.totals.memory is not None:
        chosen = chosen[:-1] + (OUTPUT_BYTES_COLUMN, chosen[-1])
    if report is not None and report.totals.roofline is not None:
        chosen = chosen[:-1] + ROOFLINE_COLUMNS + (chosen[-1],)
    if report is not None and report.timing is not None:
        timing = TIMING_COLUMNS if report.totals.roofline is not None else TIMING_COLUMNS[:2]
        chosen = chosen[:-1] + timing + (chosen[-1],)
    backward = report.totals.backward if report is not None else None
    if backward is not None:
        recompute = (RECOMPUTE_COLUMN,) if backward.recompute.macs or backward.recompute.ops else ()
        chosen = chosen[:-1] + BACKWARD_COLUMNS[:-1] + recompute + (chosen[-1], BACKWARD_COLUMNS[-1])
    return chosen + FORMULA_COLUMNS if formulas else chosen


def visible_rows(report: Report, depth: int | None = None) -> tuple[LayerRow, ...]:
    """Rows shown at ``depth``: every module call from depth 1 (the model's children) to ``depth``, each
    module's ``(self)`` row after its children; ``depth=0`` shows none (the totals alone).

    Counts are inclusive, so a row at the deepest shown level stands for its whole subtree, and the rows under
    a module add up to it exactly. The model's own row (depth 0) is the totals block; it is shown only when the
    model is a single layer with no children.
    """
    if depth == 0:
        return ()

    def shown(row: LayerRow) -> bool:
        return row.depth >= 1 and (depth is None or row.depth <= depth)

    out: list[LayerRow] = []
    open_rows: list[LayerRow] = []  # ancestors of the current row, whose (self) rows follow their subtrees

    def close(row: LayerRow) -> None:
        if row.own is not None and shown(row.own):
            out.append(row.own)

    for row in report.rows:
        while open_rows and open_rows[-1].depth >= row.depth:
            close(open_rows.pop())
        if shown(row):
            out.append(row)
        open_rows.append(row)
    while open_rows:
        close(open_rows.pop())
    return tuple(out) or report.rows[:1]


def display_name(report: Report, row: LayerRow) -> str:
    """The qualified module name, or the model's name for the model itself."""
    return row.name or report.model


def status_text(row: LayerRow) -> str:
    """The row status, marked when an op without a counting rule ran inside the layer."""
    return row.status.value + (UNCOUNTED_MARK if row.uncounted else "")


def formula_text(row: LayerRow, what: str, latex: bool = False) -> str:
    """The row's formula for ``what`` with its numbers substituted (``3·64·11·11 + 64 = 23,296``), or ''."""
    if row.bound is None or row.analytic is None:
        return ""
    return row.bound.formula.substituted(what, row.bound.values, latex=latex)


def share(row: LayerRow, report: Report) -> float | None:
    """The row's MACs as a percentage of the model's; None when the model has no MACs or they are symbolic
    (the share then depends on the input size)."""
    total = report.totals.macs
    if not (isinstance(total, int) and isinstance(row.macs, int)):
        return None
    return float(100 * row.macs / total) if total else None


def layer_values(report: Report, row: LayerRow, formulas: bool = False, latex: bool = False) -> dict[str, object]:
    """Typed values of one row, keyed like :data:`COLUMNS`: counts stay numbers, shapes stay tuples."""
    values: dict[str, object] = {
        "name": display_name(report, row),
        "type": row.type,
        "output_shape": row.output_shapes,
        "params": row.params,
        "macs": row.macs,
        "share": share(row, report),
        "other_ops": row.other_ops,
        "flops": row.flops,
        "status": status_text(row),
    }
    values.update(training.row_values(report, row))
    if formulas:
        values["formula"] = row.formula_name or ""
        values["params_formula"] = formula_text(row, "params", latex)
        values["macs_formula"] = formula_text(row, "macs", latex)
    return values


def fmt_shapes(shapes: Sequence[Sequence[Number]], times: str = "×") -> str:
    """Output shapes joined by ``times``; several outputs separated by commas."""
    def dim(d: Number | str) -> str:
        return str(d) if isinstance(d, int | str) or getattr(d, "is_Atom", False) else f"({d})"

    return ", ".join(times.join(dim(d) for d in shape) for shape in shapes)


def format_value(
    key: str, value: object, raw: bool = False, latex: bool = False, names: SizeNames | None = None
) -> str:
    """One cell as text. ``raw`` keeps numbers machine-readable (no separators) for CSV; ``latex`` writes a
    symbolic count as LaTeX. With ``names`` (a closed form), counts and shapes are written in the named
    intermediate sizes (``9,408·H₁·W₁``); raw ones in normal form without names, so that a CSV cell stands
    alone (``9408*ceiling(H/2)*ceiling(W/2)``)."""
    if value is None:
        return ""
    if names is not None and key == "output_shape" and not raw:
        times = " \\times " if latex else "×"
        return ", ".join(
            times.join(closed_forms.shape_dim(d, names, count_style(raw, latex)) for d in shape)
            for shape in value  # type: ignore[attr-defined]
        )
    if names is not None and key == "output_shape":
        value = [[simplify_sizes(d) for d in shape] for shape in value]  # type: ignore[attr-defined]
    if isinstance(value, sp.Basic):
        if names is not None:
            if raw:
                return closed_forms.format_plain(value)
            return closed_forms.format_count(value, names, count_style(raw, latex))
        if latex:
            return sp.latex(value)
    if key == "output_shape":
        return fmt_shapes(value, "x" if raw else "×")  # type: ignore[arg-type]
    if key == "share":
        return f"{value:.4f}" if raw else f"{value:.1f}"
    if (measure := format_measure(value, raw)) is not None:
        return measure
    if isinstance(value, str):
        return value
    return str(value) if raw else fmt_count(value)  # type: ignore[arg-type]


def layer_cells(
    report: Report, depth: int | None = None, formulas: bool = False, latex: bool = False, raw: bool = False
) -> list[tuple[LayerRow, dict[str, str]]]:
    """Every visible row with its formatted cells, keyed by column key."""
    names = size_names(report)
    return [
        (row, {k: format_value(k, v, raw, latex, names) for k, v in layer_values(report, row, formulas, latex).items()})
        for row in visible_rows(report, depth)
    ]


def total_cells(report: Report, formulas: bool = False, raw: bool = False, latex: bool = False) -> dict[str, str]:
    """The table's closing row: the model's params, MACs and other ops, keyed like :func:`columns`."""
    t = report.totals
    values: dict[str, object] = {
        "name": "Total", "params": t.params, "macs": t.macs, "other_ops": t.other_ops, "flops": t.flops,
        "share": 100.0 if t.macs and not report.is_symbolic else None,
    }
    values.update(training.total_values(report))
    names = size_names(report)
    keys = [column.key for column in columns(formulas, report)] + ["flops"]
    return {key: format_value(key, values.get(key, ""), raw, latex, names) for key in keys}


EVALUATION_COLUMNS = (
    Column("at", "At"),
    Column("params", "Params", numeric=True),
    Column("macs", "MACs", numeric=True),
    Column("flops", "FLOPs", numeric=True),
    Column("source", "From"),
)
"""Columns of the ``--at`` table, keyed like :func:`evaluation_cells`."""


def evaluation_cells(evaluations: Sequence[Mapping[str, object]], raw: bool = False) -> list[dict[str, str]]:
    """Rows of the ``--at`` table from :func:`flopcalc.analyze.evaluate_at`: sizes, counts and their source;
    ``raw`` writes the counts without separators (CSV)."""
    return [
        {
            "at": ", ".join(f"{name}={value}" for name, value in e["at"].items()),  # type: ignore[union-attr]
            **{key: "n/a" if e[key] is None else format_value(key, e[key], raw) for key in ("params", "macs", "flops")},
            "source": str(e["source"]),
        }
        for e in evaluations
    ]


def legend(rows: Sequence[LayerRow]) -> list[tuple[str, str]]:
    """What the table's Status values and marks mean: every status, then functional rows, ``(self)`` and ``*``
    when shown."""
    found = list(STATUS_LEGEND)
    if any(Status.MISMATCH in (row.status, row.backward and row.backward.status) for row in rows):
        found[-1] = (found[-1][0], found[-1][1] + " (see Mismatch below)")
    if any(row.is_function for row in rows):
        found.append(FUNCTION_LEGEND)
    if any(row.is_own for row in rows):
        found.append(OWN_LEGEND)
    if any(row.uncounted for row in rows):
        found.append(UNCOUNTED_LEGEND)
    return found


def title(report: Report) -> str:
    """``AlexNet: input 1×3×224×224 (meta device)``."""
    return f"{report.model}: input {fmt_inputs(report) or 'none'} ({report.device} device)"


def fmt_inputs(report: Report, times: str = "×") -> str:
    """The inputs as ``--input`` takes them: ``1×128:int64, attention_mask=1×128:int64`` (float32 unmarked)."""
    labels = report.input_labels or ()
    texts = []
    for i, shape in enumerate(report.input_shapes):
        text = fmt_shapes([shape], times)
        if i < len(labels):
            keyword, dtype = labels[i].keyword, labels[i].dtype
            text = f"{keyword + '=' if keyword else ''}{text}{'' if dtype == 'float32' else ':' + dtype}"
        texts.append(text)
    return ", ".join(texts)
