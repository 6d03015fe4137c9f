"""How fast the ``flopcalc`` command starts: each command's CPU time (user + system), best of several fresh
processes, as a ratio to ``python -c pass`` (and a model command to ``python -c "import torch"``, the floor of
any torch tool). CPU time rather than wall time: on a shared machine other jobs stretch wall time by several
times, while the CPU a process needs barely moves.

    python bench/startup.py            # 7 rounds of every command (`make bench` runs it after bench/run.py)
    python bench/startup.py --runs 3

Targets (issue 13): ``--help``, ``--version``, ``formula`` and ``ratio`` within 3 × ``python -c pass`` (they never
import torch; without values they print the output cached by ``flopcalc.cli_cache``, a formula with values
binding every symbol is printed from its plan by ``flopcalc.sheet_fast``); ``flopcalc resnet50 --input
3x224x224`` within 1.3 × ``python -c "import torch"``. A model command is also shown against the floors that any
tool running it on meta pays: torch's first ``torch._check``, which every meta kernel's shape checks call and
which imports torch's symbolic-shape module and sympy; importing torchvision (which imports ``torch._dynamo``);
and a bare meta forward in a fresh process (torch's meta kernels import ``torch._dynamo`` on first use). The command runs through the
checkout's ``cli.py`` shim (the same entry point as the installed ``flopcalc``), so it measures this checkout's
code in this interpreter.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOPCALC = [sys.executable, str(ROOT / "cli.py")]

_META_FORWARD = """
import sys, torch
sys.path.insert(0, "bench")
{build}
with torch.device("meta"):
    model = factory().eval()
with torch.no_grad():
    model(torch.empty({shape}, device="meta"))
"""
FLOORS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    'python -c "import torch"': [sys.executable, "-c", "import torch"],
    # context only: the first torch._check (every meta kernel's shape checks) imports torch's symbolic-shape
    # module and sympy (torch/__init__.py, _check_with), so no meta forward of any model starts below this
    'python -c "import torch; torch._check(True)"': [sys.executable, "-c", "import torch; torch._check(True)"],
    # context only: what any tool that runs these models on meta cannot avoid
    'python -c "import torch, torchvision"': [sys.executable, "-c", "import torch, torchvision"],
    "bare meta forward of resnet50": [sys.executable, "-c", _META_FORWARD.format(
        build="import torchvision\nfactory = torchvision.models.resnet50", shape=(1, 3, 224, 224))],
    "bare meta forward of plain_cnn": [sys.executable, "-c", _META_FORWARD.format(
        build="from plain_cnn import plain_cnn as factory", shape=(1, 3, 64, 64))],
}
CONTEXT = {  # a model command's other floors, shown beside its target
    "resnet50": ('python -c "import torch; torch._check(True)"', 'python -c "import torch, torchvision"',
                 "bare meta forward of resnet50"),
    "bench/plain_cnn.py:plain_cnn": ('python -c "import torch; torch._check(True)"', "bare meta forward of plain_cnn"),
}

COMMANDS = [  # (shown as, arguments, floor, target ratio)
    ("flopcalc --version", ["--version"], "python -c pass", 3.0),
    ("flopcalc --help", ["--help"], "python -c pass", 3.0),
    ("flopcalc ratio depthwise-separable", ["ratio", "depthwise-separable"], "python -c pass", 3.0),
    ("flopcalc formula conv2d", ["formula", "conv2d"], "python -c pass", 3.0),
    ("flopcalc formula conv2d C_in=3 C_out=64 K_h=3 K_w=3 H=32 W=32",
     ["formula", "conv2d", "C_in=3", "C_out=64", "K_h=3", "K_w=3", "H=32", "W=32"], "python -c pass", 3.0),
    ("flopcalc resnet50 --input 3x224x224", ["resnet50", "--input", "3x224x224"], 'python -c "import torch"', 1.3),
    ("flopcalc bench/plain_cnn.py:plain_cnn --input 3x64x64",  # a model that is not from torchvision
     ["bench/plain_cnn.py:plain_cnn", "--input", "3x64x64"], 'python -c "import torch"', 1.3),
]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def best_of(command: list[str], runs: int) -> float:
    """The least CPU time (user + system) of ``runs`` fresh processes."""
    times = []
    for _ in range(runs):
        start = _children_cpu()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=ROOT)
        times.append(_children_cpu() - start)
    return min(times)


def best_of_rounds(commands: dict[str, list[str]], runs: int) -> dict[str, float]:
    """The least CPU time of each command over ``runs`` rounds, each round running every command once, so
    that other jobs' load in any one moment falls on a command and its floor alike."""
    best = dict.fromkeys(commands, float("inf"))
    for _ in range(runs):
        for name, command in commands.items():
            best[name] = min(best[name], best_of(command, 1))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="rounds of fresh processes (the best is kept)")
    runs = parser.parse_args().runs
    measured = best_of_rounds({**FLOORS, **{shown: [*FLOPCALC, *arguments] for shown, arguments, _, _ in COMMANDS}},
                              runs)
    floors = {name: measured[name] for name in FLOORS}
    print(f"### CLI start-up: CPU time, best of {runs} fresh processes\n")
    print("| Command | CPU time | Ratio | Target | Met |")
    print("|---|---:|---:|---:|:---:|")
    for name, seconds in floors.items():
        shown = name if name.startswith("bare") else f"`{name}`"
        print(f"| {shown} | {seconds:.3f} s | 1.00 × itself | | |")
    for shown, arguments, floor, target in COMMANDS:
        seconds = measured[shown]
        ratio = seconds / floors[floor]
        met = "yes" if ratio <= target else "no"
        context = "".join(f"; {seconds / floors[other]:.2f} × {other if other.startswith('bare') else f'`{other}`'}"
                          for other in CONTEXT.get(arguments[0], ()))
        print(f"| `{shown}` | {seconds:.3f} s | {ratio:.2f} × `{floor}`{context} | {target:g} × | {met} |")


if __name__ == "__main__":
    main()
