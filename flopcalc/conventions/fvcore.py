"""fvcore 0.1.5: per-op handles on a ``torch.jit.trace`` graph; its "flop" is one MAC.

Source: ``fvcore/nn/flop_count.py:26`` (``_DEFAULT_SUPPORTED_OPS``: addmm, bmm, _convolution, einsum, matmul,
mm, linear, batch_norm, group_norm, layer_norm, instance_norm, upsample_nearest2d, upsample_bilinear2d,
adaptive_avg_pool2d, grid_sampler); ``fvcore/nn/jit_handles.py:230`` (``norm_flop_counter``: 5 per element
with affine, else 4, "a rough estimate"), ``:251`` (``batchnorm_flop_jit``: at inference 2 per element with
affine, else 1), ``:261`` (``elementwise_flop_counter``). Every other op (``scaled_dot_product_attention``,
``baddbmm``, ``lstm``, ``gru``, ``rnn_tanh``, the fused MultiheadAttention kernels) is "unsupported" and
counts 0; the cells' ``lstm_cell`` and friends are traced as the linear products they are made of.

The trace records ops before they are decomposed, the dispatcher after, so three are recognised from their
context: ``scaled_dot_product_attention`` as the products of a call that ran ``_safe_softmax`` (its math
kernel) or of a MultiheadAttention call that returns no weights, an adaptive average pool by the module it
runs in, and batch/instance norms by their module type.
"""

from __future__ import annotations

import math

from flopcalc.conventions.base import Call, ConventionResult, Ledger, baseline_ledger, calls, nn_class
from flopcalc.report import Report

PRODUCTS = frozenset({"aten.mm", "aten.addmm", "aten.bmm", "aten.convolution", "aten._convolution"})
BATCH_NORM_OPS = frozenset({"aten.native_batch_norm", "aten._native_batch_norm_legit_no_training",
                            "aten._native_batch_norm_legit", "aten.batch_norm"})
INSTANCE_NORM = nn_class("instancenorm._InstanceNorm")
ADAPTIVE_AVG_POOL_2D = nn_class("pooling.AdaptiveAvgPool2d")
MHA = nn_class("activation.MultiheadAttention")
RECURRENT = nn_class("rnn.RNNBase")
FAST_PATHS = frozenset({"aten._native_multi_head_attention", "aten._transformer_encoder_layer_fwd"})


def _runs_sdpa(call: Call) -> bool:
    """The call's products belong to scaled_dot_product_attention (unsupported by fvcore)."""
    if "aten._safe_softmax" in call.row.op_tallies:
        return True
    return call.facts.derives_from(*MHA) and len(call.row.output_shapes) < 2


def _attention_core(batch_first: bool, query: tuple[int, ...], key: tuple[int, ...], embed: int) -> int:
    """q.k and attention.v MACs of one multi-head attention: 2 x batch x L x S x E."""
    if len(query) == 2:
        batch, length, source = 1, query[0], key[0]
    elif batch_first:
        batch, length, source = query[0], query[1], key[1]
    else:
        batch, length, source = query[1], query[0], key[0]
    return 2 * batch * length * source * embed


def _fast_path(call: Call, name: str, ledger: Ledger) -> None:
    """fvcore traces with autograd on, so MultiheadAttention and TransformerEncoderLayer take their decomposed
    path there: the projections and feed-forward count as linear, the attention core (SDPA) is missed and each
    of the layer's two norms counts 5 per element."""
    shapes = call.row.input_shapes
    query = tuple(int(d) for d in shapes[0])
    if name == "aten._native_multi_head_attention":
        key = tuple(int(d) for d in shapes[1]) if len(shapes) > 1 else query
        core = _attention_core(bool(call.facts.get("batch_first")), query, key, int(call.facts.get("embed_dim")))
    else:  # the encoder layer's fast path requires batch_first
        core = _attention_core(True, query, query, query[-1])
        ledger.add("layer_norm 5 per element with affine, else 4 ('a rough estimate')", 2 * 5 * math.prod(query))
    ledger.add("scaled_dot_product_attention unsupported: q.k and attention.v missed", -core, blind=True)


def fvcore(report: Report) -> ConventionResult:
    ledger, baseline = baseline_ledger(report)
    for call in calls(report):
        f = call.facts
        if f.derives_from(*RECURRENT):  # traced as one aten::lstm/gru/rnn_tanh op, which has no handle
            ledger.add(f"{f.type}: its aten op is unsupported (counted as 0)", -call.own_macs, blind=True)
            continue
        sdpa = _runs_sdpa(call)
        affine = bool(f.get("affine", f.get("elementwise_affine", True)))
        for name, tally in call.ops():
            macs = int(tally.count.macs)
            if name in FAST_PATHS:
                _fast_path(call, name, ledger)
            elif sdpa and name == "aten.bmm":
                ledger.add("scaled_dot_product_attention unsupported: q.k and attention.v missed", -macs, blind=True)
            elif name in PRODUCTS:
                continue
            elif name in BATCH_NORM_OPS and f.derives_from(*INSTANCE_NORM):
                ledger.add("instance_norm 5 per element with affine, else 4", tally.input_elements * (5 if affine else 4))
            elif name in BATCH_NORM_OPS:
                if f.get("training"):
                    ledger.add("batch_norm (training) 5 per element with affine, else 4",
                               tally.input_elements * (5 if affine else 4))
                else:
                    ledger.add("batch_norm (eval) 2 per element with affine, else 1",
                               tally.input_elements * (2 if affine else 1))
            elif name in ("aten.native_layer_norm", "aten.native_group_norm"):
                kind = name.removeprefix("aten.native_")
                ledger.add(f"{kind} 5 per element with affine, else 4 ('a rough estimate')",
                           tally.input_elements * (5 if affine else 4))
            elif name in ("aten.upsample_nearest2d", "aten._upsample_nearest_exact2d"):
                ledger.add("upsample_nearest2d 1 per output element", tally.output_elements)
            elif name == "aten.upsample_bilinear2d":
                ledger.add("upsample_bilinear2d 4 per output element", 4 * tally.output_elements)
            elif name == "aten.grid_sampler_2d":
                ledger.add("grid_sampler 4 per output element", 4 * tally.output_elements)
            elif name == "aten._adaptive_avg_pool2d" or (name == "aten.mean" and f.derives_from(*ADAPTIVE_AVG_POOL_2D)):
                ledger.add("adaptive_avg_pool2d 1 per input element", tally.input_elements)
            elif name == "aten.mean":  # F.adaptive_avg_pool2d(x, 1) is a mean with keepdim
                ledger.add("adaptive_avg_pool2d 1 per input element", tally.pooled_input_elements)
            elif macs:
                ledger.add(f"{name} unsupported (counted as 0)", -macs, blind=True)
    return ledger.result("fvcore", "fvcore 0.1.5", "MACs", baseline)
