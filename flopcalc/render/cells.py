"""The one step every renderer shares: report rows -> typed values -> formatted cells, and the totals block.

Each format (console, markdown, LaTeX, CSV, HTML, JSON) takes its columns, values and totals lines from here,
so two formats of the same report cannot disagree; they differ only in escaping and layout. Nothing here
mutates the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sympy as sp

from flopcalc.formula import Number
from flopcalc.render import closed_forms, coverage
from flopcalc.render.closed_forms import Style
from flopcalc.report import LayerRow, Report, Status
from flopcalc.sizes import SizeNames, simplify_sizes

KIB = 1024
"""1 kB = 1024 B, as PyTorch and Keras summaries (and seed report 003) count parameter memory."""


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
FORMULA_COLUMNS = (
    Column("formula", "Formula"),
    Column("params_formula", "Params = formula", math=True),
    Column("macs_formula", "MACs = formula", math=True),
)

LISTED = 5
"""How many never-called modules the notes name before summarising the rest."""
UNCOUNTED_MARK = "*"
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


def _style(raw: bool, latex: bool) -> Style:
    return Style.TEXT if raw else Style.LATEX if latex else Style.UNICODE


def columns(formulas: bool = False) -> tuple[Column, ...]:
    """The layer table's columns, with the three formula columns when ``formulas`` is set."""
    return COLUMNS + FORMULA_COLUMNS if formulas else COLUMNS


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
    if formulas:
        values["formula"] = row.formula_name or ""
        values["params_formula"] = formula_text(row, "params", latex)
        values["macs_formula"] = formula_text(row, "macs", latex)
    return values


def fmt_count(value: Number) -> str:
    """An exact count with thousands separators (``61,100,840``); a symbolic count as sympy prints it."""
    return f"{value:,}" if isinstance(value, int) else str(value)


def fmt_scaled(value: Number, unit: str) -> str:
    """A count with its unit, exact and then scaled for reading: ``714,188,480 MACs (714.19 M)``."""
    if not isinstance(value, int):
        return f"{value} {unit}"
    for factor, prefix in ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K")):
        if abs(value) >= factor:
            return f"{value:,} {unit} ({value / factor:.2f} {prefix})"
    return f"{value:,} {unit}"


def fmt_shapes(shapes: Sequence[Sequence[Number]], times: str = "×") -> str:
    """Output shapes joined by ``times``; several outputs separated by commas."""
    def dim(d: Number | str) -> str:
        return str(d) if isinstance(d, int | str) or getattr(d, "is_Atom", False) else f"({d})"

    return ", ".join(times.join(dim(d) for d in shape) for shape in shapes)


def fmt_bytes(n: int) -> str:
    """Bytes, kB and MB with 1 kB = 1024 B: ``3,905,936 B = 3,814.391 kB = 3.725 MB``."""
    return f"{n:,} B = {n / KIB:,.3f} kB = {n / KIB**2:,.3f} MB"


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
            times.join(closed_forms.shape_dim(d, names, _style(raw, latex)) for d in shape)
            for shape in value  # type: ignore[attr-defined]
        )
    if names is not None and key == "output_shape":
        value = [[simplify_sizes(d) for d in shape] for shape in value]  # type: ignore[attr-defined]
    if isinstance(value, sp.Basic):
        if names is not None:
            return closed_forms.format_plain(value) if raw else closed_forms.format_count(value, names, _style(raw, latex))
        if latex:
            return sp.latex(value)
    if key == "output_shape":
        return fmt_shapes(value, "x" if raw else "×")  # type: ignore[arg-type]
    if key == "share":
        return f"{value:.4f}" if raw else f"{value:.1f}"
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
    names = size_names(report)
    keys = [column.key for column in columns(formulas)] + ["flops"]
    return {key: format_value(key, values.get(key, ""), raw, latex, names) for key in keys}


def _by_kind(ops: Mapping[str, Number]) -> str:
    return ", ".join(f"{kind} {fmt_count(n)}" for kind, n in sorted(ops.items()))


def totals_items(report: Report, latex: bool = False) -> list[tuple[str, str]]:
    """The totals block as (label, value) lines; every count names its unit (params, MACs, FLOPs, bytes).

    For a closed form the counts are written in the named sizes, listed first (``Where``); with ``latex``
    those values are :class:`Latex`."""
    t = report.totals
    dtypes = sorted(t.param_bytes_by_dtype.items())
    by_dtype = dtypes[0][0] if len(dtypes) == 1 else ", ".join(f"{dtype} {n:,} B" for dtype, n in dtypes)
    items = [
        ("Total params", fmt_count(t.params)),
        ("Trainable params", fmt_count(t.trainable_params)),
        (
            "Non-trainable params",
            f"{t.non_trainable_params:,} (Keras: frozen params {t.frozen_params:,} "
            f"+ floating-point buffer elements {t.non_trainable_params - t.frozen_params:,}; "
            "torchinfo counts the frozen params only)",
        ),
        ("Keras total params", f"{t.keras_total_params:,} (trainable + non-trainable)"),
        ("Buffers", f"{t.buffers:,} elements, {t.buffer_bytes:,} B"),
        ("Parameter memory", fmt_bytes(t.param_bytes) + f" ({by_dtype + '; ' if by_dtype else ''}1 kB = 1024 B)"),
    ]
    names = size_names(report)
    if names is None:
        return items + [
            ("MACs", fmt_scaled(t.macs, "MACs")),
            ("Other ops", fmt_count(t.other_ops) + (f" ({_by_kind(t.ops)})" if t.ops else "")),
            ("FLOPs", fmt_scaled(t.flops, "FLOPs") + " = 2 × MACs + other ops"),
            ("Measured", f"{fmt_count(t.measured_macs)} MACs, {fmt_count(t.measured_flops)} FLOPs (aten ops executed)"),
        ] + _checked_items(report)
    where = _where_items(names, latex)
    return where + items + _closed_form_counts(report, names, latex) + _checked_items(report) + closed_form_items(report)


def _checked_items(report: Report) -> list[tuple[str, str]]:
    return [("Checked", coverage.checked_text(report))] if report.totals.checked is not None else []


def _where_items(names: SizeNames, latex: bool) -> list[tuple[str, str]]:
    definitions = closed_forms.definitions(names, _style(False, latex))
    if not definitions:
        return []
    return [("Where", Latex(", ".join(f"${d}$" for d in definitions)) if latex else ", ".join(definitions))]


def _closed_form_counts(report: Report, names: SizeNames, latex: bool) -> list[tuple[str, str]]:
    """MACs, other ops and FLOPs in the named sizes, their leading terms, and whether the measurement agrees
    (it does when both are the same expression in normal form, which holds at every size)."""
    t = report.totals
    style = _style(False, latex)

    def count(value: Number) -> str:
        text = closed_forms.format_count(value, names, style)
        return f"${text}$" if latex else text

    def line(text: str) -> str:
        return Latex(text) if latex else text

    times = "$\\times$" if latex else "×"
    by_kind = ", ".join(f"{kind} {count(n)}" for kind, n in sorted(t.ops.items()))
    items = [
        ("MACs", line(f"{count(t.macs)} MACs")),
        ("Other ops", line(count(t.other_ops) + (f" ({by_kind})" if by_kind else ""))),
        ("FLOPs", line(f"{count(t.flops)} FLOPs = 2 {times} MACs + other ops")),
    ]
    leading = {unit: closed_forms.leading(value, names, style) for unit, value in (("MACs", t.macs), ("FLOPs", t.flops))}
    if all(leading.values()):
        approx = "\\approx" if latex else "≈"
        terms = ", ".join(f"{unit} ${approx} {text}$" if latex else f"{unit} {approx} {text}" for unit, text in leading.items())
        symbols = ", ".join(symbol.name for symbol in names.user_symbols)
        items.append(("Large sizes", line(f"{terms} (leading terms as {symbols} grow: roundings dropped, "
                                          "coefficients exact)")))
    equal, tested = closed_forms.agreement(report, names)
    if equal:
        where = f"at all {tested:,} sizes tested where it holds" if tested else "at every size"
        items.append(("Measured", f"equal to the formula {where} (MACs and FLOPs of the aten ops executed)"))
    else:
        items.append(("Measured", line(f"{count(t.measured_macs)} MACs, {count(t.measured_flops)} FLOPs "
                                       "(aten ops executed; written as the formula is)")))
    return items


def closed_form_items(report: Report) -> list[tuple[str, str]]:
    """For a symbolic report: where its closed forms hold, and the sizes torch assumed while tracing."""
    closed_form = report.closed_form
    if closed_form is None:
        return []
    bounds = ", ".join(closed_form.describe_conditions()) or "every size"
    hints = ", ".join(f"{name}={value}" for name, value in closed_form.hints.items())
    return [
        ("Valid for", f"{bounds} (from torch's shape guards; {len(closed_form.conditions)} conditions checked "
                      "by evaluate)"),
        ("Traced at", f"{hints} (hints: where the model branches on a size, it took the branch for these)"),
    ]


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


def notes(report: Report) -> list[tuple[str, str]]:
    """What a reader must know besides the numbers: the convention, gaps and disagreements."""
    found = [("Convention", report.convention)]
    if report.uncounted:
        listed = ", ".join(f"{op} ×{n}" for op, n in sorted(report.uncounted.items()))
        found.append(("Uncounted ops", f"{listed} (no counting rule; the counts above are lower bounds)"))
    else:
        found.append(("Uncounted ops", "none"))
    for row in report.mismatches:
        found.append(("Mismatch", f"{display_name(report, row)} ({row.type}): {'; '.join(row.mismatches)}"))
    if report.unchecked:
        found.append(("Unchecked", coverage.unchecked_text(report, LISTED)))
    if report.uncalled:
        uncalled = sorted(report.uncalled.items())
        listed = ", ".join(f"{name} ({n:,} params)" for name, n in uncalled[:LISTED])
        more = f" and {len(uncalled) - LISTED} more" if len(uncalled) > LISTED else ""
        found.append(("Never called", f"{listed}{more}: the forward pass did not call these modules; "
                      "their parameters are in the params totals"))
    return found


def legend(rows: Sequence[LayerRow]) -> list[tuple[str, str]]:
    """What the table's Status values and marks mean: every status, then functional rows, ``(self)`` and ``*``
    when shown."""
    found = list(STATUS_LEGEND)
    if any(row.status is Status.MISMATCH for row in rows):
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
