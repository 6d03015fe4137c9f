"""Reference numbers for the conventions' tests: every peer counter run on each model, as each prints it.

    python bench/peer_counts.py                       # writes tests/data/peer_counts.json
    python bench/peer_counts.py --models resnet50,vit_b_16 --out counts.json
    python bench/peer_counts.py --models hf_gpt2_2l --merge   # adds or replaces one model's numbers

Each (peer, model list) runs in a fresh worker of the peers environment (bench/.venv-peers, created by
setup_peers.sh; DeepSpeed and calflops are installed there too), on the device the peer needs (tools.py).
The file records the command, the versions and, per model, the input shape and each peer's printed number
(DeepSpeed and calflops print MACs and FLOPs); a transformers model also has its config (built with random
weights, no download) and ``"tokens": true`` (its input is int64 token ids). ``--merge`` replaces or adds the
given models in an existing file and appends the command to its ``commands``.
tests/test_convention_peers.py checks every convention in flopcalc.conventions against it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import models
import tools
from run import VENV, ensure_venv, work

REFERENCE_MODELS = (
    *models.NAMED, "alexnet", "vgg11", "resnet18", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0",
    "densenet121", "shufflenet_v2_x0_5", "squeezenet1_0", "googlenet", "mnasnet0_5", "regnet_y_400mf", "swin_t",
    "inception_v3", *models.HF_CONFIGS, *models.SMALL,
)


def printed(result: dict, name: str) -> object:
    """A peer's printed number for ``name`` from a worker result, or ``{"error": why}``."""
    entry = result.get(name, {"error": result.get("error", "not run")})
    return entry["reported"] if "reported" in entry else {"error": entry.get("error", "no number")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", help="comma-separated model names (default: the reference set)")
    parser.add_argument("--out", type=Path, default=HERE.parent / "tests" / "data" / "peer_counts.json")
    parser.add_argument("--venv", type=Path, default=VENV)
    parser.add_argument("--merge", action="store_true", help="keep the other models already in --out")
    args = parser.parse_args()
    names = args.models.split(",") if args.models else list(REFERENCE_MODELS)
    missing = ensure_venv(args.venv)
    peers = [tool for tool in (*tools.PEERS, *tools.PROFILERS) if tool.package not in missing]
    counts = {tool.name: work(args.venv, {"kind": "zoo", "tool": tool.name, "models": names}) for tool in peers}
    versions = work(args.venv, {"kind": "versions", "tool": "flopcalc"})
    command = "python bench/peer_counts.py" + (f" --models {args.models}" if args.models else "")
    command += " --merge" if args.merge else ""
    kept = json.loads(args.out.read_text()) if args.merge and args.out.exists() else {"commands": [], "models": {}}
    data = {
        "commands": [*kept["commands"], command],
        "versions": {tool.name: versions.get(tool.name, "") for tool in peers},
        "conventions": {tool.name: tool.convention for tool in peers},
        "models": {**kept["models"], **{
            name: {"input": list(models.input_shape(name)),
                   **({"tokens": True, "config": models.HF_CONFIGS[name]}
                      if models.is_language_model(name) else {}),
                   "printed": {tool.name: printed(counts[tool.name], name) for tool in peers}}
            for name in names
        }},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
