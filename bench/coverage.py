"""How much of each model's count a matching formula stands behind: the torchvision zoo, a timm sample and
transformers models, each counted once on the meta device.

    python bench/coverage.py                  # every model, a Markdown table on stdout (about 10 minutes)
    python bench/coverage.py resnet50 gpt2    # just these
    python bench/coverage.py --json out.json  # also keep the numbers

timm and transformers models are skipped when the package is not installed. Nothing is downloaded:
torchvision and timm models are built without weights, transformers models from a config object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import models  # noqa: E402

import flopcalc  # noqa: E402
from flopcalc.render.coverage import fmt_share  # noqa: E402

TIMM_SAMPLE = (
    "resnet50", "efficientnet_b0", "mobilenetv3_large_100", "convnext_tiny", "regnety_016", "vit_base_patch16_224",
    "deit_small_patch16_224", "swin_tiny_patch4_window7_224", "beit_base_patch16_224", "coat_lite_tiny",
)
"""Common timm architectures, several with hand-written attention (functional calls in their forward)."""

SEQUENCE = 128
"""Tokens per sequence for the language models."""


def _gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config())


def _bert() -> nn.Module:
    from transformers import BertConfig, BertModel

    return BertModel(BertConfig())


def _llama() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=512, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
                         intermediate_size=1376, vocab_size=32000)
    return LlamaForCausalLM(config)


TRANSFORMERS: dict[str, Callable[[], nn.Module]] = {"gpt2": _gpt2, "bert-base": _bert, "llama-small-gqa": _llama}


def case(name: str) -> tuple[str, Callable[[], nn.Module], Any] | None:
    """Group, builder and input of ``name``; ``None`` when its package is missing."""
    if name in TRANSFORMERS:
        try:
            import transformers  # noqa: F401
        except ImportError:
            return None
        return "transformers", TRANSFORMERS[name], flopcalc.InputSpec((1, SEQUENCE), torch.int64)
    if name.startswith("timm:"):
        try:
            import timm
        except ImportError:
            return None
        return "timm", lambda: timm.create_model(name.removeprefix("timm:")), (1, 3, 224, 224)
    return "torchvision", lambda: models.build(name, "meta"), models.input_shape(name)


def measure(name: str) -> dict[str, Any] | None:
    found = case(name)
    if found is None:
        return None
    group, build, inputs = found
    if group == "torchvision":  # bench/models.py builds on meta, with its fallback for constructors that compute
        model = build()
    else:
        with torch.device("meta"):
            model = build().eval()
    start = time.perf_counter()
    report = flopcalc.analyze(model, inputs, name=name)
    seconds = time.perf_counter() - start
    checked = report.totals.checked
    largest = report.unchecked[0] if report.unchecked else None
    return {
        "model": name, "group": group, "seconds": round(seconds, 2), "macs": report.totals.macs,
        "checked_macs_share": checked.macs_share if checked else None,
        "checked_other_ops_share": checked.ops_share if checked else None,
        "largest_unchecked": None if largest is None else {
            "name": largest.name, "type": largest.type, "macs": largest.macs, "other_ops": largest.other_ops,
        },
        "mismatches": [row.name for row in report.mismatches],
    }


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| model | MACs | checked MACs | checked other ops | largest unchecked (MACs + other ops) |",
        "|---|---:|---:|---:|---|",
    ]
    for r in results:
        largest = r["largest_unchecked"]
        where = "" if largest is None else (
            f"`{largest['name'] or r['model']}` ({largest['type']}) {largest['macs']:,} + {largest['other_ops']:,}"
        )
        lines.append(f"| {r['group']}: {r['model']} | {r['macs']:,} | {fmt_share(r['checked_macs_share'])} | "
                     f"{fmt_share(r['checked_other_ops_share'])} | {where} |")
    return "\n".join(lines)


def summary(results: list[dict[str, Any]]) -> str:
    """The lowest MAC share per group, against the goal (0.99 of MACs)."""
    lines = []
    for group in ("torchvision", "timm", "transformers"):
        shares = [(r["checked_macs_share"], r["model"]) for r in results if r["group"] == group]
        if shares:
            low, model = min(shares, key=lambda s: -1 if s[0] is None else s[0])
            below = sum(1 for share, _ in shares if share is not None and share < 0.99)
            lines.append(f"- {group}: {len(shares)} models, lowest {fmt_share(low)} ({model}), {below} below 99%")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="torchvision names, timm:NAME, gpt2, bert-base, llama-small-gqa")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    names = args.models or [*models.zoo(), *(f"timm:{n}" for n in TIMM_SAMPLE), *TRANSFORMERS]
    results = []
    for name in names:
        print(f"counting {name}", file=sys.stderr)
        result = measure(name)
        if result is not None:
            results.append(result)
    print(table(results))
    print()
    print(summary(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
