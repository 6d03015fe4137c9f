"""The LLM summary block (:class:`flopcalc.llm.LLMSummary`) in every output format.

The block is a list of (label, value) lines, like the totals block, so each format only lays it out: after
the totals in the table, Markdown, LaTeX and HTML; as a second CSV section after a blank line; and in JSON as
``llm`` (plus ``totals.kv_cache_bytes``).
"""

from __future__ import annotations

import csv
import io
import json
from html import escape as html_escape
from typing import Any

import sympy as sp

from flopcalc.formula import Number
from flopcalc.llm import CAUSAL_NOTE, PARTS, LLMSummary, Phase, closed_form_terms
from flopcalc.render import latex, markdown
from flopcalc.render.json import to_dict
from flopcalc.render.units import fmt_bytes, fmt_scaled

TITLE = "LLM summary"


def _count(value: Number) -> str:
    """An exact count; a quotient that is not whole as its decimal and exact fraction (``1,234.5 = 2469/2``)."""
    value = sp.sympify(value)
    if value.is_Integer:
        return f"{int(value):,}"
    if value.is_Rational:
        return f"{float(value):,.3f} (= {value.p}/{value.q})"
    return _polynomial(sp.expand(value))


SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def _polynomial(expr: sp.Expr) -> str:
    """An expanded count in its size names, highest degree first: ``2,048·S² + 21,921,792·S``."""
    symbols = sorted(expr.free_symbols, key=lambda symbol: symbol.name)
    try:
        poly = sp.Poly(expr, *symbols)
    except sp.PolynomialError:
        return str(expr)
    if not all(coefficient.is_Integer for coefficient in poly.coeffs()):
        return str(expr)
    terms = []
    for powers, coefficient in sorted(poly.terms(), key=lambda term: (-sum(term[0]), [-p for p in term[0]])):
        factors = [f"{symbol}{str(power).translate(SUPERSCRIPTS) if power > 1 else ''}"
                   for symbol, power in zip(symbols, powers) if power]
        magnitude = abs(int(coefficient))
        text = "·".join(([f"{magnitude:,}"] if magnitude != 1 or not factors else []) + factors)
        terms.append(("- " if coefficient < 0 else "+ ") + text)
    joined = " ".join(terms)
    return joined[2:] if joined.startswith("+ ") else "-" + joined[2:]


def _scaled(value: Number, unit: str) -> str:
    return fmt_scaled(value, unit) if isinstance(value, int) else f"{_count(value)} {unit}"


def _bytes(value: Number) -> str:
    return fmt_bytes(int(value)) if sp.sympify(value).is_Integer else f"{_count(value)} B"


def _tokens(phase: Phase) -> str:
    batch = f"{phase.batch} × " if phase.batch != 1 else ""
    return f"{batch}{phase.tokens} tokens"


def _split(phase: Phase) -> str:
    total = sp.sympify(phase.report.totals.macs)
    shares = []
    for part in PARTS:
        macs = phase.split.get(part, 0)
        if macs == 0 and part == "other":
            continue
        share = f" ({float(sp.sympify(macs) / total) * 100:.1f}%)" if total.is_Integer and total else ""
        shares.append(f"{part} {_count(macs)}{share}")
    return "; ".join(shares)


def _closed_form(phase: Phase) -> str | None:
    terms = closed_form_terms(phase)
    if terms is None:
        return None
    seq = phase.tokens
    a, b, c = (sp.expand(sum(sp.sympify(t[i]) for t in terms)) for i in (1, 2, 3))

    def parts(index: int) -> str:
        return " + ".join(f"{_count(t[index])} {t[0]}" for t in terms if t[index] != 0) or "none"

    text = (
        f"MACs = a·{seq}² + b·{seq}{' + c' if c != 0 else ''} with a = {_count(a)} ({parts(1)}: QKᵀ and AV, "
        f"every query against every key) and b = {_count(b)} per token ({parts(2)})"
    )
    return text + (f" and c = {_count(c)} once per sequence ({parts(3)})" if c != 0 else "")


def _kv_cache(summary: LLMSummary) -> str | None:
    cache = summary.cache
    if cache is None:
        return None
    text = f"{cache.bytes_per_token:,} B per token ({str(cache.dtype).removeprefix('torch.')}"
    shapes = set(cache.layers)
    if len(shapes) == 1:
        heads, key_dim, value_dim = shapes.pop()
        dims = f"{key_dim} head dim" if key_dim == value_dim else f"{key_dim}+{value_dim} K+V dims"
        pair = "2 × " if key_dim == value_dim else ""
        text += f": {pair}{len(cache.layers)} layers × {heads} KV heads × {dims} × {cache.dtype.itemsize} B"
    text += ")"
    for phase, tokens, what in (
        (summary.prefill, summary.prefill and summary.prefill.tokens, "after the prompt"),
        (summary.decode, summary.decode and summary.decode.context, "at the context"),
    ):
        if phase is not None:
            text += f"; {_bytes(summary.kv_cache_bytes(tokens, phase.batch))} {what} ({tokens} tokens"
            text += f" × batch {phase.batch})" if phase.batch != 1 else ")"
    return text


def summary_items(summary: LLMSummary) -> list[tuple[str, str]]:
    """The block's lines; every count names its unit."""
    items = [
        ("Model", f"{summary.model}, {summary.dtype}; attention {summary.attention.describe()}"),
        ("Params", f"{summary.params:,} total, {summary.non_embedding_params:,} non-embedding "
                   "(without the nn.Embedding tables)"),
    ]
    moe = summary.moe
    if moe is not None:
        items.append((
            "Experts",
            f"{moe.layers} MoE layers of {moe.experts} experts, top-{moe.top_k} per token; active params "
            f"{summary.active_params:,} of {summary.params:,}. MACs are the expected routed cost: each token runs "
            f"through {moe.top_k} experts (which ones depends on the data, how many does not)",
        ))
    prefill, decode = summary.prefill, summary.decode
    if prefill is not None:
        totals = prefill.report.totals
        items.append(("Prefill", f"{_tokens(prefill)}: {_scaled(totals.macs, 'MACs')}, "
                                 f"{_scaled(totals.flops, 'FLOPs')}; {_count(prefill.macs_per_token)} MACs per token"))
        closed = _closed_form(prefill)
        if closed:
            items.append(("Prefill in " + str(prefill.tokens), closed))
    if decode is not None:
        items.append(("Decode", f"1 token after {decode.context} cached (batch {decode.batch}): "
                                f"{_count(decode.macs_per_token)} MACs per token, "
                                f"{_count(decode.flops_per_token)} FLOPs per token"))
    generation = summary.generation
    if generation is not None:
        items.append(("Generate", f"prompt of {generation.prompt} tokens + {generation.steps} decode steps: "
                                  f"{_scaled(generation.macs, 'MACs')}, {_scaled(generation.flops, 'FLOPs')}"))
    kv_cache = _kv_cache(summary)
    items.append(("KV cache", kv_cache or "none (no self-attention cache: an encoder or encoder-decoder)"))
    for phase in (prefill, decode):
        if phase is not None:
            items.append((f"MAC split ({phase.name})", _split(phase)))
    if summary.cache is not None:
        items.append(("Causal mask", CAUSAL_NOTE))
    return items


def _json_number(value: Any) -> Any:
    value = sp.sympify(value)
    if value.is_Integer:
        return int(value)
    if value.is_Rational:
        return {"numerator": int(value.p), "denominator": int(value.q)}
    return str(value)


def _phase_dict(phase: Phase) -> dict[str, Any]:
    totals = phase.report.totals
    return {
        "tokens": phase.tokens, "batch": phase.batch, "context": phase.context,
        "macs": _json_number(totals.macs), "flops": _json_number(totals.flops),
        "macs_per_token": _json_number(phase.macs_per_token), "flops_per_token": _json_number(phase.flops_per_token),
        "mac_split": {part: _json_number(phase.split.get(part, 0)) for part in PARTS},
    }


def summary_dict(summary: LLMSummary) -> dict[str, Any]:
    """The block as JSON-ready data (``llm`` in the JSON report); counts are integers, names' counts strings."""
    cache = summary.cache
    data: dict[str, Any] = {
        "model": summary.model,
        "dtype": summary.dtype,
        "params": summary.params,
        "non_embedding_params": summary.non_embedding_params,
        "active_params": summary.active_params,
        "attention": {"kind": summary.attention.kind, "heads": summary.attention.heads,
                      "kv_heads": summary.attention.kv_heads},
        "kv_cache_bytes_per_token": cache.bytes_per_token if cache else None,
        "kv_cache_dtype": str(cache.dtype).removeprefix("torch.") if cache else None,
        "prefill": _phase_dict(summary.prefill) if summary.prefill else None,
        "decode": _phase_dict(summary.decode) if summary.decode else None,
        "generate": None,
        "moe": None,
        "causal_mask": "full square" if cache else None,
    }
    if summary.prefill is not None and (terms := closed_form_terms(summary.prefill)):
        data["prefill"]["closed_form_terms"] = {
            part: {"seq_squared": _json_number(a), "seq": _json_number(b), "constant": _json_number(c)}
            for part, a, b, c in terms
        }
    if summary.generation is not None:
        g = summary.generation
        data["generate"] = {"prompt": g.prompt, "steps": g.steps, "macs": _json_number(g.macs),
                            "flops": _json_number(g.flops)}
    if summary.moe is not None:
        m = summary.moe
        data["moe"] = {"experts": m.experts, "top_k": m.top_k, "layers": m.layers, "expert_params": m.expert_params,
                       "cost": "expected routed cost: top_k experts per token"}
    return data


def to_json(summary: LLMSummary, depth: int | None = None, evaluated: Any = ()) -> str:
    """The report of the summary's main phase as JSON, with ``totals.kv_cache_bytes`` and ``llm`` added."""
    data = to_dict(summary.main.report, depth)
    kv_bytes = summary.phase_kv_cache_bytes
    data["totals"]["kv_cache_bytes"] = None if kv_bytes is None else _json_number(kv_bytes)
    data["llm"] = summary_dict(summary)
    if evaluated:
        data["evaluated"] = list(evaluated)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def block(summary: LLMSummary, output_format: str) -> str:
    """The block in ``output_format`` (table, markdown, latex, csv or html), to follow that format's report."""
    items = summary_items(summary)
    if output_format == "markdown":
        return "\n".join([f"### {TITLE}", "", *(f"- **{k}**: {markdown.escape(v)}" for k, v in items)]) + "\n"
    if output_format == "latex":
        rows = [f"{latex.escape(k)} & {latex.escape(v)} \\\\" for k, v in items]
        return "\n".join(["", f"% {TITLE}", "\\begin{tabular}{lp{0.7\\linewidth}}", "\\toprule", *rows,
                          "\\bottomrule", "\\end{tabular}"]) + "\n"
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["llm_summary", "value"])
        writer.writerows(items)
        return "\n" + buffer.getvalue()
    if output_format == "html":
        rows = [f"<tr><th>{html_escape(k)}</th><td>{html_escape(v)}</td></tr>" for k, v in items]
        return "\n".join([f"<h3>{TITLE}</h3>", "<table>", *rows, "</table>"]) + "\n"
    width = max(len(k) for k, _ in items)
    return "\n".join([TITLE, *(f"  {k:<{width}}  {v}" for k, v in items)]) + "\n"


def with_block(report_text: str, summary: LLMSummary, output_format: str) -> str:
    """``report_text`` (the main phase's report in ``output_format``) with the summary block added: before the
    end of the HTML body or the LaTeX table environment, after everything else."""
    text = block(summary, output_format)
    for end in ("</body></html>\n", "\\end{table}\n"):
        if report_text.endswith(end):
            return report_text[: -len(end)] + text + end
    return report_text + ("\n" if output_format == "table" else "") + text
