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
from typing import TYPE_CHECKING, Any

from flopcalc.facts import ModuleFacts, OpTally
from flopcalc.formula import CountTotals, Evaluation, Number
from flopcalc.inputs import InputLabel
from flopcalc.measure.core import Count
from flopcalc.memory import TrainingState
from flopcalc.registry import Bound
from flopcalc.symbolic import ClosedForm

if TYPE_CHECKING:
    from flopcalc.roofline import Roofline, RooflineTotals
    from flopcalc.timing import Timing

SCHEMA_VERSION = 1

_RULES = (
    "MACs = multiply-accumulates of conv, linear, matmul, attention and recurrent products (bias excluded); "
    "FLOPs = 2 × MACs + other ops (bias adds, norms, activations, pooling, softmax: one per scalar operation); "
)


def convention(training: bool = False, backward: bool = False) -> str:
    """The counting rules and the pass they were applied to, as every report states them."""
    counted = "training-mode forward pass (batch statistics, dropout)" if training else "inference forward pass"
    if backward:
        counted += " and its backward pass (gradients of every trainable parameter)"
    return f"{_RULES}{counted}."


CONVENTION = convention()


def frozen_mapping(mapping: Mapping[Any, Any]) -> Mapping[Any, Any]:
    """A read-only view of a private copy of ``mapping`` (the same object if it is one already)."""
    return mapping if isinstance(mapping, MappingProxyType) else MappingProxyType(dict(mapping))


def frozen_count(count: Count) -> Count:
    """``count`` with read-only ops (the same object if they are already)."""
    return count if isinstance(count.ops, MappingProxyType) else Count(count.macs, frozen_mapping(count.ops))


def _shapes(shapes: Any) -> tuple[tuple[Number, ...], ...]:
    return tuple(tuple(shape) for shape in shapes)


def _freeze_fields(instance: Any, **values: Any) -> None:
    """Set fields of a frozen dataclass (none of them has slots) in one update of its ``__dict__``."""
    vars(instance).update(values)


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
class LayerBackward(CountTotals):
    """A module call's backward pass (``analyze(..., backward=True)``).

    ``grad_input`` and ``grad_weight`` are the formula's counts where the layer family has a backward formula
    (a container sums its children's); ``None`` where only the total was measured. ``measured`` is what the
    call's autograd nodes and its children's executed; ``recompute`` the forward ops that activation
    checkpointing re-ran for them. ``flags`` are the formula's ``g_x`` (the input needs a gradient), ``g_W``
    and ``g_b`` (trainable weights, bias), and a recurrent cell's ``g_h`` (the state passed in needs one)."""

    grad_input: Count | None
    grad_weight: Count | None
    measured: Count
    recompute: Count
    status: Status
    mismatches: tuple[str, ...] = ()
    flags: Mapping[str, int] = field(default_factory=dict)
    uncounted: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _freeze_fields(
            self, grad_input=self.grad_input and frozen_count(self.grad_input),
            grad_weight=self.grad_weight and frozen_count(self.grad_weight),
            measured=frozen_count(self.measured), recompute=frozen_count(self.recompute),
            mismatches=tuple(self.mismatches), flags=frozen_mapping(self.flags),
            uncounted=frozen_mapping(self.uncounted),
        )

    @property
    def reported(self) -> Count:
        """The formula's grad-input + grad-weight where known, otherwise the measurement."""
        if self.grad_input is None or self.grad_weight is None:
            return self.measured
        return self.grad_input + self.grad_weight

    @property
    def macs(self) -> Number:  # type: ignore[override]
        return self.reported.macs

    @property
    def ops(self) -> Mapping[str, Number]:  # type: ignore[override]
        return self.reported.ops


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
    backward: LayerBackward | None = None
    output_bytes: Number = 0
    roofline: Roofline | None = None

    def __post_init__(self) -> None:
        _freeze_fields(
            self, children=tuple(self.children), input_shapes=_shapes(self.input_shapes),
            output_shapes=_shapes(self.output_shapes), ops=frozen_mapping(self.ops),
            measured=frozen_count(self.measured), measured_self=frozen_count(self.measured_self),
            mismatches=tuple(self.mismatches), uncounted=frozen_mapping(self.uncounted),
            op_tallies=frozen_mapping(self.op_tallies),
        )
        facts, bound, analytic = self.facts, self.bound, self.analytic
        if facts is not None and not isinstance(facts.attributes, MappingProxyType):
            _freeze_fields(self, facts=dataclasses.replace(facts, attributes=frozen_mapping(facts.attributes)))
        if bound is not None and not isinstance(bound.values, MappingProxyType):
            _freeze_fields(self, bound=Bound(bound.formula, frozen_mapping(bound.values)))
        if analytic is not None and not (isinstance(analytic.ops, MappingProxyType)
                                         and type(analytic.output_shape) is tuple):
            analytic = dataclasses.replace(
                analytic, ops=frozen_mapping(analytic.ops), output_shape=tuple(analytic.output_shape)
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
class MemoryTotals:
    """Memory of the pass (:mod:`flopcalc.memory`), in bytes.

    ``activation_peak_bytes``: the most the forward pass's tensors occupied at once (inputs, parameters and
    buffers excluded; with the backward pass this includes what autograd saves). ``saved_for_backward_bytes``:
    what autograd keeps from the forward for the backward pass (``None`` without it). ``training``: parameters,
    gradients, master weights and optimizer state for ``analyze(..., optimizer=...)``."""

    activation_peak_bytes: int | None
    saved_for_backward_bytes: int | None = None
    training: TrainingState | None = None


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
    backward: LayerBackward | None = None
    memory: MemoryTotals | None = None
    roofline: RooflineTotals | None = None

    @property
    def forward_macs(self) -> Number:
        return self.macs

    @property
    def backward_macs(self) -> Number | None:
        return self.backward.macs if self.backward else None

    @property
    def recompute_macs(self) -> Number | None:
        return self.backward.recompute.macs if self.backward else None

    @property
    def training_macs(self) -> Number | None:
        """Forward + backward + checkpointing recompute: the MACs of one training step."""
        return self.macs + self.backward.macs + self.backward.recompute.macs if self.backward else None

    @property
    def training_flops(self) -> Number | None:
        return self.flops + self.backward.flops + self.backward.recompute.flops if self.backward else None

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
    timing: Timing | None = None
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
    def backward_mismatches(self) -> tuple[LayerRow, ...]:
        """Rows whose backward formula disagrees with the measured backward pass."""
        return tuple(row for row in self.rows if row.backward is not None and row.backward.status is Status.MISMATCH)

    @property
    def ok(self) -> bool:
        """No formula disagrees with its measurement and no op went uncounted (backward pass included)."""
        backward_uncounted = self.totals.backward.uncounted if self.totals.backward else {}
        return not self.mismatches and not self.uncounted and not self.backward_mismatches and not backward_uncounted

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
