"""What a convention is, what applying one gives, and the walk over a report's module calls they share.

A :class:`Convention` turns one concrete :class:`~flopcalc.report.Report` into the number another counter (or
a paper's formula) would print for the same model and input, without running the model again: it reads the
per-call :class:`~flopcalc.facts.ModuleFacts` and per-op :class:`~flopcalc.facts.OpTally` records. Each peer
counts per module call or per op, so its number is flopcalc's count plus a labelled adjustment per call or op;
the labelled sums are the *differences*, and the ones that drop work the peer does not see are its *blind spots*.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from flopcalc.errors import InputError
from flopcalc.facts import ModuleFacts
from flopcalc.report import LayerRow, Report

Unit = Literal["MACs", "FLOPs"]


@dataclass(frozen=True)
class Difference:
    """One rule of the convention and what it adds to (or, negative, removes from) flopcalc's count."""

    rule: str
    amount: int


@dataclass(frozen=True)
class ConventionResult:
    """The number a counter would print, and why it differs from flopcalc's.

    ``value`` is in ``unit``; ``baseline`` is flopcalc's count in the same unit (its MACs, or 2 x MACs for a
    FLOPs unit), so ``value == baseline + sum of the differences``. ``also`` holds the tool's second headline
    figure, with its own differences, where it prints two (flopcalc, DeepSpeed and calflops print MACs and
    FLOPs).
    """

    name: str
    tool: str
    value: int
    unit: Unit
    baseline: int
    differences: tuple[Difference, ...]
    blind_spots: tuple[str, ...]
    also: tuple[ConventionResult, ...] = ()
    notes: tuple[str, ...] = ()
    """What a formula convention read from the model (its N, L, s, ...), for the reader to check."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``as_convention`` in docs/json-schema.md)."""
        return {
            "name": self.name,
            "tool": self.tool,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline,
            "differences": [{"rule": d.rule, "amount": d.amount} for d in self.differences],
            "blind_spots": list(self.blind_spots),
            "also": [second.to_dict() for second in self.also],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Convention:
    """A named convention: the tool it reproduces, its unit, where its rules come from, and the rules."""

    name: str
    tool: str
    unit: Unit
    source: str
    rules: tuple[str, ...]
    apply: Callable[[Report], ConventionResult]
    language_model: bool = False
    """Needs a language model's hyperparameters (token embedding, attention layers)."""


class Ledger:
    """Labelled adjustments to flopcalc's count, collected call by call and op by op."""

    def __init__(self) -> None:
        self.terms: dict[str, int] = {}
        self.blind: dict[str, int] = {}

    def add(self, rule: str, amount: float, blind: bool = False) -> None:
        """Add ``amount`` under ``rule``; ``blind`` marks work the tool does not see (listed as a blind spot)."""
        if not amount:
            return
        amount = int(amount)
        self.terms[rule] = self.terms.get(rule, 0) + amount
        if blind:
            self.blind[rule] = self.blind.get(rule, 0) + amount

    def total(self) -> int:
        """The sum of the adjustments so far (a call's share is the change of this across the call)."""
        return sum(self.terms.values())

    def count_per_parent(self, call: Call, counted: int, hooked_per_path: bool = False) -> None:
        """For a counter that sums its per-module totals parent by parent through ``children()``: a module held
        by several parents counts once per path to it (``counted`` is this call's count, in the ledger's unit).
        ``hooked_per_path``: the counter also registers its hook once per path (``Module.apply`` visits a shared
        module once per parent), so each call is counted that many times over as well."""
        paths = call.facts.tree_paths
        if paths > 1:
            times = paths * paths if hooked_per_path else paths
            rule = "hooked once per path (Module.apply) and summed once per parent" if hooked_per_path \
                else "counted once per parent"
            self.add(f"a module held by several parents {rule}", (times - 1) * counted)

    def result(self, convention_name: str, tool: str, unit: Unit, baseline: int,
               also: tuple[ConventionResult, ...] = (), notes: tuple[str, ...] = ()) -> ConventionResult:
        differences = tuple(Difference(rule, amount) for rule, amount in self.terms.items() if amount)
        blind = tuple(f"{rule}: {amount:+,} {unit}" for rule, amount in self.blind.items() if amount)
        value = baseline + sum(d.amount for d in differences)
        return ConventionResult(convention_name, tool, value, unit, baseline, differences, blind, also, notes)


@dataclass(frozen=True)
class Call:
    """A module call as a convention walks it: the row, its module's facts and its ancestors' facts."""

    row: LayerRow
    facts: ModuleFacts
    ancestors: tuple[ModuleFacts, ...]

    @property
    def own_macs(self) -> int:
        """MACs of the ops this call executed itself (not its child modules'; its functional calls' included)."""
        return sum(int(tally.count.macs) for tally in self.row.op_tallies.values())

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.row.input_shapes[0]) if self.row.input_shapes else ()

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.row.output_shapes[0]) if self.row.output_shapes else ()

    @property
    def input_elements(self) -> int:
        return math.prod(self.input_shape) if self.row.input_shapes else 0

    @property
    def output_elements(self) -> int:
        return math.prod(self.output_shape) if self.row.output_shapes else 0

    @property
    def bare_addmm(self) -> bool:
        """The call ran ``addmm`` without transposing a weight (``aten.t``): ``torch.addmm`` itself, as
        transformers' Conv1D calls it, which counters patch apart from ``F.linear`` (whose addmm comes with the
        transpose of its weight)."""
        return "aten.addmm" in self.row.op_tallies and "aten.t" not in self.row.op_tallies

    def holds(self, functional: str) -> bool:
        """The module keeps ``F.<functional>`` as an attribute, taken before any counter patched it."""
        return functional in self.facts.held_functionals

    def ops(self, *names: str) -> Iterator[tuple[str, Any]]:
        """The op tallies of this call for the given op names (``aten.mm``, ...); all of them when none given."""
        for name, tally in self.row.op_tallies.items():
            if not names or name in names:
                yield name, tally


def calls(report: Report) -> Iterator[Call]:
    """Every module call of a concrete report, parents before children, with its ancestors' facts. Functional
    call rows are left out: their ops are in their module's tallies."""
    lineage: dict[int, tuple[ModuleFacts, ...]] = {}
    for row in report.rows:
        if row.function is not None:
            continue
        if row.facts is None:
            raise InputError(f"the report has no module facts for {row.name or report.model!r}; "
                             "analyse the model with this flopcalc version")
        ancestors = () if row.parent is None else (*lineage[row.parent], report.rows[row.parent].facts)
        lineage[row.index] = ancestors  # type: ignore[assignment]
        yield Call(row, row.facts, ancestors)  # type: ignore[arg-type]


def baseline_ledger(report: Report, per_mac: int = 1) -> tuple[Ledger, int]:
    """A ledger and the baseline it starts from: flopcalc's reported MACs (times ``per_mac`` for a FLOPs unit).
    Conventions are applied to the measured per-op record, so any gap between flopcalc's formulas and its
    measurement is the ledger's first entry."""
    ledger = Ledger()
    gap = int(report.totals.measured_macs) - int(report.totals.macs)
    ledger.add("flopcalc's per-op measurement where it differs from its formulas", per_mac * gap)
    return ledger, per_mac * int(report.totals.macs)


def nn_class(*names: str) -> tuple[str, ...]:
    """Qualified names of torch.nn classes, e.g. ``nn_class("conv.Conv2d")`` -> ``torch.nn.modules.conv.Conv2d``."""
    return tuple(f"torch.nn.modules.{name}" for name in names)
