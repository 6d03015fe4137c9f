"""Language-model views of a report: prefill and decode phases, generation totals, KV cache, MAC split.

:func:`summarize` runs the phases asked for on an :class:`~flopcalc.hf.HFModel` (each an ordinary
:func:`flopcalc.analyze` pass, so every row is still checked formula against measurement) and collects what LLM
users ask for: total and non-embedding parameters, MACs per token in prefill and in decode at a context length,
KV-cache bytes, the attention kind, and the split of MACs among attention scores, attention projections, MLP and
LM head. The split is read off the report's rows (see :func:`mac_split`), never from a separate formula of the
model. Sizes may be names (``seq="S"``), giving closed forms: prefill is ``a·S² + b·S`` per sequence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sympy as sp
from torch import nn

from flopcalc.analyze import analyze
from flopcalc.errors import InputError
from flopcalc.formula import Number
from flopcalc.hf import CacheLayout, HFModel
from flopcalc.inputs import Dim
from flopcalc.layers.moe import experts_binders
from flopcalc.report import LayerRow, Report
from flopcalc.symbolic import user_symbol

PARTS = ("attention scores", "attention projections", "MLP", "LM head", "other")
"""How the MACs of a pass split. *Scores* are the MACs inside attention that use no weight (QKᵀ and AV);
*projections* the weighted layers inside attention (Q, K, V, output); *MLP* every other MAC inside the stack of
transformer layers (feed-forward, MoE router and experts); *LM head* the output embedding; *other* the rest
(e.g. BERT's pooler)."""

CAUSAL_NOTE = (
    "a causal mask is counted over the full square of scores (every query against every key, as the math "
    "kernel computes them); fused kernels that skip masked blocks do about half the attention-score MACs"
)


@dataclass(frozen=True)
class Phase:
    """One counted pass: ``tokens`` new tokens in each of ``batch`` sequences, after ``context`` cached ones."""

    name: str
    report: Report
    tokens: Dim
    batch: Dim
    context: Dim = 0
    split: Mapping[str, Number] = field(default_factory=dict)

    @property
    def macs_per_token(self) -> Number:
        """MACs per new token (mean over the batch and, in prefill, over the prompt's positions)."""
        return _exact_div(self.report.totals.macs, _expr(self.batch) * _expr(self.tokens))

    @property
    def flops_per_token(self) -> Number:
        return _exact_div(self.report.totals.flops, _expr(self.batch) * _expr(self.tokens))


@dataclass(frozen=True)
class Attention:
    """Query heads against KV heads: MHA when equal, MQA with one KV head, GQA in between."""

    heads: int
    kv_heads: int

    @property
    def kind(self) -> str:
        if self.kv_heads == self.heads:
            return "MHA"
        if self.kv_heads == 1:
            return "MQA"
        return f"GQA (group {self.heads // self.kv_heads})"

    def describe(self) -> str:
        if self.kv_heads == self.heads:
            return f"MHA ({self.heads} heads, each with its own K and V)"
        shared = "share one K/V head" if self.kv_heads == 1 else f"share {self.kv_heads} K/V heads"
        return f"{self.kind}: {self.heads} query heads {shared}"


@dataclass(frozen=True)
class MixtureOfExperts:
    """Routed experts: ``top_k`` of ``experts`` per token in each of ``layers`` MoE layers."""

    experts: int
    top_k: int
    layers: int
    expert_params: int
    """Parameters of every routed expert of every MoE layer together."""

    @property
    def inactive_params(self) -> int:
        """Parameters of the experts a token does not visit: (E − k)/E of the routed experts."""
        return self.expert_params * (self.experts - self.top_k) // self.experts


@dataclass(frozen=True)
class Generation:
    """A prompt of ``prompt`` tokens (prefill) followed by ``steps`` decode steps, step t at context prompt + t."""

    prompt: Dim
    steps: Dim
    macs: Number
    flops: Number


@dataclass(frozen=True)
class LLMSummary:
    """Everything the LLM summary block shows; renderers only read it (:mod:`flopcalc.render.llm`)."""

    model: str
    dtype: str
    params: int
    non_embedding_params: int
    attention: Attention
    cache: CacheLayout | None
    prefill: Phase | None = None
    decode: Phase | None = None
    generation: Generation | None = None
    moe: MixtureOfExperts | None = None

    @property
    def active_params(self) -> int | None:
        """Parameters one token uses: all but the experts its router does not pick (MoE models only)."""
        return None if self.moe is None else self.params - self.moe.inactive_params

    @property
    def main(self) -> Phase:
        """The phase the layer table shows: decode when it was asked for, else prefill."""
        phase = self.decode or self.prefill
        assert phase is not None
        return phase

    def kv_cache_bytes(self, tokens: Dim, batch: Dim) -> Number | None:
        """Bytes of the KV cache holding ``tokens`` tokens of each of ``batch`` sequences."""
        if self.cache is None:
            return None
        return _number(self.cache.bytes_per_token * _expr(tokens) * _expr(batch))

    @property
    def phase_kv_cache_bytes(self) -> Number | None:
        """The cache of the table's phase: the context a decode step reads, or what a prompt leaves behind."""
        phase = self.main
        return self.kv_cache_bytes(phase.context if phase.name == "decode" else phase.tokens, phase.batch)


def _expr(value: Dim) -> Any:
    return user_symbol(value) if isinstance(value, str) else value


def _number(value: Any) -> Number:
    value = sp.expand(sp.sympify(value))
    return int(value) if value.is_Integer else value


def _exact_div(numerator: Number, denominator: Any) -> Number:
    """An exact quotient: an integer, a fraction written as ``p/q``, or a simplified expression."""
    quotient = sp.simplify(sp.sympify(numerator) / sp.sympify(denominator))
    if quotient.is_Integer:
        return int(quotient)
    return quotient if quotient.is_Rational else sp.expand(quotient)


def _module_for(modules: Mapping[str, nn.Module], name: str) -> nn.Module | None:
    """The module of a row (``layers.0.mlp#2`` is the second call of ``layers.0.mlp``); rows that name no
    module (a functional call) have none."""
    return modules.get(name.split("#")[0])


def _transformer_layers(model: nn.Module, config: Any) -> set[int]:
    """The transformer layers: members of a ``ModuleList`` as long as the config's layer count."""
    counts = {getattr(config, key, None) for key in ("num_hidden_layers", "num_layers", "num_decoder_layers")}
    counts.discard(None)
    return {
        id(layer) for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) in counts for layer in m
    }


def _is_attention(module: nn.Module | None) -> bool:
    return module is not None and "attention" in type(module).__name__.lower()


def _has_weights(module: nn.Module | None) -> bool:
    return module is not None and any(p.dim() >= 2 for p in module.parameters(recurse=False))


def mac_split(report: Report, model: nn.Module, config: Any) -> dict[str, Number]:
    """Split the report's MACs among :data:`PARTS`, row by row.

    Each row's own MACs (a formula row's whole count; otherwise its count minus its children's) go to the part
    its place in the model gives: the output embedding is the LM head; inside a module whose class names
    attention, a row with weights is a projection and one without (the QKᵀ and AV products) is scores (a row
    of a functional call counts as part of the module that made it); anything else inside the transformer
    layers is MLP. The parts sum to the report's total MACs.
    """
    modules = dict(model.named_modules())
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    layers = _transformer_layers(model, config)
    split: dict[str, Any] = dict.fromkeys(PARTS, 0)

    def visit(row: LayerRow, role: str, owner: nn.Module | None) -> None:
        module = _module_for(modules, row.name)
        owner = module if module is not None else owner  # a functional call's row belongs to its caller
        if module is not None and head is not None and module is head:
            role = "LM head"
        elif role == "other" and module is not None and id(module) in layers:
            role = "MLP"
        if role in ("MLP", "other") and _is_attention(module):
            role = "attention"
        part = role
        if role == "attention":
            part = "attention projections" if _has_weights(owner) else "attention scores"
        own = row.macs if row.bound is not None else row.macs - sum(report.rows[c].macs for c in row.children)
        split[part] += own
        if row.bound is None:
            for child in row.children:
                visit(report.rows[child], role, owner)

    if report.rows:
        visit(report.rows[0], "other", model)
    return {key: _number(value) for key, value in split.items()}


def _non_embedding_params(model: nn.Module) -> int:
    """Parameters outside every ``nn.Embedding`` (token, position and token-type tables; a tied LM head shares
    the token table), as Hugging Face's ``num_parameters(exclude_embeddings=True)`` defines it."""
    embedded = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in embedded)


def _attention(config: Any, layout: CacheLayout | None) -> Attention:
    """Query heads from the config; KV heads from the model's own cache where it keeps one."""
    heads = int(getattr(config, "num_attention_heads"))
    kv_heads = layout.layers[0][0] if layout else getattr(config, "num_key_value_heads", None) or heads
    return Attention(heads, int(kv_heads))


def _mixture_of_experts(model: nn.Module, config: Any) -> MixtureOfExperts | None:
    """Transformers' fused expert modules: ``num_experts`` experts stacked along dimension 0 of 3-d weights."""
    top_k = getattr(config, "num_experts_per_tok", None)
    found = [
        m for m in model.modules()
        if getattr(m, "num_experts", None) and any(p.dim() == 3 for p in m.parameters(recurse=False))
    ]
    if not found or not top_k:
        return None
    experts = {int(m.num_experts) for m in found}
    if len(experts) != 1:
        return None
    params = sum(p.numel() for m in found for p in m.parameters(recurse=False))
    return MixtureOfExperts(experts.pop(), int(top_k), len(found), params)


def prefill(
    hf_model: HFModel, seq: Dim, batch: Dim = 1, hints: Mapping[str, int] | None = None,
    views: Mapping[str, Any] | None = None,
) -> Phase:
    """The forward pass over a prompt of ``seq`` tokens in each of ``batch`` sequences; ``views`` are further
    keyword arguments of :func:`flopcalc.analyze` (``backward=True``, ``memory=True``, ``hardware=...``)."""
    report = analyze(hf_model.model, hf_model.prefill_inputs(seq, batch), name=hf_model.source, hints=hints,
                     extra=experts_binders(hf_model.model), **(views or {}))
    return Phase("prefill", report, seq, batch, 0, mac_split(report, hf_model.model, hf_model.config))


def decode(
    hf_model: HFModel, context: Dim, batch: Dim = 1, hints: Mapping[str, int] | None = None,
    views: Mapping[str, Any] | None = None,
) -> Phase:
    """One new token per sequence attending to a KV cache of ``context`` earlier tokens (and itself); ``views``
    as for :func:`prefill` (the cache is an input: the activation peak leaves it out)."""
    report = analyze(hf_model.model, hf_model.decode_inputs(context, batch), name=hf_model.source, hints=hints,
                     extra=experts_binders(hf_model.model), **(views or {}))
    return Phase("decode", report, 1, batch, context, mac_split(report, hf_model.model, hf_model.config))


def generation(
    hf_model: HFModel, prompt: Phase, steps: Dim, decode_phase: Phase | None = None
) -> Generation:
    """Prefill of ``prompt`` plus ``steps`` decode steps, step t (from 0) at context ``prompt.tokens + t``.

    The decode cost comes from its closed form in the context length (``decode_phase`` when it is one, else a
    new symbolic decode pass), summed by sympy; with named sizes the result is a closed form in them.
    """
    used = {str(s) for s in sp.sympify(prompt.report.totals.macs).free_symbols} | {
        d for d in (prompt.tokens, prompt.batch, steps) if isinstance(d, str)
    }
    if decode_phase is None or not isinstance(decode_phase.context, str) or decode_phase.batch != prompt.batch:
        context = next(name for name in ("P", "P_ctx", "Context") if name not in used)
        decode_phase = decode(hf_model, context, prompt.batch)
    context_symbol = user_symbol(str(decode_phase.context))
    step = sp.Dummy("t", integer=True, nonnegative=True)
    at_step = {context_symbol: _expr(prompt.tokens) + step}
    totals = []
    for prefill_total, decode_total in (
        (prompt.report.totals.macs, decode_phase.report.totals.macs),
        (prompt.report.totals.flops, decode_phase.report.totals.flops),
    ):
        summed = sp.summation(sp.sympify(decode_total).xreplace(at_step), (step, 0, _expr(steps) - 1))
        totals.append(_number(sp.sympify(prefill_total) + summed))
    return Generation(prompt.tokens, steps, totals[0], totals[1])


def summarize(
    hf_model: HFModel,
    *,
    seq: Dim | None = None,
    batch: Dim = 1,
    context: Dim | None = None,
    generate: Dim | None = None,
    hints: Mapping[str, int] | None = None,
    views: Mapping[str, Any] | None = None,
) -> LLMSummary:
    """Count the phases asked for and gather the LLM summary.

    Args:
        hf_model: from :func:`flopcalc.hf.load`.
        seq: prompt length for the prefill pass (a name such as ``"S"`` for a closed form).
        batch: sequences per pass.
        context: cached tokens for one decode step (a name such as ``"P"`` for a closed form).
        generate: decode steps after the prompt; needs ``seq``.
        hints: sizes torch assumes for names while tracing, as for :func:`flopcalc.analyze`.
        views: training views for the phase the table shows (decode when asked for, else prefill): keyword
            arguments of :func:`flopcalc.analyze` such as ``backward=True``, ``memory=True``, ``optimizer="adamw"``,
            ``hardware="h100-sxm"``.

    Raises:
        InputError: neither ``seq`` nor ``context`` given, ``generate`` without ``seq``, or decode asked of a
            model without a self-attention KV cache.
    """
    if seq is None and context is None:
        raise InputError("give a prompt length (--seq 2048) for prefill, or --decode --context P for one decode step")
    if generate is not None and seq is None:
        raise InputError("--generate T counts a prompt of --seq tokens followed by T decode steps; add --seq")
    prefill_views = None if context is not None else views
    prefill_phase = prefill(hf_model, seq, batch, hints, prefill_views) if seq is not None else None
    decode_phase = decode(hf_model, context, batch, hints, views) if context is not None else None
    generated = None
    if generate is not None and prefill_phase is not None:
        generated = generation(hf_model, prefill_phase, generate, decode_phase)
    model = hf_model.model
    params = sum(p.numel() for p in model.parameters())
    layout = hf_model.cache_layout()
    return LLMSummary(
        model=hf_model.name,
        dtype=str(hf_model.dtype).removeprefix("torch."),
        params=params,
        non_embedding_params=_non_embedding_params(model),
        attention=_attention(hf_model.config, layout),
        cache=layout,
        prefill=prefill_phase,
        decode=decode_phase,
        generation=generated,
        moe=_mixture_of_experts(model, hf_model.config),
    )


def closed_form_terms(phase: Phase) -> list[tuple[str, Number, Number, Number]] | None:
    """For a prefill over a named length S: per part, its S², S and constant coefficients (each may hold the
    batch name; a constant is work done once per sequence, such as BERT's pooler), or ``None`` when the length
    is concrete or a part is not a polynomial of degree at most two in S."""
    if not isinstance(phase.tokens, str):
        return None
    symbol = user_symbol(phase.tokens)
    terms = []
    for part, macs in phase.split.items():
        try:
            poly = sp.Poly(sp.expand(sp.sympify(macs)), symbol)
        except sp.PolynomialError:
            return None
        if poly.degree() > 2:
            return None
        terms.append((part, *(_number(poly.coeff_monomial(m)) for m in (symbol**2, symbol, 1))))
    return terms
