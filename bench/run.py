"""Benchmark flopcalc against its peers and torch's FlopCounterMode, in one run.

    python bench/run.py            # full run, about 7 minutes on 2 cores (`make bench`)
    python bench/run.py --quick    # fewer repeats, 50 forwards instead of 1,000 (scaled)
    python bench/run.py --zoo-cpu  # also run the zoo through the tools that need real weights (+25 minutes or more)
    python bench/run.py --json results.json     # also keep the raw numbers
    python bench/run.py --load results.json     # print the tables again from kept numbers

The peers live in their own environment (bench/.venv-peers, or $PEERS_VENV), created on first use by
setup_peers.sh; every measurement runs in a fresh worker process of that environment (worker.py). The tables
go to stdout as Markdown, progress to stderr. Sections: counting time on three models, the torchvision zoo,
the 6.4B-parameter encoder on meta (time and peak RSS), closed-form evaluation vs forwards, counts compared
with the reason for each difference, and a cProfile of flopcalc wherever it misses a target.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import models
import tables
import tools

VENV = Path(os.environ.get("PEERS_VENV", HERE / ".venv-peers"))

TIMEOUT_S = 1200


def ensure_venv(venv: Path) -> set[str]:
    """Create the peers venv if it is not there yet; return the peers that could not be installed."""
    if not (venv / ".installed").exists():
        print(f"creating {venv} (torch, torchvision, peers, flopcalc); about 2 minutes", file=sys.stderr)
        process = subprocess.run(
            ["bash", str(HERE / "setup_peers.sh")], env={**os.environ, "PEERS_VENV": str(venv)},
            stderr=subprocess.PIPE, text=True, check=False,
        )
        noise = "is ignored: it is neither a file nor a directory"  # pip's note on local index folders
        print("\n".join(line for line in process.stderr.splitlines() if noise not in line), file=sys.stderr)
        if process.returncode:
            raise SystemExit(f"setup_peers.sh failed with exit status {process.returncode}")
    missing = venv / "missing.txt"
    return set(missing.read_text().split()) if missing.exists() else set()


def work(venv: Path, task: dict[str, Any]) -> dict[str, Any]:
    """Run one task in a fresh worker process and return its JSON result (or ``{"error": ...}``)."""
    label = " ".join(str(task.get(k, "")) for k in ("kind", "tool", "model")).strip()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        try:
            process = subprocess.run(
                [str(venv / "bin" / "python"), str(HERE / "worker.py"), json.dumps(task), str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=TIMEOUT_S, check=False,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {TIMEOUT_S} s"}
        if not out.exists():
            tail = process.stderr.strip().splitlines()[-1:] or ["no output"]
            result: dict[str, Any] = {"error": f"worker exited with {process.returncode}: {tail[0]}"}
        else:
            result = json.loads(out.read_text())
    print(f"  {label}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return result


def measure(venv: Path, quick: bool, zoo_cpu: bool) -> dict[str, Any]:
    missing = ensure_venv(venv)
    peers = [tool for tool in tools.PEERS if tool.package not in missing]
    counters = [tools.FLOPCALC, *peers]
    results: dict[str, Any] = {
        "quick": quick,
        "machine": tables.machine(),
        "missing": sorted(missing),
        "versions": work(venv, {"kind": "versions", "tool": "flopcalc"}),
    }
    repeats = 3 if quick else 7
    print("counting time on the named models", file=sys.stderr)
    named = [tools.FLOOR, tools.CPU_FORWARD, *counters]
    results["named"] = {
        tool.name: work(venv, {"kind": "time", "tool": tool.name, "models": list(models.NAMED), "repeats": repeats})
        for tool in named
    }
    results["overhead"] = work(
        venv, {"kind": "overhead", "tool": "flopcalc", "models": ["resnet50", "vit_b_16"], "rounds": 5 if quick else 15}
    )
    results["conventions"] = work(venv, {"kind": "conventions", "tool": "flopcalc", "models": list(models.NAMED)})
    print("the torchvision classification zoo", file=sys.stderr)
    zoo_tools = [tool for tool in (tools.FLOOR, tools.CPU_FORWARD, *counters) if zoo_cpu or tool.device == "meta"]
    zoo = models.zoo()
    results["zoo"] = {tool.name: work(venv, {"kind": "zoo", "tool": tool.name, "models": zoo}) for tool in zoo_tools}
    print("the 6.4B-parameter encoder on meta, one fresh process per tool", file=sys.stderr)
    results["big"] = {
        tool.name: work(venv, {"kind": "big", "tool": tool.name})
        for tool in (tools.FLOOR, *counters) if tool.device == "meta"
    }
    print("closed form vs forwards", file=sys.stderr)
    results["closed"] = work(
        venv, {"kind": "closed", "tool": "flopcalc", "model": "resnet50", "forwards": 50 if quick else 1000}
    )
    results["profiles"] = {
        model: work(venv, {"kind": "profile", "tool": "flopcalc", "model": model})
        for model in tables.missed_targets(results)
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and forwards")
    parser.add_argument("--zoo-cpu", action="store_true", help="also the zoo on the tools that need real weights")
    parser.add_argument("--json", type=Path, help="also write the raw numbers to this file")
    parser.add_argument("--load", type=Path, help="print the tables from numbers kept with --json; run nothing")
    parser.add_argument("--venv", type=Path, default=VENV, help=f"the peers environment (default {VENV})")
    args = parser.parse_args()
    if args.load:
        results = json.loads(args.load.read_text())
    else:
        start = time.perf_counter()
        results = measure(args.venv, args.quick, args.zoo_cpu)
        results["wall_s"] = time.perf_counter() - start
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    print(tables.render(results))


if __name__ == "__main__":
    main()
