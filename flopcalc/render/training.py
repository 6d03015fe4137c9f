"""The training views' cells (``--backward``, ``--memory``, ``--hardware``, ``--time``): each row's backward
split, bytes and roofline, and measured time, and the totals lines that explain them. :mod:`flopcalc.render.cells`
adds them to every format's table and totals block."""

from __future__ import annotations

from flopcalc.render.units import Rate, Ratio, Seconds, fmt_bytes, fmt_count, fmt_rate, fmt_scaled, fmt_seconds
from flopcalc.report import LayerBackward, LayerRow, Report
from flopcalc.roofline import Roofline
from flopcalc.memory import OPTIMIZER_STATES
from flopcalc.timing import achieved, flop_utilisation, timed_elsewhere

UNCOUNTED_MARK = "*"


def row_values(report: Report, row: LayerRow) -> dict[str, object]:
    """The training columns of one row (a ``(self)`` row: of its call's own work), keyed like the columns."""
    values: dict[str, object] = {}
    if report.totals.memory is not None:
        values["output_bytes"] = None if row.is_own else row.output_bytes  # a (self) row outputs nothing
    if row.backward is not None:
        values.update(backward_values(row.backward))
    if row.roofline is not None:
        values.update(roofline_values(row.roofline))
    if report.timing is not None:
        values.update(timing_values(report, row))
    return values


def total_values(report: Report) -> dict[str, object]:
    """The training columns of the table's total line: the model's."""
    t = report.totals
    values: dict[str, object] = {}
    if t.backward is not None:
        values.update(backward_values(t.backward), backward_status="")
    if t.roofline is not None:
        values.update(roofline_values(t.roofline.model))
    if report.timing is not None and report.rows:
        values.update(timing_values(report, report.rows[0]))
    return values


def timing_values(report: Report, row: LayerRow) -> dict[str, object]:
    """The timing columns of one row: median seconds, achieved FLOP/s and % of the roofline time."""
    seconds = report.timing.of(row) if report.timing else None
    rate, of_roofline = achieved(report, row)
    return {
        "time": Seconds(seconds) if seconds is not None else None,
        "achieved": Rate(rate) if rate is not None else None,
        "of_roofline": Ratio(of_roofline) if of_roofline is not None else None,
    }


def roofline_values(roofline: Roofline) -> dict[str, object]:
    """The roofline columns of one row (or of the totals)."""
    return {
        "bytes_moved": roofline.bytes,
        "intensity": Ratio(roofline.intensity) if roofline.intensity is not None else None,
        "roofline_time": Seconds(roofline.time_s),
        "bound": roofline.bound,
    }


def backward_values(backward: LayerBackward) -> dict[str, object]:
    """The backward columns of one row (or of the totals); a split the formula does not give is ``None``."""
    return {
        "grad_input_macs": backward.grad_input.macs if backward.grad_input is not None else None,
        "grad_weight_macs": backward.grad_weight.macs if backward.grad_weight is not None else None,
        "backward_other_ops": backward.other_ops,
        "recompute_macs": backward.recompute.macs,
        "backward_status": backward.status.value + (UNCOUNTED_MARK if backward.uncounted else ""),
    }


def timing_items(report: Report) -> list[tuple[str, str]]:
    """The measured forward time and, with a roofline, the model's FLOP utilisation."""
    timing = report.timing
    if timing is None:
        return []
    items = [("Measured time", f"{fmt_seconds(timing.total_s)} per forward on {timing.device} (median of "
                               f"{timing.repeats} runs after {timing.warmup} warm-up)")]
    utilisation = flop_utilisation(report)
    if utilisation is not None:
        rate = report.totals.flops / timing.total_s if isinstance(report.totals.flops, int) else 0
        roofline = report.totals.roofline
        text = f"{utilisation:.2f}% = {fmt_rate(rate, 'FLOP/s')} of the {roofline.peak / 1e12:,.4g} TFLOP/s peak"
        if timed_elsewhere(report):
            text += (f" of {roofline.hardware.name}, but timed on {timing.device}: not a utilisation of either "
                     f"device; time on the device you name, or name --hardware {timing.device}")
        items.append(("FLOP utilisation", text))
    return items


def roofline_items(report: Report) -> list[tuple[str, str]]:
    """The device, its peak and bandwidth, and the model's roofline time, when a roofline was asked for."""
    roofline = report.totals.roofline
    if roofline is None:
        return []
    hw, model = roofline.hardware, roofline.model
    return [
        ("Hardware", f"{hw.name}: {roofline.dtype} peak {roofline.peak / 1e12:,.4g} TFLOP/s, "
                     f"{hw.bandwidth / 1e12:,.4g} TB/s" + (f"; {hw.source}" if hw.source else "")),
        ("Bytes moved", f"{model.bytes:,} B (each op reads its inputs and writes its outputs once)"),
        ("Roofline time", f"{fmt_seconds(model.time_s)} = Σ per layer max(FLOPs / peak, bytes / bandwidth); "
                          f"compute {fmt_seconds(model.compute_s)}, memory {fmt_seconds(model.memory_s)}, "
                          f"mostly {model.bound}-bound"),
    ]


def memory_items(report: Report) -> list[tuple[str, str]]:
    """Activation peak, bytes kept for backward and the training state, when the report tracked memory."""
    memory = report.totals.memory
    if memory is None:
        return []
    items = []
    if memory.activation_peak_bytes is not None:
        items.append(("Activation peak", fmt_bytes(memory.activation_peak_bytes) + " (tensors alive at once "
                      "during the forward pass; inputs and parameters excluded)"))
    if memory.saved_for_backward_bytes is not None:
        items.append(("Kept for backward", fmt_bytes(memory.saved_for_backward_bytes) + " (activations "
                      "autograd saves for the backward pass)"))
    state = memory.training
    if state is not None:
        master = f" + float32 master weights {state.master_bytes:,} B" if state.master_bytes else ""
        items.append(("Training state", fmt_bytes(state.total_bytes) + f" = params {state.param_bytes:,} B + "
                      f"gradients {state.grad_bytes:,} B{master} + {state.optimizer} state "
                      f"{state.optimizer_bytes:,} B ({state.states_per_param} float32 per trainable param: "
                      f"{OPTIMIZER_STATES[state.optimizer].kept})"))
    return items


def training_items(report: Report) -> list[tuple[str, str]]:
    """With the backward pass: forward, backward (grad-input + grad-weight), recompute and the training step,
    and how the step compares with the forward (the ×3 that "6·N·D" assumes)."""
    t = report.totals
    b = t.backward
    if b is None:
        return []
    split = ""
    if b.grad_input is not None and b.grad_weight is not None:
        split = f" = grad-input {fmt_count(b.grad_input.macs)} + grad-weight {fmt_count(b.grad_weight.macs)}"
    items = [
        ("Forward", fmt_scaled(t.macs, "MACs")),
        ("Backward", fmt_scaled(b.macs, "MACs") + split + f"; {fmt_scaled(b.flops, 'FLOPs')}"),
    ]
    if b.recompute.macs or b.recompute.ops:
        items.append(("Recompute", fmt_scaled(b.recompute.macs, "MACs") + " (forward re-run by activation "
                      f"checkpointing; {fmt_scaled(b.recompute.flops, 'FLOPs')})"))
    training = t.training_macs
    ratio = f"{training / t.macs:.2f}× the forward MACs" if isinstance(training, int) and t.macs else ""
    items += [
        ("Training step", f"{fmt_scaled(training, 'MACs')} ({ratio}; 6·N·D assumes 3×), "
                          f"{fmt_scaled(t.training_flops, 'FLOPs')}"),
        ("Measured bwd", f"{fmt_count(b.measured.macs)} MACs, {fmt_count(b.measured.flops)} FLOPs (aten ops "
                         "autograd executed)"),
    ]
    return items


def notes(report: Report) -> list[tuple[str, str]]:
    """Backward formulas that disagree with the measured backward pass, and backward ops without a rule."""
    found = []
    for row in report.rows:
        if row.backward is not None and row.backward.mismatches:
            found.append(("Mismatch", f"{row.name or report.model} ({row.type}) backward: "
                          f"{'; '.join(row.backward.mismatches)}"))
    backward_uncounted = report.totals.backward.uncounted if report.totals.backward else {}
    if backward_uncounted:
        listed = ", ".join(f"{op} ×{n}" for op, n in sorted(backward_uncounted.items()))
        found.append(("Uncounted ops", f"backward: {listed} (no counting rule; backward counts are lower bounds)"))
    return found


def items(report: Report) -> list[tuple[str, str]]:
    """The totals block's training lines: forward/backward/step, memory, roofline and measured time."""
    return training_items(report) + memory_items(report) + roofline_items(report) + timing_items(report)
