"""The result of an analysis: immutable rows (one per module call) and totals. Renderers only read it.

Immutable all the way down: every mapping a report holds (``ops``, ``uncounted``, bound values, ...) is a
read-only ``MappingProxyType`` over a private copy and every sequence a tuple, so a report handed to several
renderers, tests or threads cannot be changed by any of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from flopcalc.facts import ModuleFacts, OpTally
from flopcalc.formula import CountTotals, Evaluation, Number
from flopcalc.inputs import InputLabel
from flopcalc.measure.core import Count
from flopcalc.registry import Bound
from flopcalc.symbolic import ClosedForm

SCHEMA_VERSION = 1

CONVENTION = (
    "MACs = multiply-accumulates of conv, linear, matmul, attention and recurrent products (bias excluded); "
    "FLOPs = 2 × MACs + other ops (bias adds, norms, activations, pooling, softmax: one per scalar operation); "
    "inference forward pass."
)


def frozen_mapping(mapping: Mapping[Any, Any]) -> Mapping[Any, Any]:
    """A read-only view of a private copy of ``mapping`` (the same object if it is one already)."""
    return mapping if isinstance(mapping, MappingProxyType) else MappingProxyType(dict(mapping))


def _shapes(shapes: Any) -> tuple[tuple[Number, ...], ...]:
    return tuple(tuple(shape) for shape in shapes)


def _freeze_fields(instance: Any, **values: Any) -> None:
    for name, value in values.items():
        object.__setattr__(instance, name, value)


class Status(StrEnum):
    """How a row's formula compares with what the forward pass executed."""

    MATCH = "match"  # formula and measurement agree on params, buffers, MACs, other ops and output shape;
    # for a container: no work of its own and every child call matches
    MISMATCH = "mismatch"  # both exist and disagree; ``LayerRow.mismatches`` says where
    MEASURED_ONLY = "measured-only"  # no formula for (part of) this call: that part's count is the measured one
    FORMULA_ONLY = "formula-only"  # the measurement is incomplete (an uncounted op ran inside)


@dataclass(frozen=True)
class Checked:
    """How much of a count a matching formula stands behind: ``macs`` and ``other_ops`` of it are checked.

    A row whose formula matches its measurement is checked whole; a row without a formula is checked as far
    as its children are (its own work is not); a row whose formula disagrees, or whose measurement is
    incomplete, not at all. The shares are 0..1, ``None`` when there is nothing to check; for a closed form
    they are taken at the sizes the pass was traced at.
    """

    macs: Number
    other_ops: Number
    macs_share: float | None
    ops_share: float | None


@dataclass(frozen=True)
class Unchecked:
    """Work no matching formula stands behind: a row's own work outside its children, or a whole row whose
    formula disagrees with (or could not be checked against) its measurement."""

    name: str
    type: str
    macs: Number
    other_ops: Number
    reason: str


@dataclass(frozen=True)
class LayerRow(CountTotals):
    """One module call, or one functional call (``function``: ``"F.linear"``, ...) made by its parent's module.
    ``macs``/``ops`` are the reported counts: the formula's where there is one, otherwise the measured ops of
    this call plus the reported counts of its children; ``checked`` says how much of them a matching formula
    stands behind."""

    index: int
    name: str
    type: str
    depth: int
    parent: int | None
    children: tuple[int, ...]
    input_shapes: tuple[tuple[Number, ...], ...]
    output_shapes: tuple[tuple[Number, ...], ...]
    params: Number
    macs: Number
    ops: Mapping[str, Number]
    measured: Count
    measured_self: Count
    status: Status
    bound: Bound | None = None
    analytic: Evaluation | None = None
    mismatches: tuple[str, ...] = ()
    uncounted: Mapping[str, int] = field(default_factory=dict)
    facts: ModuleFacts | None = None
    """The called module's class lineage, hyperparameters and parameter names (concrete reports)."""
    op_tallies: Mapping[str, OpTally] = field(default_factory=dict)
    """The aten ops this call executed itself (not its children), by op (concrete reports)."""
    checked: Checked | None = None
    function: str | None = None
    own: LayerRow | None = None
    """The work this call's own forward does outside its child calls (a residual add, ``q @ k.T``), as a row
    of its own, so that the children plus ``own`` add up to this row; None when there is none."""
    is_own: bool = False
    """True for an ``own`` row: its ``index`` and ``parent`` are the call whose forward did the work."""

    def __post_init__(self) -> None:
        _freeze_fields(
            self, children=tuple(self.children), input_shapes=_shapes(self.input_shapes),
            output_shapes=_shapes(self.output_shapes), ops=frozen_mapping(self.ops),
            measured=Count(self.measured.macs, frozen_mapping(self.measured.ops)),
            measured_self=Count(self.measured_self.macs, frozen_mapping(self.measured_self.ops)),
            mismatches=tuple(self.mismatches), uncounted=frozen_mapping(self.uncounted),
            op_tallies=frozen_mapping(self.op_tallies),
        )
        if self.facts is not None:
            facts = dataclasses.replace(self.facts, attributes=frozen_mapping(self.facts.attributes))
            _freeze_fields(self, facts=facts)
        if self.bound is not None:
            _freeze_fields(self, bound=Bound(self.bound.formula, frozen_mapping(self.bound.values)))
        if self.analytic is not None:
            analytic = dataclasses.replace(
                self.analytic, ops=frozen_mapping(self.analytic.ops), output_shape=tuple(self.analytic.output_shape)
            )
            _freeze_fields(self, analytic=analytic)

    @property
    def measured_macs(self) -> Number:
        return self.measured.macs

    @property
    def is_function(self) -> bool:
        """A functional call (``F.linear``, ``torch.matmul``, ...) made by the module of its parent row."""
        return self.function is not None

    @property
    def formula_name(self) -> str | None:
        return self.bound.formula.name if self.bound else None

    @property
    def is_leaf(self) -> bool:
        return not self.children


@dataclass(frozen=True)
class Totals(CountTotals):
    """Whole-model counts. ``non_trainable_params`` is Keras' figure: frozen parameters plus floating-point
    buffers (BatchNorm running mean and variance); ``buffers`` counts every buffer element."""

    params: int
    trainable_params: int
    frozen_params: int
    non_trainable_params: int
    buffers: int
    param_bytes: int
    param_bytes_by_dtype: Mapping[str, int]
    buffer_bytes: int
    macs: Number
    ops: Mapping[str, Number]
    measured_macs: Number
    measured_flops: Number
    checked: Checked | None = None

    def __post_init__(self) -> None:
        by_dtype = frozen_mapping(self.param_bytes_by_dtype)
        _freeze_fields(self, ops=frozen_mapping(self.ops), param_bytes_by_dtype=by_dtype)

    @property
    def keras_total_params(self) -> int:
        """Keras' 'Total params': trainable plus non-trainable."""
        return self.trainable_params + self.non_trainable_params


@dataclass(frozen=True)
class Report:
    """What :func:`flopcalc.analyze` returns. ``unchecked`` is the work no matching formula stands behind,
    largest first (MACs, then other ops); ``totals.checked`` says how much of the totals one does."""

    model: str
    input_shapes: tuple[tuple[Number, ...], ...]
    device: str
    rows: tuple[LayerRow, ...]
    totals: Totals
    uncounted: Mapping[str, int]
    uncalled: Mapping[str, int]
    closed_form: ClosedForm | None = None
    unchecked: tuple[Unchecked, ...] = ()
    input_labels: tuple[InputLabel, ...] = ()
    """Per input shape: the keyword it was passed as (``""`` when positional) and its dtype."""
    convention: str = CONVENTION
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        _freeze_fields(
            self, input_shapes=_shapes(self.input_shapes), rows=tuple(self.rows),
            uncounted=frozen_mapping(self.uncounted), uncalled=frozen_mapping(self.uncalled),
            unchecked=tuple(self.unchecked), input_labels=tuple(self.input_labels),
        )
        closed = self.closed_form
        if closed is not None and not isinstance(closed.hints, MappingProxyType):
            # Replaced once (not by a copy of this report), so the closed form keeps what it compiled and scanned.
            closed_form = dataclasses.replace(
                closed, expressions=frozen_mapping(closed.expressions), conditions=tuple(closed.conditions),
                hints=frozen_mapping(closed.hints),
            )
            _freeze_fields(self, closed_form=closed_form)

    @property
    def is_symbolic(self) -> bool:
        return self.closed_form is not None

    def evaluate(self, **values: int) -> dict[str, int]:
        """Totals of a symbolic report at one point, e.g. ``report.evaluate(H=224, W=224)["macs"]``."""
        if self.closed_form is None:
            raise ValueError("this report has concrete counts; name a dimension (e.g. (1, 3, 'H', 'W')) for a closed form")
        return self.closed_form.evaluate(**values)

    def __iter__(self) -> Iterator[LayerRow]:
        return iter(self.rows)

    def row(self, name: str) -> LayerRow:
        """The first call of the module with qualified name ``name`` (``""`` is the model itself)."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no module call named {name!r}")

    @property
    def leaves(self) -> tuple[LayerRow, ...]:
        return tuple(row for row in self.rows if row.is_leaf)

    @property
    def mismatches(self) -> tuple[LayerRow, ...]:
        return tuple(row for row in self.rows if row.status is Status.MISMATCH)

    @property
    def ok(self) -> bool:
        """No formula disagrees with its measurement and no op went uncounted."""
        return not self.mismatches and not self.uncounted

    def as_convention(self, name: str) -> Any:
        """What counter ``name`` (``thop``, ``fvcore``, ``torch``, ...; see :mod:`flopcalc.conventions`) would
        print for this model and input, with the differences from flopcalc's count by rule."""
        from flopcalc.conventions import apply

        return apply(self, name)

    def __rich__(self) -> Any:
        from flopcalc.render.console import to_rich

        return to_rich(self)

    def _repr_html_(self) -> str:
        """The HTML tables, so that a notebook shows the report as a table."""
        from flopcalc.render.html import html_fragment

        return html_fragment(self)

    def __repr__(self) -> str:
        """One line: model, input, params, MACs and status; ``print(report.rows)`` or ``rich.print(report)``
        show the rest."""
        shapes = ", ".join("x".join(str(d) for d in shape) for shape in self.input_shapes) or "no tensor inputs"
        t = self.totals
        names = ", ".join(self.closed_form.hints) if self.closed_form else ""
        macs = f"{t.macs:,} MACs" if isinstance(t.macs, int) else f"MACs a closed form in {names}"
        if self.mismatches:
            status = f"{len(self.mismatches)} mismatch(es)"
        elif self.uncounted:
            status = f"{sum(self.uncounted.values())} uncounted op call(s)"
        else:
            status = "every formula matches"
        return f"<Report {self.model}: input {shapes}, {t.params:,} params, {macs}, {len(self.rows)} calls; {status}>"
