"""Counters that, like flopcalc's measurement, see the aten ops the dispatcher runs: FlopCounterMode and
ptflops' aten backend. Their numbers come straight from the per-op record, op by op.

Sources: torch 2.14.1 ``torch/utils/flop_counter.py:822`` (``flop_registry``: the ops counted; ``mm_flop``
``:159`` 2 FLOPs per MAC, ``addmm_flop`` ``:172`` ignores the added matrix, ``conv_flop_count`` counts a
transposed conv by input volume); ptflops 0.7.5 ``ptflops/aten_ops.py`` (``ATEN_OPS_MAPPING`` at the end of the
file: mm, matmul, addmm, bmm, convolution; ``addmm_flop`` and ``conv_flop_count`` add the bias per output).
"""

from __future__ import annotations

from flopcalc.conventions.base import ConventionResult, baseline_ledger, calls
from flopcalc.report import Report

FLOP_COUNTER_MODE_OPS = frozenset({
    "aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm", "aten._scaled_mm", "aten.convolution",
    "aten._convolution", "aten.cudnn_convolution", "aten.convolution_overrideable", "aten._slow_conv2d_forward",
    "aten._scaled_dot_product_efficient_attention", "aten._scaled_dot_product_flash_attention",
    "aten._scaled_dot_product_cudnn_attention", "aten._flash_attention_forward", "aten._efficient_attention_forward",
})

PTFLOPS_ATEN_OPS = frozenset({"aten.mm", "aten.addmm", "aten.bmm", "aten.convolution", "aten._convolution"})
PTFLOPS_BIAS_OPS = frozenset({"aten.addmm", "aten.convolution", "aten._convolution"})


def flop_counter_mode(report: Report) -> ConventionResult:
    """torch.utils.flop_counter.FlopCounterMode: 2 FLOPs per MAC of the products in its registry, nothing else."""
    ledger, baseline = baseline_ledger(report, per_mac=2)
    for call in calls(report):
        for name, tally in call.ops():
            if name not in FLOP_COUNTER_MODE_OPS and tally.count.macs:
                ledger.add(f"{name} has no flop formula (counted as 0)", -2 * int(tally.count.macs), blind=True)
    return ledger.result("torch", f"torch.utils.flop_counter.FlopCounterMode on {report.device}", "FLOPs", baseline)


def ptflops_aten(report: Report) -> ConventionResult:
    """ptflops 0.7.5, aten backend: MACs of mm, bmm, addmm and convolution, each bias add counted as a MAC."""
    ledger, baseline = baseline_ledger(report)
    for call in calls(report):
        for name, tally in call.ops():
            if name in PTFLOPS_BIAS_OPS:
                ledger.add("bias adds counted as MACs (convolution, addmm)", tally.count.ops.get("bias_add", 0))
            if name not in PTFLOPS_ATEN_OPS and tally.count.macs:
                ledger.add(f"{name} not in its op table (counted as 0)", -int(tally.count.macs), blind=True)
    return ledger.result("ptflops-aten", f"ptflops 0.7.5, aten backend, on {report.device}", "MACs", baseline)
