"""JSON with a versioned schema (docs/json-schema.md): the whole report, counts as integers.

The layer entries carry the same values as the table columns (from :mod:`flopcalc.render.cells`) plus what a
program needs besides: per-kind ops, the measured counts, the hierarchy and the formula.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from flopcalc.conventions.base import ConventionResult
from flopcalc.formula import Number
from flopcalc.render import cells, closed_forms
from flopcalc.render.closed_forms import Style
from flopcalc.report import Checked, LayerRow, Report


def _number(value: Number) -> int | str:
    """Counts are integers; a symbolic count (symbolic input sizes) is its sympy text in normal form
    (``9408*ceiling(H/2)*ceiling(W/2)``), which ``sympy.parse_expr`` reads back."""
    if isinstance(value, int):
        return value
    return int(value) if getattr(value, "is_Integer", False) else closed_forms.format_plain(value)


def _ops(ops: Mapping[str, Number]) -> dict[str, int | str]:
    return {kind: _number(n) for kind, n in sorted(ops.items())}


def _formula(row: LayerRow) -> dict[str, Any] | None:
    if row.bound is None:
        return None
    formula = row.bound.formula
    return {
        "name": formula.name,
        "description": formula.description,
        "params": formula.to_text("params"),
        "macs": formula.to_text("macs"),
        "ops": {kind: formula.to_text(kind) for kind in sorted(formula.ops)},
        "values": {symbol: _number(v) for symbol, v in row.bound.values.items()},
        "params_substituted": cells.formula_text(row, "params"),
        "macs_substituted": cells.formula_text(row, "macs"),
    }


def layer_record(report: Report, row: LayerRow) -> dict[str, Any]:
    """One entry of ``layers``; ``parent`` is the parent's qualified name (``""`` for the model itself).
    A ``(self)`` row (``kind`` ``"self"``) has its module's ``index``; a functional call's row (``kind``
    ``"function"``) is a child of the module that made it."""
    return {
        "index": row.index,
        "kind": "self" if row.is_own else "function" if row.is_function else "module",
        "name": row.name,
        "type": row.type,
        "depth": row.depth,
        "parent": None if row.parent is None else report.rows[row.parent].name,
        "input_shapes": [[_number(d) for d in s] for s in row.input_shapes],
        "output_shapes": [[_number(d) for d in s] for s in row.output_shapes],
        "params": _number(row.params),
        "macs": _number(row.macs),
        "ops": _ops(row.ops),
        "other_ops": _number(row.other_ops),
        "flops": _number(row.flops),
        "share_of_macs": cells.share(row, report),
        "measured_macs": _number(row.measured.macs),
        "measured_ops": _ops(row.measured.ops),
        "measured_flops": _number(row.measured.flops),
        "status": row.status.value,
        "uncounted_ops": dict(sorted(row.uncounted.items())),
        "formula": _formula(row),
        "mismatches": list(row.mismatches),
        "function": row.function,
        **_checked(row.checked),
    }


def _checked(checked: Checked | None) -> dict[str, Any]:
    """How much of a count a matching formula stands behind, as counts and 0..1 shares."""
    if checked is None:
        return {}
    return {
        "checked_macs": _number(checked.macs),
        "checked_macs_share": checked.macs_share,
        "checked_other_ops": _number(checked.other_ops),
        "checked_other_ops_share": checked.ops_share,
    }


def _closed_form(report: Report) -> dict[str, Any] | None:
    """For symbolic inputs: the guards (sympy text), per-symbol bounds and the hints the trace used."""
    closed_form = report.closed_form
    if closed_form is None:
        return None
    names = closed_forms.size_names(report)
    t = report.totals
    totals = {"macs": t.macs, "other_ops": t.other_ops, "flops": t.flops}
    return {
        "symbols": list(closed_form.hints),
        "conditions": [str(c) for c in closed_form.conditions],
        "bounds": closed_form.describe_conditions(),
        "hints": dict(closed_form.hints),
        "sizes": {str(size.symbol): closed_forms.format_plain(size.value) for size in names.sizes},
        "named": {key: closed_forms.format_count(value, names, Style.TEXT) for key, value in totals.items()},
        "leading": {
            key: closed_forms.leading(value, names, Style.TEXT) for key, value in totals.items() if key != "other_ops"
        },
        "measured_equal": closed_forms.agreement(report, names)[0],
    }


def to_dict(report: Report, depth: int | None = None) -> dict[str, Any]:
    """The report as plain JSON-ready data; ``layers`` holds the rows shown at ``depth`` (all by default; none
    at ``depth=0``), each module's ``(self)`` row after its children."""
    t = report.totals
    return {
        "schema_version": report.schema_version,
        "model": report.model,
        "inputs": _inputs(report),
        "device": report.device,
        "convention": report.convention,
        "totals": {
            "params": t.params,
            "trainable_params": t.trainable_params,
            "frozen_params": t.frozen_params,
            "non_trainable_params": t.non_trainable_params,
            "keras_total_params": t.keras_total_params,
            "buffers": t.buffers,
            "param_bytes": t.param_bytes,
            "param_bytes_by_dtype": dict(sorted(t.param_bytes_by_dtype.items())),
            "buffer_bytes": t.buffer_bytes,
            "macs": _number(t.macs),
            "ops": _ops(t.ops),
            "other_ops": _number(t.other_ops),
            "flops": _number(t.flops),
            "measured_macs": _number(t.measured_macs),
            "measured_flops": _number(t.measured_flops),
            **_checked(t.checked),
        },
        "closed_form": _closed_form(report),
        "uncounted_ops": dict(sorted(report.uncounted.items())),
        "uncalled_params": dict(sorted(report.uncalled.items())),
        "unchecked": [
            {"name": u.name, "type": u.type, "macs": _number(u.macs), "other_ops": _number(u.other_ops),
             "reason": u.reason}
            for u in report.unchecked
        ],
        "layers": [layer_record(report, row) for row in cells.visible_rows(report, depth)],
    }


def _inputs(report: Report) -> list[dict[str, Any]]:
    """Each input's shape, dtype and, for a keyword input, its keyword."""
    entries = []
    for i, shape in enumerate(report.input_shapes):
        entry: dict[str, Any] = {"shape": [_number(d) for d in shape]}
        if i < len(report.input_labels):
            label = report.input_labels[i]
            entry["dtype"] = label.dtype
            if label.keyword:
                entry["name"] = label.keyword
        entries.append(entry)
    return entries


def to_json(
    report: Report, depth: int | None = None, formulas: bool = False, evaluated: Sequence[Mapping[str, Any]] = (),
    as_convention: ConventionResult | Sequence[ConventionResult] | None = None,
) -> str:
    """The report as indented JSON. ``formulas`` is accepted for a uniform signature: JSON always has them.
    ``evaluated`` (from :func:`flopcalc.analyze.evaluate_at`) is added as ``"evaluated"`` when given;
    ``as_convention`` (one :class:`~flopcalc.conventions.ConventionResult`, or a list for ``all``) as
    ``"as_convention"``."""
    del formulas
    data = to_dict(report, depth)
    if evaluated:
        data["evaluated"] = list(evaluated)
    if isinstance(as_convention, ConventionResult):
        data["as_convention"] = as_convention.to_dict()
    elif as_convention is not None:
        data["as_convention"] = [result.to_dict() for result in as_convention]
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
