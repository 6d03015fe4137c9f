"""thop (Lyken17/pytorch-OpCounter 0.1.1) and ultralytics-thop (2.2.3): a rule per module type, run as a
forward hook on each call; the rules' numbers are MACs for products and one op per element for the rest.

Sources (file:line of the released wheels): thop ``thop/profile.py:21`` (``register_hooks``, exact type
lookup), ``thop/vision/basic_hooks.py`` and ``thop/vision/calc_func.py`` (the rules); ultralytics-thop
``thop/profile.py:42`` (``register_hooks``), ``:177`` (``functional_hooks``), ``:214`` (``_resolve_rule``,
through the MRO), ``thop/vision/basic_hooks.py`` (the rules).
"""

from __future__ import annotations

import math

from flopcalc.conventions import recurrent
from flopcalc.conventions.base import Call, ConventionResult, Ledger, baseline_ledger, calls, nn_class
from flopcalc.report import Report

CONV = nn_class("conv.Conv1d", "conv.Conv2d", "conv.Conv3d")
CONV_T = nn_class("conv.ConvTranspose1d", "conv.ConvTranspose2d", "conv.ConvTranspose3d")
BATCH_NORM = nn_class("batchnorm.BatchNorm1d", "batchnorm.BatchNorm2d", "batchnorm.BatchNorm3d",
                      "batchnorm.SyncBatchNorm")
INSTANCE_NORM = nn_class("instancenorm.InstanceNorm1d", "instancenorm.InstanceNorm2d", "instancenorm.InstanceNorm3d")
LAYER_NORM = nn_class("normalization.LayerNorm")
AVG_POOL = nn_class("pooling.AvgPool1d", "pooling.AvgPool2d", "pooling.AvgPool3d")
ADAPTIVE_AVG_POOL = nn_class("pooling.AdaptiveAvgPool1d", "pooling.AdaptiveAvgPool2d", "pooling.AdaptiveAvgPool3d")
UPSAMPLE = nn_class("upsampling.Upsample", "upsampling.UpsamplingBilinear2d", "upsampling.UpsamplingNearest2d")
LINEAR = nn_class("linear.Linear")
SOFTMAX = nn_class("activation.Softmax")
PRELU = nn_class("activation.PReLU")
RECURRENT = recurrent.RECURRENT
MHA = nn_class("activation.MultiheadAttention")
THOP_ZERO = nn_class(
    "padding.ZeroPad2d", "activation.ReLU", "activation.ReLU6", "activation.LeakyReLU", "pooling.MaxPool1d",
    "pooling.MaxPool2d", "pooling.MaxPool3d", "pooling.AdaptiveMaxPool1d", "pooling.AdaptiveMaxPool2d",
    "pooling.AdaptiveMaxPool3d", "dropout.Dropout", "container.Sequential", "pixelshuffle.PixelShuffle",
)
THOP_RULES = CONV + CONV_T + BATCH_NORM + INSTANCE_NORM + LAYER_NORM + AVG_POOL + ADAPTIVE_AVG_POOL + UPSAMPLE + \
    LINEAR + SOFTMAX + PRELU + RECURRENT + THOP_ZERO

_UPSAMPLE_PER_OUTPUT_L = {"nearest": 1, "linear": 5, "bilinear": 11, "bicubic": 259, "trilinear": 0}
_UPSAMPLE_PER_OUTPUT_U = {"nearest": 0, "nearest-exact": 0, "linear": 5, "bilinear": 11, "bicubic": 259, "trilinear": 31}


def _conv_by_output(call: Call) -> int:
    """``calc_func.calculate_conv2d_flops``: output elements x (C_in // G) x prod(K), for every conv kind."""
    kernel = math.prod(call.facts.get("kernel_size", ()))
    return call.output_elements * (call.input_shape[1] // call.facts.get("groups", 1)) * kernel


def _affine(call: Call) -> bool:
    return bool(call.facts.get("affine", False) or call.facts.get("elementwise_affine", False))


def _implicit_dim(rank: int) -> int:
    """torch's deprecated implicit softmax dimension."""
    return 0 if rank in (0, 1, 3) else 1


def _softmax_ops(rows: int, features: int) -> int:
    """``calculate_softmax``: features exp + (features - 1) add + features div per row."""
    return rows * (features + max(features - 1, 0) + features)


def _common_rule(call: Call, ledger: Ledger, upsample_per_output: dict[str, int]) -> bool:
    """The rules both thops share; False when ``call`` is not one of them."""
    f = call.facts
    if f.derives_from(*CONV):
        ledger.add("convolution (bias not counted)", _conv_by_output(call) - call.own_macs)
    elif f.derives_from(*LINEAR):
        ledger.add("Linear: in_features x output elements (bias not counted)",
                   f.get("in_features", 0) * call.output_elements - call.own_macs)
    elif f.derives_from(*PRELU):
        ledger.add("PReLU 1 per input element", 0 if f.get("training") else call.input_elements)
    elif f.derives_from(*UPSAMPLE):
        mode = f.get("mode", "nearest")
        ledger.add(f"Upsample ({mode}) {upsample_per_output.get(mode, 0)} per output element",
                   upsample_per_output.get(mode, 0) * call.output_elements)
    else:
        return False
    return True


def _missed(call: Call, ledger: Ledger, why: str) -> None:
    ledger.add(f"{call.facts.type}: {why}", -call.own_macs, blind=True)


def thop(report: Report) -> ConventionResult:
    """thop 0.1.1 (Lyken17): rules by exact module type; a module of any other type counts 0. ``model.apply``
    registers a module's hook once per path to it and ``dfs_count`` sums ``named_children`` parent by parent, so
    a module held by two parents counts 2 x 2 times per call."""
    ledger, baseline = baseline_ledger(report)
    for call in calls(report):
        before = ledger.total()
        _thop_rule(call, ledger)
        ledger.count_per_parent(call, call.own_macs + ledger.total() - before, hooked_per_path=True)
    return ledger.result("thop", "thop 0.1.1 (Lyken17)", "MACs", baseline)


def _thop_rule(call: Call, ledger: Ledger) -> None:
    f = call.facts
    if not f.is_exactly(*THOP_RULES):
        _missed(call, ledger, "no rule (thop looks up the exact type), counted as 0")
    elif f.is_exactly(*CONV_T):
        ledger.add("ConvTranspose counted by output volume (stride^2 too much)", _conv_by_output(call) - call.own_macs)
    elif f.is_exactly(*BATCH_NORM, *INSTANCE_NORM, *LAYER_NORM):
        ledger.add("BatchNorm/InstanceNorm/LayerNorm 2 per element, doubled when affine",
                   2 * call.input_elements * (2 if _affine(call) else 1))
    elif f.is_exactly(*AVG_POOL):
        ledger.add("AvgPool 1 per output element", call.output_elements)
    elif f.is_exactly(*ADAPTIVE_AVG_POOL):
        # count_adap_avgpool: int((prod(input / output sizes) + 1) * output elements), in float64
        kernel = 1.0
        for size_in, size_out in zip(call.input_shape[2:], call.output_shape[2:]):
            kernel *= size_in / size_out
        ledger.add("AdaptiveAvgPool (input/output size ratio + 1) per output element",
                   int((kernel + 1) * call.output_elements))
    elif f.is_exactly(*SOFTMAX):
        dim = f.get("dim")
        features = call.input_shape[_implicit_dim(len(call.input_shape)) if dim is None else dim]
        ledger.add("Softmax 3n - 1 per row of n", _softmax_ops(call.input_elements // features, features))
    elif f.is_exactly(*RECURRENT):
        ledger.add(RECURRENT_RULE, recurrent.thop(call, ultralytics=False) - call.own_macs)
    elif not _common_rule(call, ledger, _UPSAMPLE_PER_OUTPUT_L):
        _missed(call, ledger, "a zero-cost rule")


RECURRENT_RULE = "RNN/GRU/LSTM: products, biases and gate arithmetic per step, all as one count"


U_NORM = nn_class("batchnorm._NormBase", "normalization.LayerNorm", "normalization.GroupNorm",
                  "normalization.RMSNorm")
U_SOFTMAX = nn_class("activation.Softmax", "activation.LogSoftmax", "activation.Softmin", "activation.Softmax2d")
U_ZERO = nn_class(
    "padding._ConstantPadNd", "padding._ReflectionPadNd", "padding._ReplicationPadNd", "padding._CircularPadNd",
    "dropout._DropoutNd", "activation.ReLU", "activation.ReLU6", "activation.LeakyReLU", "pooling.MaxPool1d",
    "pooling.MaxPool2d", "pooling.MaxPool3d", "pooling.AdaptiveMaxPool1d", "pooling.AdaptiveMaxPool2d",
    "pooling.AdaptiveMaxPool3d", "pooling.FractionalMaxPool2d", "pooling.FractionalMaxPool3d",
    "pooling._MaxUnpoolNd", "container.Sequential", "container.ModuleList", "container.ModuleDict",
    "container.ParameterList", "container.ParameterDict", "linear.Identity", "flatten.Flatten",
    "flatten.Unflatten", "fold.Unfold", "pixelshuffle.PixelShuffle", "pixelshuffle.PixelUnshuffle",
    "channelshuffle.ChannelShuffle", "sparse.Embedding",
)
U_NONZERO = CONV + CONV_T + U_NORM + (nn_class("activation.PReLU") + U_SOFTMAX + AVG_POOL + ADAPTIVE_AVG_POOL
                                     + LINEAR + nn_class("linear.Bilinear") + UPSAMPLE + RECURRENT + MHA)
U_PRODUCTS = ("aten.mm", "aten.addmm", "aten.bmm")
"""What ``torch.matmul``, ``@``, ``bmm``, ``einsum``, ``F.linear`` and SDPA reach the dispatcher as."""


def _windows(size: int, out: int, kernel: int, stride: int, pad: int, include_pad: bool) -> int:
    """count_avgpool: input positions covered by the windows along one dimension."""
    lower, upper = (-pad, size + pad) if include_pad else (0, size)
    return sum(max(min(i * stride - pad + kernel, upper) - max(i * stride - pad, lower), 0) for i in range(out))


def _avg_pool(call: Call) -> int:
    f = call.facts
    kernel = f.get("kernel_size")
    dims = len(kernel) if isinstance(kernel, tuple) else (3 if f.derives_from(*nn_class("pooling.AvgPool3d")) else 2)
    per_dim = [(v,) * dims if isinstance(v, int) else tuple(v) for v in (kernel, f.get("stride"), f.get("padding"))]
    windows = 1
    for size, out, k, s, p in zip(call.input_shape[-dims:], call.output_shape[-dims:], *per_dim):
        windows *= _windows(size, out, k, s, p, bool(f.get("count_include_pad", True)))
    return math.prod(call.input_shape[:-dims]) * windows + call.output_elements


def _adaptive_avg_pool(call: Call) -> int:
    """count_adap_avgpool: the exact unequal windows on every axis, plus one divide per output."""
    total = 1
    for size_in, size_out in zip(call.input_shape, call.output_shape):
        total *= size_in if size_in == size_out else sum(
            -(-(j + 1) * size_in // size_out) - j * size_in // size_out for j in range(size_out))
    return total + call.output_elements


def _mha(call: Call) -> int:
    """count_multihead_attention: projections, both attention products and the softmax, from the call's shapes."""
    f = call.facts
    shapes = call.row.output_shapes
    out = shapes[0]
    batch_first = bool(f.get("batch_first", False))
    tgt_len = out[-2] if batch_first or len(out) == 2 else out[0]
    batch = 1 if len(out) == 2 else out[0 if batch_first else 1]
    appended = (f.get("bias_k") is not None or f.has_parameter("bias_k")) + bool(f.get("add_zero_attn"))
    if len(shapes) > 1:
        attended = shapes[1][-1]
    else:
        key = call.row.input_shapes[1] if len(call.row.input_shapes) > 1 else out
        attended = (key[-2] if batch_first or len(key) == 2 else key[0]) + appended
    embed, kdim, vdim = f.get("embed_dim"), f.get("kdim"), f.get("vdim")
    projections = embed * (2 * tgt_len * embed + (attended - appended) * (kdim + vdim))
    attention = 2 * tgt_len * attended * embed
    return int(batch * (projections + attention) + _softmax_ops(batch * f.get("num_heads") * tgt_len, attended))


def ultralytics_thop(report: Report) -> ConventionResult:
    """ultralytics-thop 2.2.3: rules found through the MRO, every module walked, plus functional products run
    outside any module with a non-zero rule."""
    ledger, baseline = baseline_ledger(report)
    inside_rule: dict[int, bool] = {}
    for call in calls(report):
        f = call.facts
        parent = call.row.parent
        covered = parent is not None and inside_rule[parent]
        has_rule = f.derives_from(*U_NONZERO)
        inside_rule[call.row.index] = covered or has_rule
        if not has_rule:
            products = ("aten.mm", "aten.bmm") if call.bare_addmm else U_PRODUCTS
            functional = sum(int(t.count.macs) for _, t in call.ops(*products))
            ledger.add("functional products (matmul, @, bmm, einsum, F.linear, SDPA) bias not counted",
                       (0 if covered else functional) - functional)
            if not f.derives_from(*U_ZERO):
                why = "torch.addmm, F.conv* and other products are not counted" if call.bare_addmm \
                    else "its other products (e.g. F.conv*) counted as 0"
                ledger.add(f"{f.type}: no rule, {why}", functional - call.own_macs, blind=True)
            continue
        if f.derives_from(*CONV_T):  # calculate_conv2d_flops(transpose=True): input volume x (C_out // G) x prod(K)
            by_input = call.input_elements * (call.output_shape[1] // f.get("groups", 1)) * math.prod(f.get("kernel_size"))
            ledger.add("ConvTranspose by input volume (bias not counted)", by_input - call.own_macs)
        elif f.derives_from(*U_NORM):
            ledger.add("norms 2 per element, doubled when affine", 2 * call.input_elements * (2 if _affine(call) else 1))
        elif f.derives_from(*U_SOFTMAX):
            dim = -3 if f.derives_from(*nn_class("activation.Softmax2d")) else f.get("dim")
            dim = _implicit_dim(len(call.input_shape)) if dim is None else dim
            features = call.input_shape[dim]
            rows = call.input_elements // features
            extra = call.input_elements if f.derives_from(*nn_class("activation.Softmin")) else \
                rows if f.derives_from(*nn_class("activation.LogSoftmax")) else 0
            ledger.add("softmax 3n - 1 per row of n", _softmax_ops(rows, features) + extra)
        elif f.derives_from(*AVG_POOL):
            ledger.add("AvgPool 1 per input in a window + 1 per output", _avg_pool(call))
        elif f.derives_from(*ADAPTIVE_AVG_POOL):
            ledger.add("AdaptiveAvgPool 1 per input + 1 per output", _adaptive_avg_pool(call))
        elif f.derives_from(*MHA):
            ledger.add("MultiheadAttention: projections without bias + attention + softmax 3S - 1 per row",
                       _mha(call) - call.own_macs)
        elif f.derives_from(*nn_class("linear.Bilinear")):
            ledger.add("Bilinear (in1 + 1) x in2 per output", (f.get("in1_features") + 1) * f.get("in2_features")
                       * call.output_elements - call.own_macs)
        elif f.derives_from(*RECURRENT):
            ledger.add(RECURRENT_RULE, recurrent.thop(call, ultralytics=True) - call.own_macs)
        else:
            _common_rule(call, ledger, _UPSAMPLE_PER_OUTPUT_U)
    return ledger.result("ultralytics-thop", "ultralytics-thop 2.2.3", "MACs", baseline)
