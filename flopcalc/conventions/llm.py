"""The language-model papers' closed formulas, evaluated with hyperparameters read from one analysis.

- ``2N``: forward FLOPs ≈ 2 × non-embedding parameters per token (Kaplan et al. 2020, "Scaling Laws for Neural
  Language Models", section 2.1).
- ``kaplan``: C_forward = 2N + 2·n_layer·n_ctx·d_attn per token (Kaplan et al. 2020, Table 1).
- ``palm``: training FLOPs per token = 6N + 12·L·H·Q·T (Chowdhery et al. 2022, "PaLM", Appendix B).
- ``megatron``: FLOPs per training iteration = 24·B·s·L·h²·(1 + s/(6h) + V/(12·L·h)) × 3, or × 4 with full
  activation recomputation (Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU
  Clusters Using Megatron-LM", section 5.1).

What the formulas need is read from the report: N = parameters minus every embedding table's; tokens = B·s from
the first input (token ids, B × s); n_layer = L = the calls that run attention (a softmax over scores or a fused
attention kernel); d_attn = H·Q from their q.k and attention.v MACs (2·B·s·s·d_attn per layer); h and V from
the largest embedding table (the token embedding).
"""

from __future__ import annotations

from dataclasses import dataclass

from flopcalc.conventions.base import ConventionResult, Ledger, calls, nn_class
from flopcalc.errors import InputError
from flopcalc.report import Report

EMBEDDING = nn_class("sparse.Embedding")
SCORE_SOFTMAX = frozenset({"aten._softmax", "aten._safe_softmax"})
FUSED_ATTENTION = frozenset({
    "aten._scaled_dot_product_flash_attention_for_cpu", "aten._scaled_dot_product_flash_attention",
    "aten._scaled_dot_product_efficient_attention", "aten._scaled_dot_product_cudnn_attention",
    "aten._native_multi_head_attention", "aten._transformer_encoder_layer_fwd",
})
ATTENTION_PRODUCTS = frozenset({"aten.bmm", "aten.baddbmm", "aten.mm"}) | FUSED_ATTENTION - {
    "aten._native_multi_head_attention", "aten._transformer_encoder_layer_fwd"}


@dataclass(frozen=True)
class LanguageModel:
    """A language model's hyperparameters as the formulas name them, read from a report."""

    params: int  # N: parameters without the embedding tables
    embedding_params: int
    batch: int  # B
    context: int  # s = n_ctx = T
    layers: int  # L = n_layer
    d_attn: int  # H·Q
    hidden: int  # h = d_model
    vocab: int  # V

    @property
    def tokens(self) -> int:
        return self.batch * self.context

    def describe(self) -> str:
        return (f"N = {self.params:,} non-embedding params, B = {self.batch}, s = {self.context}, "
                f"L = {self.layers}, d_attn = {self.d_attn}, h = {self.hidden}, V = {self.vocab:,}")


def read_language_model(report: Report, convention: str) -> LanguageModel:
    """The hyperparameters, or :class:`InputError` when ``report`` is not of a language model."""
    shapes = report.input_shapes
    embeddings: dict[str, tuple[int, int, int]] = {}
    layers = attention_macs = 0
    fused_width = 0
    for call in calls(report):
        f = call.facts
        if f.derives_from(*EMBEDDING):
            embeddings[call.row.name.split("#")[0]] = (sum(n for _, n in f.parameters), f.get("num_embeddings"),
                                                       f.get("embedding_dim"))
        ops = call.row.op_tallies
        if SCORE_SOFTMAX & ops.keys() or FUSED_ATTENTION & ops.keys():
            layers += 1
            attention_macs += sum(int(t.count.macs) for name, t in ops.items() if name in ATTENTION_PRODUCTS)
            if {"aten._native_multi_head_attention", "aten._transformer_encoder_layer_fwd"} & ops.keys():
                fused_width = int(call.row.input_shapes[0][-1])
    if not embeddings or not layers or not shapes or len(shapes[0]) != 2:
        raise InputError(f"convention {convention!r} is for language models: it needs token ids as the first input "
                         "(--input SEQ:int64), an embedding table and attention layers")
    batch, context = (int(d) for d in shapes[0])
    _, vocab, hidden = max(embeddings.values(), key=lambda e: e[1])
    per_layer = 2 * batch * context * context
    d_attn = fused_width or attention_macs // (per_layer * layers)
    embedding_params = sum(n for n, _, _ in embeddings.values())
    return LanguageModel(report.totals.params - embedding_params, embedding_params, batch, context, layers,
                         d_attn, hidden, vocab)


def _formula(report: Report, name: str, tool: str, terms: list[tuple[str, int]], lm: LanguageModel,
             also: tuple[ConventionResult, ...] = ()) -> ConventionResult:
    ledger = Ledger()
    baseline = 2 * int(report.totals.macs)
    ledger.add("flopcalc's forward count (2 × MACs) is replaced by the formula", -baseline)
    for rule, amount in terms:
        ledger.add(rule, amount)
    return ledger.result(name, tool, "FLOPs", baseline, also=also, notes=(lm.describe(),))


def two_n(report: Report) -> ConventionResult:
    lm = read_language_model(report, "2N")
    return _formula(report, "2N", "2N per token (Kaplan et al. 2020)",
                    [(f"2·N per token × {lm.tokens:,} tokens", 2 * lm.params * lm.tokens)], lm)


def kaplan(report: Report) -> ConventionResult:
    lm = read_language_model(report, "kaplan")
    return _formula(report, "kaplan", "Kaplan et al. 2020, forward", [
        (f"2·N per token × {lm.tokens:,} tokens", 2 * lm.params * lm.tokens),
        ("2·n_layer·n_ctx·d_attn per token (attention)", 2 * lm.layers * lm.context * lm.d_attn * lm.tokens),
    ], lm)


def palm(report: Report) -> ConventionResult:
    lm = read_language_model(report, "palm")
    return _formula(report, "palm", "PaLM (Chowdhery et al. 2022), training", [
        (f"6·N per token × {lm.tokens:,} tokens", 6 * lm.params * lm.tokens),
        ("12·L·H·Q·T per token (attention)", 12 * lm.layers * lm.d_attn * lm.context * lm.tokens),
    ], lm)


def megatron(report: Report) -> ConventionResult:
    """24·B·s·L·h²·(1 + s/(6h) + V/(12·L·h)) × 3, expanded into integer terms; the × 4 recompute figure too."""
    lm = read_language_model(report, "megatron")
    b, s, layers, h, v = lm.batch, lm.context, lm.layers, lm.hidden, lm.vocab
    terms = [("24·B·s·L·h² (transformer layers)", 24 * b * s * layers * h * h),
             ("24·B·s·L·h²·s/(6h) = 4·B·s²·L·h (attention)", 4 * b * s * s * layers * h),
             ("24·B·s·L·h²·V/(12·L·h) = 2·B·s·h·V (logits)", 2 * b * s * h * v)]
    recompute = _formula(report, "megatron", "Megatron-LM (Narayanan et al. 2021), training with recomputation",
                         [(f"{rule} × 4", 4 * amount) for rule, amount in terms], lm)
    return _formula(report, "megatron", "Megatron-LM (Narayanan et al. 2021), training",
                    [(f"{rule} × 3", 3 * amount) for rule, amount in terms], lm, also=(recompute,))
