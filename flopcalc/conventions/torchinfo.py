"""torchinfo 1.8.0: "Mult-Adds" derived from parameter counts, per call of a leaf module.

Source: ``torchinfo/layer_info.py:225`` (``LayerInfo.calculate_macs``): for a parameter named ``weight`` or
``bias``, a class whose name contains ``Conv`` multiplies it by the output's batch and spatial size, any other
class by the batch only; other parameters whose names contain weight/bias (RNN ``weight_ih_l0``) by batch x
the output's second dimension. ``torchinfo/model_statistics.py:31`` sums ``macs`` over leaf layers only (no
child modules), so work done by a module that has children (MultiheadAttention, whose ``out_proj`` is a child)
or without parameters is 0. The output size is the first tensor of the output (``layer_info.py:320``).
"""

from __future__ import annotations

import math

from flopcalc.conventions.base import Call, ConventionResult, baseline_ledger, calls
from flopcalc.report import Report


def _macs(call: Call) -> int:
    out = call.output_shape
    total = 0
    for name, numel in call.facts.parameters:
        if name in ("weight", "bias"):
            if "Conv" in call.facts.type:
                total += numel * math.prod(out[:1] + out[2:])
            else:
                total += (out[0] if out else 0) * numel
        elif "weight" in name or "bias" in name:
            total += math.prod(out[:2]) * numel
    return total


def torchinfo(report: Report) -> ConventionResult:
    ledger, baseline = baseline_ledger(report)
    for call in calls(report):
        if not call.facts.leaf:
            ledger.add(f"{call.facts.type}: has child modules, its own work is not counted", -call.own_macs,
                       blind=True)
            continue
        if not call.facts.parameters:
            ledger.add(f"{call.facts.type}: no parameters, counted as 0", -call.own_macs, blind=True)
            continue
        counted = _macs(call)
        if "Conv" in call.facts.type:
            ledger.add("Conv: params x output positions (so the bias add counts as a MAC)", counted - call.own_macs)
        else:
            ledger.add("other layers with parameters: params x batch, not per position", counted - call.own_macs)
    return ledger.result("torchinfo", "torchinfo 1.8.0", "MACs", baseline)
