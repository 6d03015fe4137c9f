"""Every counter's convention, applied to one flopcalc analysis: the number thop, ptflops, fvcore, torchinfo,
FlopCounterMode, DeepSpeed, calflops or an LLM paper's formula would give for the same model and input, and
why it differs from flopcalc's count, rule by rule.

``flopcalc.conventions.CONVENTIONS`` lists them (name, tool, unit, source, rules);
``flopcalc.conventions.apply(report, name)`` or ``report.as_convention(name)`` gives a
:class:`ConventionResult`. Nothing here runs the model again or imports a peer: the rules read the per-call
module facts and per-op records the analysis kept. docs/conventions.md cites each rule's source.
"""

from __future__ import annotations

import difflib

from flopcalc.conventions.base import Convention, ConventionResult, Difference, baseline_ledger
from flopcalc.conventions.deepspeed import calflops, deepspeed
from flopcalc.conventions.dispatch import flop_counter_mode, ptflops_aten
from flopcalc.conventions.fvcore import fvcore
from flopcalc.conventions.llm import kaplan, megatron, palm, two_n
from flopcalc.conventions.ptflops import ptflops_pytorch
from flopcalc.conventions.thop import thop, ultralytics_thop
from flopcalc.conventions.torchinfo import torchinfo
from flopcalc.errors import InputError
from flopcalc.report import Report


def _flopcalc(report: Report) -> ConventionResult:
    ledger, baseline = baseline_ledger(report)
    flops, _ = baseline_ledger(report, per_mac=2)
    flops.add("other ops: bias adds, norms, activations, pooling, softmax (1 per scalar op)",
              int(report.totals.flops) - 2 * int(report.totals.macs))
    second = flops.result("flopcalc", "flopcalc", "FLOPs", 2 * int(report.totals.macs))
    return ledger.result("flopcalc", "flopcalc", "MACs", baseline, also=(second,))


CONVENTIONS: dict[str, Convention] = {c.name: c for c in (
    Convention("flopcalc", "flopcalc", "MACs", "docs/conventions.md", (
        "MACs: multiply-accumulates of conv, linear, matmul, attention and recurrent products, bias excluded",
        "FLOPs = 2 × MACs + other ops (bias adds, norms, activations, pooling, softmax: one per scalar op)",
    ), _flopcalc),
    Convention("thop", "thop 0.1.1 (Lyken17)", "MACs", "thop/profile.py:21, thop/vision/basic_hooks.py", (
        "a rule per exact module type (subclasses and unlisted types count 0, nn.MultiheadAttention included)",
        "Conv and ConvTranspose: output elements x C_in/G x prod(K), bias not counted",
        "Linear: in_features x output elements",
        "BatchNorm, InstanceNorm, LayerNorm: 2 per input element, doubled when affine",
        "AvgPool: 1 per output; AdaptiveAvgPool: (input/output size ratio + 1) per output, truncated",
        "Softmax: 3n - 1 per row of n; PReLU: 1 per element; Upsample: 1/5/11/259 per output by mode",
        "ReLU, ReLU6, LeakyReLU, MaxPool, Dropout: 0",
        "RNN, GRU, LSTM and cells: gate products, biases and gate arithmetic per step and batch entry as one "
        "count; later layers on hidden_size, proj_size ignored",
        "a module held by several parents: hooked once per parent and summed once per parent (2 parents: 4 times)",
    ), thop),
    Convention("ultralytics-thop", "ultralytics-thop 2.2.3", "MACs",
               "thop/profile.py:42,177,214, thop/vision/basic_hooks.py", (
        "a rule per module type found through the MRO (subclasses count as their base)",
        "Conv: output elements x C_in/G x prod(K); ConvTranspose by input volume; bias not counted",
        "norms (_NormBase, LayerNorm, GroupNorm, RMSNorm): 2 per input element, doubled when affine",
        "AvgPool: 1 per input in a window + 1 per output; AdaptiveAvgPool: exact windows + 1 per output",
        "MultiheadAttention: projections (no bias) + q.k and attention.v + softmax 3S - 1 per row",
        "functional matmul, @, bmm, einsum, F.linear, SDPA outside a counted module: their MACs (torch.addmm: 0)",
        "RNN, GRU, LSTM and cells: as thop, with proj_size; x steps x batch, or the rows of an unbatched input",
        "ReLU family, MaxPool, Dropout, Embedding and containers: 0",
    ), ultralytics_thop),
    Convention("ptflops", "ptflops 0.7.5 (pytorch backend, its default)", "MACs",
               "ptflops/pytorch_ops.py:271,422,453, ptflops/pytorch_engine.py:23,348,434", (
        "a hook per module of an exact type (a hooked module's children are not visited), plus patched F.* and "
        "torch.* functions counted wherever they run, so activations and pooling count twice",
        "Conv, ConvTranspose, Linear: MACs plus one per bias add",
        "ReLU, PReLU, ELU, LeakyReLU, ReLU6, GELU: 1 per output element; pooling: 1 per input element",
        "BatchNorm, InstanceNorm, GroupNorm, LayerNorm: 1 per element, 2 when the module has affine=True "
        "(LayerNorm has elementwise_affine, so 1)",
        "MultiheadAttention: projections with bias, query scaling, q.k, softmax 1 per score, attention.v",
        "patched F.relu/prelu/elu/relu6/gelu/silu/softmax and F.*pool*: 1 per input element; F.interpolate; "
        "torch.matmul/mm/bmm/addmm/baddbmm: MACs (plus the added matrix); F.linear and @ are not patched",
        "scaled_dot_product_attention is not patched (0); torch.addmm is: MACs plus its added matrix",
        "RNN, GRU, LSTM and cells: forward-direction weight elements and biases plus 1/7/10 ops per hidden unit, "
        "per layer, x input dims 0 and 1, x 2 bidirectional",
        "module hooks are summed parent by parent: a module held by several parents counts once per parent",
        "the module part is divided by the batch size, the functional part is not",
    ), ptflops_pytorch),
    Convention("ptflops-aten", "ptflops 0.7.5 (aten backend)", "MACs", "ptflops/aten_ops.py:109 (ATEN_OPS_MAPPING)", (
        "only aten mm, bmm, addmm and convolution are counted; everything else (baddbmm, SDPA kernels, "
        "elementwise ops) is 0",
        "the bias of addmm and convolution counts as one MAC per output element",
    ), ptflops_aten),
    Convention("fvcore", "fvcore 0.1.5", "MACs", "fvcore/nn/flop_count.py:26, fvcore/nn/jit_handles.py", (
        "products (linear, matmul, bmm, einsum, convolution) in MACs, bias not counted",
        "batch_norm at inference: 2 per element with affine (1 without); layer/group/instance norm: 5 per "
        "element with affine (4 without)",
        "adaptive_avg_pool2d: 1 per input element; upsample nearest 1, bilinear 4 per output",
        "every other op is unsupported and 0: scaled_dot_product_attention, baddbmm, lstm, gru, rnn_tanh, "
        "activations (RNN cells are traced as their linear products)",
    ), fvcore),
    Convention("torchinfo", "torchinfo 1.8.0", "MACs", "torchinfo/layer_info.py:225, model_statistics.py:31", (
        "leaf modules only (no child modules), from their parameters",
        "a class named Conv*: parameters x batch x output positions (bias included)",
        "any other class: parameters x batch (not per token or position)",
        "modules without parameters, and modules with children (MultiheadAttention): 0",
    ), torchinfo),
    Convention("torch", "torch.utils.flop_counter.FlopCounterMode (torch 2.14.1)", "FLOPs",
               "torch/utils/flop_counter.py:822 (flop_registry)", (
        "2 FLOPs per MAC of mm, addmm, bmm, baddbmm, convolution and the fused attention kernels",
        "bias adds and every elementwise op: 0; ops outside its registry (the CPU flash-attention kernel, "
        "the fused LSTM) count 0, so the number depends on the device",
    ), flop_counter_mode),
    Convention("deepspeed", "DeepSpeed 0.19.8 flops profiler", "MACs",
               "deepspeed/profiling/flops_profiler/profiler.py:523-870, 890, 949", (
        "prints MACs and FLOPs; products are MACs and 2 FLOPs each, everything else FLOPs only",
        "F.linear: bias not counted; F.conv*: bias counted in FLOPs (1 per output); torch.baddbmm: the added "
        "matrix counted in FLOPs",
        "matmul, @, mm, bmm, einsum, scaled_dot_product_attention: their MACs",
        "relu, relu6, elu, leaky_relu, prelu, silu, gelu, softmax, every pooling: 1 FLOP per input element",
        "batch_norm (inference) 2 per element with affine; layer, group, instance norm 5 per element",
        "interpolate: prod(size) without batch and channels, or input elements x scale factor",
        "+, *, sigmoid, tanh, hardswish and fused kernels (MultiheadAttention's fast path): 0",
        "torch.addmm: its added matrix in FLOPs; an F.* a module took at construction (GELUActivation): 0",
        "RNN, GRU, LSTM and cells: FLOPs only, 2 x weight elements - gate rows per product, biases and 1/7/10 "
        "ops per hidden unit, per layer, x input dims 0 and 1",
    ), deepspeed),
    Convention("calflops", "calflops 0.3.2", "MACs", "calflops/pytorch_ops.py:128, 452, 507-525", (
        "DeepSpeed's rules as of 2023, with these differences:",
        "scaled_dot_product_attention is not patched: 0 (attention of SDPA models missed)",
        "torch.bmm and torch.mm are not patched (commented out): MultiheadAttention's q.k and attention.v are 0",
        "ConvTranspose with groups: the per-group filters are divided by the groups again",
        "module totals are summed parent by parent: a module held by several parents counts once per parent",
    ), calflops),
    Convention("2N", "2N per token (Kaplan et al. 2020)", "FLOPs", "Kaplan et al. 2020, section 2.1", (
        "forward FLOPs = 2 × N per token, N = parameters without the embedding tables",
    ), two_n, language_model=True),
    Convention("kaplan", "Kaplan et al. 2020, forward", "FLOPs", "Kaplan et al. 2020, Table 1", (
        "forward FLOPs per token = 2N + 2 × n_layer × n_ctx × d_attn",
    ), kaplan, language_model=True),
    Convention("palm", "PaLM (Chowdhery et al. 2022), training", "FLOPs", "Chowdhery et al. 2022, Appendix B", (
        "training FLOPs per token = 6N + 12 × L × H × Q × T (T the sequence length, H × Q = d_attn)",
    ), palm, language_model=True),
    Convention("megatron", "Megatron-LM (Narayanan et al. 2021), training", "FLOPs",
               "Narayanan et al. 2021, section 5.1", (
        "FLOPs per training iteration = 24 × B × s × L × h² × (1 + s/(6h) + V/(12 × L × h)) × 3; × 4 with full "
        "activation recomputation (the second figure)",
    ), megatron, language_model=True),
)}


def names() -> list[str]:
    """Every convention name, plus ``all``."""
    return [*CONVENTIONS, "all"]


def get(name: str) -> Convention:
    """The convention called ``name``; an unknown name is an :class:`InputError` naming the known ones."""
    if name in CONVENTIONS:
        return CONVENTIONS[name]
    close = difflib.get_close_matches(name, list(CONVENTIONS), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise InputError(f"unknown convention {name!r}; {hint}known conventions: {', '.join(names())}")


def _check_concrete(report: Report) -> None:
    if report.is_symbolic:
        raise InputError("conventions need concrete sizes; give numbers in --input (e.g. 3x224x224), not names")


def apply(report: Report, name: str) -> ConventionResult:
    """The number the convention ``name`` gives for the model and input of ``report``."""
    convention = get(name)
    _check_concrete(report)
    return convention.apply(report)


def apply_all(report: Report) -> list[ConventionResult]:
    """Every convention that applies to the model of ``report`` (the language-model formulas only to a
    language model)."""
    _check_concrete(report)
    results = []
    for convention in CONVENTIONS.values():
        try:
            results.append(convention.apply(report))
        except InputError:
            if not convention.language_model:
                raise
    return results


__all__ = ["CONVENTIONS", "Convention", "ConventionResult", "Difference", "apply", "apply_all", "get", "names"]
