"""Why each tool's count differs from flopcalc's: each peer's convention, written as terms over flopcalc's rows.

:func:`features` (run in the flopcalc worker) sums flopcalc's per-module rows by module type: calls, input and
output elements, MACs, bias adds and parameters, plus what attention needs. Each peer's convention is then a
list of labelled terms, in MACs, that turn flopcalc's MAC total into the number that peer reports (the rules
are those read from each peer's source, see shared/research/peers.md). ``explain`` returns the terms and the
residual: a residual of 0 means the disagreement is fully accounted for by the listed conventions.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

Features = dict[str, dict[str, int]]
Term = tuple[str, int]

_ATTENTION = "MultiheadAttention"


def _units(report: Any) -> Iterator[Any]:
    """The rows that partition the model's count: a row with a formula (its subtree is inside it), a leaf, or
    the ops a formula-less container ran itself (yielded as the container row with ``self`` set)."""
    stack = [0] if report.rows else []
    while stack:
        row = report.rows[stack.pop()]
        if row.bound is not None or not row.children:
            yield row, False
        else:
            yield row, True
            stack.extend(row.children)


def features(report: Any, model: Any) -> Features:
    """flopcalc's count of ``model`` summed by module type (see the module docstring)."""
    found: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row, own in _units(report):
        if own:
            found[f"{row.type} (own ops)"]["macs"] += int(row.measured_self.macs)
            continue
        entry = found[row.type]
        entry["calls"] += 1
        entry["in"] += math.prod(row.input_shapes[0]) if row.input_shapes else 0
        entry["out"] += math.prod(row.output_shapes[0]) if row.output_shapes else 0
        entry["macs"] += int(row.macs)
        entry["bias"] += int(row.ops.get("bias_add", 0))
        entry["params"] += int(row.params)
        if row.type == _ATTENTION:
            _attention(entry, row, model.get_submodule(row.name.split("#")[0]))
    found["batch"]["n"] = report.input_shapes[0][0]
    return {kind: dict(values) for kind, values in found.items()}


def _attention(entry: dict[str, int], row: Any, module: Any) -> None:
    """q.k and attention.v products, score elements and softmax rows of one nn.MultiheadAttention call."""
    query, key = row.input_shapes[0], row.input_shapes[1]
    if len(query) == 2:  # unbatched (L, E)
        batch, length, source = 1, query[0], key[0]
    elif module.batch_first:  # (N, L, E)
        batch, length, source = query[0], query[1], key[1]
    else:  # (L, N, E)
        batch, length, source = query[1], query[0], key[0]
    embed, heads = module.embed_dim, module.num_heads
    entry["attn_macs"] += 2 * batch * length * source * embed
    entry["scores"] += batch * heads * length * source
    entry["rows"] += batch * heads * length
    entry["queries"] += batch * length * embed


def _sum(found: Features, key: str, match: Callable[[str], bool]) -> int:
    return sum(values.get(key, 0) for kind, values in found.items() if match(kind))


def _is(*names: str) -> Callable[[str], bool]:
    return lambda kind: kind in names


def _batch_norm(kind: str) -> bool:
    return kind.startswith("BatchNorm")


def _layer_norm(kind: str) -> bool:
    """nn.LayerNorm and its subclasses (torchvision's LayerNorm2d)."""
    return kind.startswith("LayerNorm")


def _flop_counter_mode(f: Features) -> list[Term]:
    return []  # conv, linear, matmul and attention products, bias excluded: flopcalc's MACs (its FLOPs are 2x)


def _ptflops_aten(f: Features) -> list[Term]:
    return [("bias adds counted as MACs (convolution, addmm)", _sum(f, "bias", lambda k: True))]


def _thop(f: Features) -> list[Term]:
    return [
        ("BatchNorm/LayerNorm 4 per element (2, doubled when affine)",
         4 * (_sum(f, "out", _batch_norm) + _sum(f, "out", _is("LayerNorm")))),
        ("AdaptiveAvgPool (kernel+1) per output", _sum(f, "in", _is("AdaptiveAvgPool2d"))
         + _sum(f, "out", _is("AdaptiveAvgPool2d"))),
        ("AvgPool 1 per output", _sum(f, "out", _is("AvgPool2d"))),
        ("nn.MultiheadAttention has no rule: 0", -_sum(f, "macs", _is(_ATTENTION))),
    ]


def _ultralytics_thop(f: Features) -> list[Term]:
    return [
        ("BatchNorm/LayerNorm (and subclasses) 4 per element",
         4 * (_sum(f, "out", _batch_norm) + _sum(f, "out", _layer_norm))),
        ("AdaptiveAvgPool 1 per input + 1 per output", _sum(f, "in", _is("AdaptiveAvgPool2d"))
         + _sum(f, "out", _is("AdaptiveAvgPool2d"))),
        ("AvgPool 1 per input in a window + 1 per output", _sum(f, "in", _is("AvgPool2d"))
         + _sum(f, "out", _is("AvgPool2d"))),
        ("attention softmax 3S-1 per row", sum(
            3 * v.get("scores", 0) - v.get("rows", 0) for k, v in f.items() if k == _ATTENTION)),
    ]


def _ptflops_pytorch(f: Features) -> list[Term]:
    activations = _is("ReLU", "ReLU6", "GELU", "ELU", "PReLU", "LeakyReLU", "SiLU")
    pools = _is("MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d")
    return [
        ("bias adds counted as MACs", _sum(f, "bias", lambda k: True)),
        ("BatchNorm 2 per element (affine)", 2 * _sum(f, "out", _batch_norm)),
        ("LayerNorm 1 per element (its hook reads `.affine`, which LayerNorm lacks)",
         _sum(f, "out", _is("LayerNorm"))),
        ("activations 1 per element, twice: module hook + patched F.*", 2 * _sum(f, "out", activations)),
        ("pooling 1 per input element, twice: module hook + patched F.*", 2 * _sum(f, "in", pools)),
        ("attention: softmax 1 per score, query scaling 1 per element",
         _sum(f, "scores", _is(_ATTENTION)) + _sum(f, "queries", _is(_ATTENTION))),
    ]


def _fvcore(f: Features) -> list[Term]:
    return [
        ("BatchNorm (eval) 2 per element (affine)", 2 * _sum(f, "out", _batch_norm)),
        ("LayerNorm 5 per element ('a rough estimate')", 5 * _sum(f, "out", _layer_norm)),
        ("adaptive_avg_pool 1 per input element", _sum(f, "in", _is("AdaptiveAvgPool2d"))),
        ("scaled_dot_product_attention unsupported: q.k and attention.v missed",
         -_sum(f, "attn_macs", _is(_ATTENTION))),
    ]


def _torchinfo(f: Features) -> list[Term]:
    batch = f["batch"]["n"]
    per_batch = [k for k, v in f.items() if v.get("params") and "Conv" not in k and k != _ATTENTION]
    return [
        ("Conv: params x output positions, so the bias add counts as a MAC", _sum(f, "bias", lambda k: "Conv" in k)),
        ("other layers with parameters: params x batch, not per position",
         sum(batch * f[k]["params"] - f[k]["macs"] for k in per_batch)),
        ("nn.MultiheadAttention: 0 (its in_proj parameters are not named weight/bias)",
         -_sum(f, "macs", _is(_ATTENTION))),
    ]


CONVENTIONS: dict[str, Callable[[Features], list[Term]]] = {
    "FlopCounterMode": _flop_counter_mode,
    "thop": _thop,
    "ultralytics-thop": _ultralytics_thop,
    "ptflops (pytorch)": _ptflops_pytorch,
    "ptflops (aten)": _ptflops_aten,
    "fvcore": _fvcore,
    "torchinfo": _torchinfo,
}


def explain(tool: str, reported_macs: float, flopcalc_macs: int, found: Features) -> tuple[list[Term], float]:
    """The non-zero convention terms of ``tool`` and what they leave unexplained (0: fully explained)."""
    terms = [(label, value) for label, value in CONVENTIONS[tool](found) if value]
    return terms, reported_macs - flopcalc_macs - sum(value for _, value in terms)
