"""DeepSpeed's flops profiler (0.19.8) and calflops (0.3.2, a 2023 fork of it): both monkey-patch ``F.*`` and a
few ``torch.*`` functions and report MACs and FLOPs (2 per MAC for products, one per element for the rest).

Sources: DeepSpeed ``deepspeed/profiling/flops_profiler/profiler.py:523-870`` (the ``_*_flops_compute``
rules), ``:890`` (``_patch_functionals``), ``:949`` (``_patch_tensor_methods``: matmul, ``@``, mm, bmm, addmm,
mul, add, einsum, baddbmm); calflops ``calflops/pytorch_ops.py:452`` (``_patch_functionals``, no
``scaled_dot_product_attention``), ``:507`` (the tensor methods: torch.mm and torch.bmm commented out, no
``__matmul__``), ``:128`` (``_conv_trans_flops_compute``, which divides the per-group filters by the groups
once more).

A patched function is called from Python, the per-op record holds the aten ops it became, so each op is read
as the function that produces it: ``addmm``/``mm`` inside ``nn.Linear`` as ``F.linear`` (bias not counted),
``convolution`` as ``F.conv*`` (bias counted in FLOPs), ``_softmax`` as ``F.softmax`` while the
``_safe_softmax`` of scaled_dot_product_attention's math kernel is internal and not counted. Two things the
dispatcher cannot tell apart are read the common way: an ``add``/``mul`` as the ``+``/``*`` operator (not
counted; an explicit ``torch.add``/``torch.mul`` would be), and a ``bmm``/``mm`` outside a linear layer as
``torch.matmul``. An ``addmm`` without a transposed weight is ``torch.addmm`` itself (transformers' Conv1D),
which adds its bias vector's elements to the FLOPs; an activation a module calls through an ``F.*`` function it
keeps as an attribute (transformers' GELUActivation) is the unpatched original and counts 0.
"""

from __future__ import annotations

import math

from flopcalc.conventions import recurrent
from flopcalc.conventions.base import Call, ConventionResult, Ledger, calls, nn_class
from flopcalc.facts import OpTally
from flopcalc.report import Report

LINEAR_PRODUCTS = frozenset({"aten.addmm", "aten.mm"})
MATMULS = frozenset({"aten.mm", "aten.bmm"})
ACTIVATIONS = frozenset({"aten.relu", "aten.relu_", "aten.hardtanh", "aten.hardtanh_", "aten.elu", "aten.elu_",
                         "aten.leaky_relu", "aten.leaky_relu_", "aten.silu", "aten.silu_", "aten.gelu",
                         "aten.gelu_", "aten._prelu_kernel", "aten.prelu"})
POOLS = frozenset({"aten.max_pool1d", "aten.max_pool2d_with_indices", "aten.max_pool3d_with_indices",
                   "aten.avg_pool1d", "aten.avg_pool2d", "aten.avg_pool3d", "aten._adaptive_avg_pool2d",
                   "aten._adaptive_avg_pool3d", "aten.adaptive_max_pool2d", "aten.adaptive_max_pool3d",
                   "aten.adaptive_max_pool1d", "aten.adaptive_avg_pool1d"})
BATCH_NORM_OPS = frozenset({"aten.native_batch_norm", "aten._native_batch_norm_legit_no_training",
                            "aten._native_batch_norm_legit"})
UPSAMPLE_OPS = frozenset({"aten.upsample_nearest1d", "aten.upsample_nearest2d", "aten.upsample_nearest3d",
                          "aten._upsample_nearest_exact2d", "aten.upsample_linear1d", "aten.upsample_bilinear2d",
                          "aten.upsample_bicubic2d", "aten.upsample_trilinear3d"})
ADAPTIVE_POOL = nn_class("pooling.AdaptiveAvgPool1d", "pooling.AdaptiveAvgPool2d", "pooling.AdaptiveAvgPool3d")
INSTANCE_NORM = nn_class("instancenorm._InstanceNorm")
MHA = nn_class("activation.MultiheadAttention")
UPSAMPLE = nn_class("upsampling.Upsample")
RECURRENT = nn_class("rnn.RNNBase", "rnn.RNNCellBase")
RECURRENT_RULE = "RNN/GRU/LSTM hook: 2 x weights - gate rows per product, biases and gate arithmetic, in FLOPs"
CONV_T = nn_class("conv._ConvTransposeNd")
HARDTANH = nn_class("activation.Hardtanh")


def _functional_name(op: str) -> str:
    """The F.* function an activation op comes from: ``aten.gelu_`` -> ``gelu``."""
    name = op.removeprefix("aten.").rstrip("_")
    return {"_prelu_kernel": "prelu", "hardtanh": "relu6"}.get(name, name)


def _upsample(call: Call, tally: OpTally) -> int:
    """``_upsample_flops_compute``: prod(size) when a size is given (batch and channels dropped), else input
    elements x the scale factor per spatial dimension."""
    size = call.facts.get("size") if call.facts.derives_from(*UPSAMPLE) else None
    if size is not None:
        return math.prod(size) if isinstance(size, tuple) else int(size)
    return tally.output_elements


class _Profile:
    """MACs and FLOPs of one profiler, accumulated as labelled differences from flopcalc's MACs (and 2 x MACs)."""

    def __init__(self, report: Report) -> None:
        self.macs, self.flops = Ledger(), Ledger()
        gap = int(report.totals.measured_macs) - int(report.totals.macs)
        self.macs.add("flopcalc's per-op measurement where it differs from its formulas", gap)
        self.flops.add("flopcalc's per-op measurement where it differs from its formulas", 2 * gap)
        self.baseline = int(report.totals.macs)

    def missed(self, rule: str, macs: int) -> None:
        self.macs.add(rule, -macs, blind=True)
        self.flops.add(rule, -2 * macs, blind=True)

    def flops_only(self, rule: str, amount: int) -> None:
        self.flops.add(rule, amount)

    def results(self, name: str, tool: str) -> ConventionResult:
        """MACs as the headline, FLOPs as the second figure (both are printed by the tool)."""
        flops = self.flops.result(name, tool, "FLOPs", 2 * self.baseline)
        return self.macs.result(name, tool, "MACs", self.baseline, also=(flops,))


def _profile(report: Report, calflops: bool) -> ConventionResult:
    profile = _Profile(report)
    for call in calls(report):
        macs_before, flops_before = profile.macs.total(), profile.flops.total()
        if call.facts.derives_from(*RECURRENT):
            _recurrent(call, profile)
        else:
            _patched_ops(call, profile, calflops)
        if calflops:  # get_module_flops/get_module_macs recurse into children() parent by parent
            profile.macs.count_per_parent(call, call.own_macs + profile.macs.total() - macs_before)
            profile.flops.count_per_parent(call, 2 * call.own_macs + profile.flops.total() - flops_before)
    if calflops:
        return profile.results("calflops", "calflops 0.3.2")
    return profile.results("deepspeed", "DeepSpeed 0.19.8 flops profiler")


def _recurrent(call: Call, profile: _Profile) -> None:
    """The RNN hooks are registered by exact type and add FLOPs only; the torch._VF kernels they call are not
    patched, so a subclass of a recurrent layer counts nothing."""
    if call.facts.is_exactly(*recurrent.RECURRENT):
        profile.macs.add("RNN/GRU/LSTM: the hook adds FLOPs, no MACs", -call.own_macs, blind=True)
        profile.flops.add(RECURRENT_RULE, recurrent.deepspeed_flops(call) - 2 * call.own_macs)
    else:
        profile.missed(f"{call.facts.type}: a subclass of a recurrent layer has no hook (0)", call.own_macs)


def _patched_ops(call: Call, profile: _Profile, calflops: bool) -> None:
    """What the patched functions count for the ops of one module call."""
    f = call.facts
    in_linear = f.derives_from(*nn_class("linear.Linear"))
    in_mha = f.derives_from(*MHA)
    sdpa = "aten._safe_softmax" in call.row.op_tallies
    affine = bool(f.get("affine", f.get("elementwise_affine", True)))
    for name, tally in call.ops():
        macs, bias = int(tally.count.macs), int(tally.count.ops.get("bias_add", 0))
        if name in ("aten.convolution", "aten._convolution"):
            profile.flops_only("convolution bias adds", bias)
            if calflops and f.derives_from(*CONV_T) and f.get("groups", 1) > 1:
                groups = f.get("groups")
                profile.missed("ConvTranspose: per-group filters divided by the groups again", macs - macs // groups)
        elif name == "aten.addmm" and call.bare_addmm and not in_linear:
            profile.flops_only("torch.addmm: the added matrix, 1 per element", tally.input_elements)
        elif name in LINEAR_PRODUCTS and (in_linear or name == "aten.addmm"):
            continue  # F.linear: MACs, 2 x MACs, bias not counted
        elif name == "aten.baddbmm":
            profile.flops_only("baddbmm: the added matrix, 1 per element", bias)
        elif name in MATMULS and sdpa:
            if calflops:
                profile.missed("scaled_dot_product_attention is not patched (0)", macs)
        elif name == "aten.bmm" and calflops and in_mha:
            profile.missed("torch.bmm is not patched (its patch is commented out)", macs)
        elif name in MATMULS:
            continue
        elif name in ("aten.hardtanh", "aten.hardtanh_") and f.derives_from(*HARDTANH):
            continue  # nn.ReLU6 and nn.Hardtanh call F.hardtanh, which is not patched
        elif name in ACTIVATIONS and call.holds(_functional_name(name)):
            continue  # the module calls the F.* it took at construction, before the profiler patched it
        elif name in ACTIVATIONS:
            profile.flops_only("activations (relu, relu6, elu, leaky_relu, prelu, silu, gelu) 1 per element",
                               tally.input_elements)
        elif name in BATCH_NORM_OPS and f.derives_from(*INSTANCE_NORM):
            profile.flops_only("instance_norm 5 per element with affine, else 4",
                               tally.input_elements * (5 if affine else 4))
        elif name in BATCH_NORM_OPS:
            per = (5 if affine else 4) if f.get("training") else (2 if affine else 1)
            profile.flops_only("batch_norm 2 per element with affine (inference)", tally.input_elements * per)
        elif name in ("aten.native_layer_norm", "aten.native_group_norm"):
            profile.flops_only(f"{name.removeprefix('aten.native_')} 5 per element with affine, else 4",
                               tally.input_elements * (5 if affine else 4))
        elif name in POOLS or (name == "aten.mean" and f.derives_from(*ADAPTIVE_POOL)):
            profile.flops_only("pooling 1 per input element", tally.input_elements)
        elif name == "aten.mean":  # F.adaptive_avg_pool2d(x, 1) is a mean with keepdim
            profile.flops_only("pooling 1 per input element", tally.pooled_input_elements)
        elif name == "aten._softmax":
            profile.flops_only("softmax 1 per element", tally.input_elements)
        elif name in UPSAMPLE_OPS:
            profile.flops_only("interpolate: prod(size), or input elements x scale", _upsample(call, tally))
        elif macs:
            profile.missed(f"{name} is not patched (0)", macs)


def deepspeed(report: Report) -> ConventionResult:
    return _profile(report, calflops=False)


def calflops(report: Report) -> ConventionResult:
    return _profile(report, calflops=True)
