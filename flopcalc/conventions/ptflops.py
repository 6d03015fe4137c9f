"""ptflops 0.7.5, pytorch backend (its default): a hook per module of an exact type, plus monkey-patched ``F.*``
and ``torch.*`` functions counted wherever they run, inside a hooked module too (so some work counts twice).

Sources: ``ptflops/pytorch_ops.py`` (``MODULES_MAPPING``, the module hooks, ``FUNCTIONAL_MAPPING`` and
``TENSOR_OPS_MAPPING``), ``ptflops/pytorch_engine.py:23`` (``get_flops_pytorch``: the module sum is divided by
the batch size, the functional sum is added afterwards), ``:348`` (``patch_functional``: F.linear is left
unpatched), ``:434`` (``patch_tensor_ops``: matmul, mm, bmm, addmm, baddbmm, mul, add; not ``@``).

ptflops' pytorch backend needs a real forward pass (it fails on meta), so this convention is the CPU run. As
with DeepSpeed, an ``add``/``mul`` is read as the ``+``/``*`` operator (not patched) and a ``bmm``/``mm``
outside a linear layer as ``torch.matmul`` (patched); an ``addmm`` outside ``nn.Linear`` as ``F.linear``, unless
no weight was transposed for it (``torch.addmm`` itself, patched).
"""

from __future__ import annotations

import math

from flopcalc.conventions import recurrent
from flopcalc.conventions.base import Call, ConventionResult, Ledger, baseline_ledger, calls, nn_class
from flopcalc.facts import ModuleFacts, OpTally
from flopcalc.report import Report

CONV = nn_class("conv.Conv1d", "conv.Conv2d", "conv.Conv3d")
CONV_T = nn_class("conv.ConvTranspose1d", "conv.ConvTranspose2d", "conv.ConvTranspose3d")
ACTIVATIONS = nn_class("activation.ReLU", "activation.PReLU", "activation.ELU", "activation.LeakyReLU",
                       "activation.ReLU6", "activation.GELU")
POOLS = nn_class(*(f"pooling.{kind}Pool{d}d" for kind in ("Max", "Avg", "AdaptiveMax", "AdaptiveAvg")
                   for d in (1, 2, 3)))
NORMS = nn_class("batchnorm.BatchNorm1d", "batchnorm.BatchNorm2d", "batchnorm.BatchNorm3d",
                 "instancenorm.InstanceNorm1d", "instancenorm.InstanceNorm2d", "instancenorm.InstanceNorm3d",
                 "normalization.GroupNorm", "normalization.LayerNorm")
LINEAR = nn_class("linear.Linear")
UPSAMPLE = nn_class("upsampling.Upsample")
MHA = nn_class("activation.MultiheadAttention")
RECURRENT = recurrent.RECURRENT
HOOKED = CONV + CONV_T + ACTIVATIONS + POOLS + NORMS + LINEAR + UPSAMPLE + MHA + RECURRENT

PATCHED_NUMEL = {  # patched F.* that count their input's elements, by the aten op they become
    "aten.relu": "F.relu", "aten.relu_": "F.relu", "aten._prelu_kernel": "F.prelu", "aten.prelu": "F.prelu",
    "aten.elu": "F.elu", "aten.elu_": "F.elu", "aten.hardtanh": "F.relu6", "aten.hardtanh_": "F.relu6",
    "aten.gelu": "F.gelu", "aten.silu": "F.silu", "aten.silu_": "F.silu", "aten._softmax": "F.softmax",
    "aten.max_pool1d": "F.max_pool1d", "aten.max_pool2d_with_indices": "F.max_pool2d",
    "aten.max_pool3d_with_indices": "F.max_pool3d", "aten.avg_pool1d": "F.avg_pool1d",
    "aten.avg_pool2d": "F.avg_pool2d", "aten.avg_pool3d": "F.avg_pool3d",
    "aten._adaptive_avg_pool2d": "F.adaptive_avg_pool2d", "aten._adaptive_avg_pool3d": "F.adaptive_avg_pool3d",
    "aten.adaptive_max_pool2d": "F.adaptive_max_pool2d", "aten.adaptive_max_pool3d": "F.adaptive_max_pool3d",
}
HARDTANH = nn_class("activation.Hardtanh")
ADAPTIVE_AVG = nn_class("pooling.AdaptiveAvgPool1d", "pooling.AdaptiveAvgPool2d", "pooling.AdaptiveAvgPool3d")
UPSAMPLE_OPS = frozenset({"aten.upsample_nearest1d", "aten.upsample_nearest2d", "aten.upsample_nearest3d",
                          "aten._upsample_nearest_exact2d", "aten.upsample_linear1d", "aten.upsample_bilinear2d",
                          "aten.upsample_bicubic2d", "aten.upsample_trilinear3d"})


def _module_hook(call: Call) -> int:
    """The MODULES_MAPPING hook of ``call``'s exact type."""
    f = call.facts
    if f.is_exactly(*CONV, *CONV_T):
        positions = math.prod(call.input_shape[2:] if f.is_exactly(*CONV_T) else call.output_shape[2:])
        per_position = math.prod(f.get("kernel_size")) * f.get("in_channels") * (f.get("out_channels") // f.get("groups"))
        bias = math.prod(call.output_shape) if f.has_parameter("bias") else 0
        return per_position * call.input_shape[0] * positions + bias
    if f.is_exactly(*ACTIVATIONS):
        return call.output_elements
    if f.is_exactly(*POOLS):
        return call.input_elements
    if f.is_exactly(*NORMS):
        return call.input_elements * (2 if f.get("affine") else 1)
    if f.is_exactly(*LINEAR):
        out_features = call.output_shape[-1]
        bias = out_features if f.has_parameter("bias") else 0
        return (call.input_shape[-1] * out_features + bias) * math.prod(call.input_shape[:-1])
    if f.is_exactly(*UPSAMPLE):
        return call.output_elements
    if f.is_exactly(*MHA):
        return _mha(call)
    return recurrent.ptflops(call)


def _mha(call: Call) -> int:
    """multihead_attention_counter_hook: projections with bias, query scaling, q.k, softmax, attention.v and the
    output projection ("bias is always enabled")."""
    f = call.facts
    q, k, v = (tuple(int(d) for d in shape) for shape in call.row.input_shapes[:3])
    batch_first = bool(f.get("batch_first"))
    batch, length = (0, 1) if batch_first else (1, 0)
    qdim, kdim, vdim = q[2], k[2], v[2]
    qlen, klen, vlen = q[length], k[length], v[length]
    heads = f.get("num_heads")
    flops = qlen * qdim + qlen * qdim * qdim + klen * kdim * kdim + vlen * vdim * vdim
    if f.has_parameter("in_proj_bias"):
        flops += (qlen + klen + vlen) * qdim
    flops += heads * (qlen * klen * (qdim // heads) + qlen * klen + qlen * klen * (vdim // heads))
    flops += qlen * vdim * (vdim + 1)
    return flops * q[batch]


def _upsample(call: Call, tally: OpTally) -> int:
    """_interpolate_functional_flops_hook from nn.Upsample's (input, size, scale_factor)."""
    f = call.facts
    size, scale = f.get("size"), f.get("scale_factor")
    channels = math.prod(call.input_shape[:2])
    dims = len(call.input_shape) - 2
    if size is not None:
        return math.prod(size) * channels if isinstance(size, tuple) else int(size) ** dims * channels
    if scale is not None:
        factor = math.prod(scale) if isinstance(scale, tuple) else scale ** dims
        return int(call.input_elements * factor)
    return tally.output_elements


def _hook_label(f: ModuleFacts) -> str:
    if f.is_exactly(*CONV, *CONV_T, *LINEAR):
        return "bias adds counted as MACs"
    if f.is_exactly(*ACTIVATIONS):
        return "activation modules 1 per output element"
    if f.is_exactly(*POOLS):
        return "pooling modules 1 per input element"
    if f.is_exactly(*NORMS):
        return "norms 1 per element, 2 with .affine (LayerNorm has no .affine)"
    if f.is_exactly(*UPSAMPLE):
        return "Upsample module 1 per output element"
    if f.is_exactly(*MHA):
        return "MultiheadAttention hook: projection biases, query scaling, softmax 1 per score"
    return "RNN/GRU/LSTM: weights, biases and gate arithmetic per step, all as one count"


def _functional(call: Call, name: str, tally: OpTally, hooked: bool, ledger: Ledger) -> None:
    """What the patched functions count for one op of ``call`` (``hooked``: inside a module with a hook)."""
    f = call.facts
    macs = int(tally.count.macs)
    if name in ("aten.hardtanh", "aten.hardtanh_") and f.derives_from(*HARDTANH):
        return  # nn.ReLU6 and nn.Hardtanh call F.hardtanh, which is not patched
    if name in PATCHED_NUMEL and call.holds(PATCHED_NUMEL[name].removeprefix("F.")):
        return  # the module calls the F.* it took at construction, before ptflops patched it
    sdpa = "aten._safe_softmax" in call.row.op_tallies  # the products are scaled_dot_product_attention's
    if name in PATCHED_NUMEL or name == "aten.mean":
        again = " (again: module hook + patched F.*)" if hooked else ""
        # a mean is F.adaptive_avg_pool*(x, 1) inside an adaptive pool, or one that pools to 1 x 1 elsewhere
        elements = tally.input_elements if name != "aten.mean" or f.derives_from(*ADAPTIVE_AVG) \
            else tally.pooled_input_elements
        ledger.add(f"patched F.* activations, pooling, softmax: 1 per input element{again}", elements)
    elif name in UPSAMPLE_OPS:
        ledger.add("patched F.interpolate", _upsample(call, tally) if f.is_exactly(*UPSAMPLE) else tally.output_elements)
    elif name == "aten.baddbmm":
        added = int(tally.count.ops.get("bias_add", 0))
        ledger.add("patched torch.baddbmm: the added matrix", added)
        if hooked:
            ledger.add("patched torch.matmul/mm/bmm/baddbmm inside a hooked module (counted again)", macs)
    elif name in ("aten.bmm", "aten.mm") and sdpa:
        if not hooked:
            ledger.add("scaled_dot_product_attention is not patched (0)", -macs, blind=True)
    elif name == "aten.bmm" or (name == "aten.mm" and not f.is_exactly(*LINEAR, *MHA)):
        if hooked:  # torch.matmul/bmm under a module hook that counted the same product
            ledger.add("patched torch.matmul/mm/bmm inside a hooked module (counted again)", macs)
    elif name == "aten.addmm" and call.bare_addmm and not hooked:
        ledger.add("patched torch.addmm: the added matrix", tally.input_elements)
    elif macs and not hooked:
        why = "F.linear is not patched" if name in ("aten.addmm", "aten.mm") else f"{name} is not patched"
        ledger.add(f"{why} (0)", -macs, blind=True)


def ptflops_pytorch(report: Report) -> ConventionResult:
    """ptflops 0.7.5, pytorch backend, on the CPU."""
    ledger, baseline = baseline_ledger(report)
    batch = int(report.input_shapes[0][0]) if report.input_shapes and report.input_shapes[0] else 1
    hooked: dict[int, bool] = {}
    module_sum = 0
    for call in calls(report):
        f = call.facts
        parent = call.row.parent
        inside = parent is not None and hooked[parent]
        hooked[call.row.index] = inside or f.is_exactly(*HOOKED)
        if f.is_exactly(*HOOKED) and not inside:  # accumulate_flops stops at the first hooked module
            counted = _module_hook(call)
            module_sum += counted * f.tree_paths  # accumulate_flops sums children() parent by parent
            ledger.add(_hook_label(f), counted - int(call.row.measured.macs))
            ledger.count_per_parent(call, counted)
        if f.is_exactly(*RECURRENT):
            continue  # nn.RNN and the cells call torch._VF kernels, which ptflops does not patch
        for name, tally in call.ops():
            _functional(call, name, tally, hooked[call.row.index], ledger)
    if batch > 1:  # the module sum is an average per sample, the functional sum is not
        ledger.add("module hooks averaged over the batch (divided by the batch size)",
                   int(module_sum / batch) - module_sum)
    return ledger.result("ptflops", "ptflops 0.7.5 (pytorch backend)", "MACs", baseline)
