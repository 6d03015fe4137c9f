"""The speed targets of issue 13, one row each with the measured ratio and whether it is met.

    python bench/targets.py              # every target (about 4 minutes here)
    python bench/targets.py --quick      # fewer rounds, 200 analyses for the memory row
    python bench/targets.py --only 1 3   # some targets
    python bench/targets.py --profile resnet50 [--closed-form]   # where analyze() spends its time
    python bench/targets.py --profile llama-gqa --closed-form    # ... of a language model's prefill (or llama, gpt2)

Times are CPU time of this process (``time.process_time``), best of several rounds in which the compared calls
alternate, so that load from other jobs on a shared machine hits both sides alike; start-up and memory are
measured in fresh processes. The bare forward is the model called on a meta input under ``torch.no_grad()``
with no mode and no hooks: the floor any counter that runs the model starts from. Models come from
``bench/models.py`` (built on meta, in eval mode); the closed form of a language model uses the Llama config
shipped in ``examples/llama-gqa``, Llama's and GPT-2's default configs (transformers, if installed).
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import models  # noqa: E402  (bench/models.py)
import startup  # noqa: E402  (bench/startup.py)

import flopcalc  # noqa: E402
from flopcalc.symbolic import DEFAULT_HINTS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FORWARD_MODELS = ("resnet50", "vit_b_16", "convnext_tiny", "mobilenet_v3_large")


@dataclass(frozen=True)
class Row:
    target: str
    measured: str
    met: bool


def cpu_time(call: Callable[[], Any]) -> float:
    gc.collect()
    start = time.process_time()
    call()
    return time.process_time() - start


def interleaved(calls: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """The best CPU time of each call over ``rounds`` rounds, the order rotating every round."""
    names = list(calls)
    best = dict.fromkeys(names, float("inf"))
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            best[name] = min(best[name], cpu_time(calls[name]))
    return best


def bare_forward(model: torch.nn.Module, shape: tuple[int, ...]) -> Callable[[], Any]:
    def run() -> None:
        with torch.no_grad():
            model(torch.empty(shape, device="meta"))

    return run


def checked_analysis(model: torch.nn.Module, inputs: Any) -> Callable[[], Any]:
    """``analyze()`` with its per-layer check; a report that does not pass it stops the benchmark."""

    def run() -> None:
        report = flopcalc.analyze(model, inputs)
        if not report.ok:
            raise AssertionError(f"{report!r} did not pass its per-layer check")

    return run


def target_forward(rounds: int) -> list[Row]:
    """Target 1: analyze() within 1.15 x a bare meta forward. The row also shows the first analysis of the model
    in the process (new formula points, and kernels no earlier meta pass ran), which the target does not time."""
    rows = []
    for name in FORWARD_MODELS:
        model, shape = models.build(name, "meta"), models.input_shape(name)
        bare, analysis = bare_forward(model, shape), checked_analysis(model, shape)
        bare()  # first call: imports, torch's kernel registrations
        first = cpu_time(analysis)
        best = interleaved({"bare": bare, "analyze": analysis}, rounds)
        ratio = best["analyze"] / best["bare"]
        rows.append(Row(f"1. analyze() ≤ 1.15 × bare meta forward, {name}",
                        f"{ratio:.2f}× ({best['analyze'] * 1e3:.0f} ms / {best['bare'] * 1e3:.0f} ms); first "
                        f"analysis of the model {first / best['bare']:.2f}× ({first * 1e3:.0f} ms)", ratio <= 1.15))
    return rows


def target_zoo(rounds: int) -> list[Row]:
    """Target 2: the classification zoo analysed and checked within 1.2 x its bare meta forwards.

    Per model: one untimed bare forward, then ``rounds`` rounds of both. Two sums: the first analysis of each
    model (flopcalc's formula memo cold for that model's layers, what a user pays once) and the best one."""
    first = best_analysis = best_bare = 0.0
    names = models.zoo()
    for name in names:
        model, shape = models.build(name, "meta"), models.input_shape(name)
        bare, analysis = bare_forward(model, shape), checked_analysis(model, shape)
        bare()
        first += cpu_time(analysis)
        best = interleaved({"bare": bare, "analyze": analysis}, rounds)
        best_analysis, best_bare = best_analysis + best["analyze"], best_bare + best["bare"]
        del model
    ratio = first / best_bare
    return [
        Row(f"2. zoo ({len(names)} models) analysed and checked ≤ 1.2 × its bare meta forwards",
            f"{ratio:.2f}× first analysis of each model ({first:.2f} s / {best_bare:.2f} s); "
            f"{best_analysis / best_bare:.2f}× best of {rounds}; every report passes its check", ratio <= 1.2),
    ]


def _closed_form_row(label: str, symbolic: Callable[[], Any], concrete: Callable[[], Any], rounds: int) -> Row:
    """Both sides warmed up once (the first symbolic pass of a process also pays for torch's symbolic-shape
    machinery warming up, which the row shows apart), then the best of several rounds of each."""
    concrete()
    first_symbolic = cpu_time(symbolic)
    best_concrete = interleaved({"concrete": concrete}, rounds)["concrete"]
    best_symbolic = interleaved({"symbolic": symbolic}, max(2, rounds // 3))["symbolic"]
    ratio = best_symbolic / best_concrete
    return Row(f"3. closed form ≤ 10 × concrete analyze(), {label}",
               f"{ratio:.1f}× ({best_symbolic * 1e3:,.0f} ms / {best_concrete * 1e3:.0f} ms; the process's first "
               f"closed form {first_symbolic * 1e3:,.0f} ms)", ratio <= 10)


LANGUAGE_MODELS = {
    "llama-gqa": "Llama (examples/llama-gqa, 2 layers), prefill of S tokens",
    "llama": "Llama (default config: Llama-2-7B's shape, 32 layers), prefill of S tokens",
    "gpt2": "GPT-2 (default config), prefill of S tokens",
}


def language_model(name: str) -> Any:
    """A :class:`flopcalc.hf` model of ``LANGUAGE_MODELS`` (needs transformers)."""
    import transformers

    from flopcalc import hf

    if name == "llama-gqa":
        return hf.load(ROOT / "examples" / "llama-gqa")
    return hf.load(transformers.LlamaConfig() if name == "llama" else transformers.GPT2Config())


def target_closed_form(rounds: int) -> list[Row]:
    """Target 3: a closed form within 10 x the concrete analysis of the same model."""
    resnet = models.build("resnet50", "meta")
    rows = [_closed_form_row(
        "resnet50 (1, 3, H, W)", lambda: flopcalc.analyze(resnet, (1, 3, "H", "W")).closed_form,
        lambda: flopcalc.analyze(resnet, (1, 3, 224, 224)), rounds,
    )]
    try:
        import transformers  # noqa: F401
    except ImportError:
        return [*rows, Row("3. closed form, GPT-2 and Llama sequence length", "not run: transformers missing", False)]
    hint = DEFAULT_HINTS[0]  # the size the closed form is traced at
    for name, label in LANGUAGE_MODELS.items():
        llm = language_model(name)
        rows.append(_closed_form_row(
            label, lambda llm=llm: flopcalc.analyze(llm.model, llm.prefill_inputs("S")).closed_form,
            lambda llm=llm: flopcalc.analyze(llm.model, llm.prefill_inputs(hint)), rounds,
        ))
    return rows


def target_startup(runs: int) -> list[Row]:
    """Target 4: CLI start-up (bench/startup.py's commands), CPU time of fresh processes."""
    floors = {name: startup.best_of(command, runs) for name, command in startup.FLOORS.items()}
    rows = []
    for shown, arguments, floor, target in startup.COMMANDS:
        ratio = startup.best_of([*startup.FLOPCALC, *arguments], runs) / floors[floor]
        rows.append(Row(f"4. `{shown}` ≤ {target:g} × `{floor}`", f"{ratio:.2f}×", ratio <= target))
    return rows


_BIG = """
import resource, sys, time, torch
sys.path.insert(0, "bench")
import models, flopcalc
small = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 1)
flopcalc.analyze(small.to("meta").eval(), (1, 4, 8))
model = models.build(models.ENCODER, "meta")
start = time.process_time()
report = flopcalc.analyze(model, models.ENCODER_SHAPE)
seconds = time.process_time() - start
print(seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, report.totals.params, report.ok)
"""

_REPEATED = """
import sys, torch
sys.path.insert(0, "bench")
import models, flopcalc
def rss_mib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20
model = models.build("resnet18", "meta")
for _ in range(100):
    flopcalc.analyze(model, (1, 3, 224, 224))
settled = rss_mib()
for _ in range({count} - 100):
    flopcalc.analyze(model, (1, 3, 224, 224))
print(settled, rss_mib())
"""


def _python(code: str) -> list[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            cwd=ROOT, check=True, env=environment)
    return result.stdout.split()


def target_memory(analyses: int) -> list[Row]:
    """Target 5: the 6.4B encoder on meta in < 1 s and < 1 GB peak RSS; no RSS growth over many analyses."""
    seconds, peak_mib, params, ok = _python(_BIG)
    seconds_f, peak_f = float(seconds), float(peak_mib)
    settled, final = map(float, _python(_REPEATED.replace("{count}", str(analyses))))
    growth = final - settled
    return [
        Row("5. 6.4B-parameter encoder on meta: < 1 s, < 1 GB peak RSS",
            f"{seconds_f * 1e3:.0f} ms CPU, {peak_f:.0f} MiB peak RSS ({int(params):,} params, check "
            f"{'passes' if ok == 'True' else 'FAILS'})", seconds_f < 1 and peak_f < 1000 and ok == "True"),
        Row(f"5. no RSS growth over {analyses:,} analyses (resnet18)",
            f"{growth:+.1f} MiB from analysis 100 to {analyses:,} ({settled:.0f} → {final:.0f} MiB)", growth < 1),
    ]


def profile(name: str, closed_form: bool, top: int) -> None:
    """cProfile of one ``analyze()`` of ``name`` (a torchvision model, or ``llama-gqa``, ``llama`` or ``gpt2``) after an
    untimed first call: flopcalc's functions by cumulative time, with their call counts, which do not depend on
    the machine's load."""
    import cProfile
    import pstats

    if name in LANGUAGE_MODELS:  # a prefill of S tokens (closed form) or of the hint's length
        llm = language_model(name)
        model, inputs = llm.model, llm.prefill_inputs("S" if closed_form else DEFAULT_HINTS[0])
    else:
        model = models.build(name, "meta")
        inputs = (1, 3, "H", "W") if closed_form else models.input_shape(name)
    flopcalc.analyze(model, inputs)
    profiler = cProfile.Profile()
    profiler.runcall(flopcalc.analyze, model, inputs)
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats("flopcalc/", top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and analyses")
    parser.add_argument("--only", type=int, nargs="+", choices=range(1, 6), help="targets to measure")
    parser.add_argument("--profile", metavar="MODEL", help="print a cProfile of analyze(MODEL) instead")
    parser.add_argument("--closed-form", action="store_true", help="with --profile: analyze(MODEL, (1, 3, 'H', 'W')), or a prefill of S tokens")
    args = parser.parse_args()
    if args.profile:
        profile(args.profile, args.closed_form, 40)
        return
    rounds = 5 if args.quick else 15
    only = set(args.only or range(1, 6))
    steps = [
        (1, lambda: target_forward(rounds)), (2, lambda: target_zoo(2 if args.quick else 3)),
        (3, lambda: target_closed_form(rounds)), (4, lambda: target_startup(3 if args.quick else 7)),
        (5, lambda: target_memory(200 if args.quick else 1000)),
    ]
    print("| target | measured | |\n|---|---|---|", flush=True)
    for number, step in steps:
        if number in only:
            for row in step():
                print(f"| {row.target} | {row.measured} | {'met' if row.met else '**not met**'} |", flush=True)


if __name__ == "__main__":
    main()
