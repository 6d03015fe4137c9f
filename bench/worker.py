"""One measurement in a fresh process: ``python bench/worker.py TASK_JSON OUT_JSON``.

run.py starts one worker per (task, tool), with the peers venv's interpreter, so that no tool's imports,
patches or leftover hooks affect another's numbers, and so that peak RSS (``ru_maxrss``) is the worker's own.
Model construction and the deep copy made before each timed call are outside the timed region.
"""

from __future__ import annotations

import copy
import gc
import json
import resource
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import models
import tools


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _timed(tool: tools.Tool, model: torch.nn.Module, shape: tuple[int, ...]) -> tuple[float, tools.Counted]:
    fresh = copy.deepcopy(model)
    gc.collect()
    start = time.perf_counter()
    counted = tool.count(fresh, shape)
    return time.perf_counter() - start, counted


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:200]


def time_models(tool: tools.Tool, names: list[str], repeats: int) -> dict[str, Any]:
    """Best of ``repeats`` timed counts per model, after one untimed warm-up call."""
    results: dict[str, Any] = {}
    for name in names:
        shape = models.input_shape(name)
        try:
            model = models.build(name, tool.device)
            _timed(tool, model, shape)
            runs = [_timed(tool, model, shape) for _ in range(repeats)]
        except Exception as exc:  # noqa: BLE001  (any failure of a tool is a result to report)
            results[name] = {"error": _error(exc)}
            continue
        reported, params, ok = runs[-1][1]
        results[name] = {"times": [t for t, _ in runs], "reported": reported, "params": params, "ok": ok}
    return results


def overhead(names: list[str], rounds: int) -> dict[str, Any]:
    """flopcalc, FlopCounterMode and a bare forward on meta, interleaved in one process (best of ``rounds``
    each), so that load from other processes on the machine hits all three alike."""
    trio = [tools.FLOOR, tools.TOOLS["FlopCounterMode"], tools.FLOPCALC]
    results: dict[str, Any] = {}
    for name in names:
        model, shape = models.build(name, "meta"), models.input_shape(name)
        times: dict[str, list[float]] = {tool.name: [] for tool in trio}
        for tool in trio:
            _timed(tool, model, shape)
        for round_ in range(rounds):
            for tool in trio[round_ % 3:] + trio[: round_ % 3]:
                times[tool.name].append(_timed(tool, model, shape)[0])
        results[name] = times
    return results


def zoo(tool: tools.Tool, names: list[str]) -> dict[str, Any]:
    """One count per model (what a user pays once per model), after a warm-up on resnet18."""
    results: dict[str, Any] = {}
    try:
        _timed(tool, models.build("resnet18", tool.device), models.input_shape("resnet18"))
    except Exception as exc:  # noqa: BLE001  (any failure of a tool is a result to report)
        return {"error": f"warm-up on resnet18: {_error(exc)}"}
    for name in names:
        shape = models.input_shape(name)
        try:
            start = time.perf_counter()
            model = models.build(name, tool.device)
            built = time.perf_counter() - start
            start = time.perf_counter()
            reported, params, ok = tool.count(model, shape)
            counted = time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001  (any failure of a tool is a result to report)
            results[name] = {"error": _error(exc)}
            continue
        results[name] = {"build": built, "time": counted, "reported": reported, "params": params, "ok": ok}
        del model
        gc.collect()
    return results


def big(tool: tools.Tool) -> dict[str, Any]:
    """The 6.4B encoder on meta: one timed count in this fresh process, and the process's peak RSS."""
    small = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 1)
    tool.count(small.to(tool.device).eval(), (1, 4, 8))  # imports and first-call set-up, untimed
    start = time.perf_counter()
    model = models.build(models.ENCODER, tool.device)
    built = time.perf_counter() - start
    before = _peak_rss_mib()
    start = time.perf_counter()
    reported, params, _ = tool.count(model, models.ENCODER_SHAPE)
    counted = time.perf_counter() - start
    return {
        "build": built,
        "time": counted,
        "rss_before_mib": before,
        "peak_rss_mib": _peak_rss_mib(),
        "reported": reported,
        "params": params,
    }


def conventions(names: list[str]) -> dict[str, Any]:
    """What every convention of flopcalc.conventions predicts for ``names``, to compare with the peers' numbers."""
    import flopcalc
    from flopcalc.conventions import apply_all

    found: dict[str, Any] = {}
    for name in names:
        model = models.build(name, "meta")
        report = flopcalc.analyze(model, models.flopcalc_input(name))
        predicted = {result.name: result.to_dict() for result in apply_all(report)}
        found[name] = {"macs": report.totals.macs, "conventions": predicted, "ok": report.ok,
                       "mismatches": [f"{row.name}: {'; '.join(row.mismatches)}" for row in report.mismatches],
                       "uncounted": dict(report.uncounted)}
    return found


def closed_form(name: str, forwards: int) -> dict[str, Any]:
    """1,000 evaluations of the closed form vs ``forwards`` concrete analyze() calls and bare meta forwards."""
    import random

    import flopcalc

    if not hasattr(flopcalc, "symbolic"):
        return {"error": "not available: flopcalc.symbolic does not exist"}
    model = models.build(name, "meta")
    start = time.perf_counter()
    report = flopcalc.analyze(model, (1, 3, "H", "W"))
    traced = time.perf_counter() - start
    rng = random.Random(0)
    sizes = [(rng.randrange(64, 512), rng.randrange(64, 512)) for _ in range(1000)]
    start = time.perf_counter()
    closed = [report.evaluate(H=h, W=w)["macs"] for h, w in sizes]
    evaluated = time.perf_counter() - start
    start = time.perf_counter()
    concrete = [flopcalc.analyze(model, (1, 3, h, w)).totals.macs for h, w in sizes[:forwards]]
    analyzed = time.perf_counter() - start
    start = time.perf_counter()
    for h, w in sizes[:forwards]:
        with torch.no_grad():
            model(torch.empty(1, 3, h, w, device="meta"))
    bare = time.perf_counter() - start
    wrong = [(s, c, k) for s, c, k in zip(sizes, closed, concrete) if c != k]
    return {"model": name, "traced": traced, "evaluations": len(sizes), "evaluate": evaluated,
            "forwards": forwards, "analyze": analyzed, "bare": bare, "checked": len(concrete),
            "wrong": [f"{h}x{w}: closed {c}, concrete {k}" for (h, w), c, k in wrong[:5]], "n_wrong": len(wrong)}


def profile(name: str, top: int) -> dict[str, Any]:
    """Where flopcalc.analyze spends its time on ``name``: cProfile, by function (own time) and by file."""
    import cProfile
    import pstats

    import flopcalc

    model = models.build(name, "meta")
    shape = models.flopcalc_input(name)
    flopcalc.analyze(copy.deepcopy(model), shape)
    profiler = cProfile.Profile()
    profiler.enable()
    flopcalc.analyze(model, shape)
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(tottime for _, _, tottime, _, _ in stats.values())
    rows = []
    by_file: dict[str, float] = {}
    for (file, line, function), (_, calls, tottime, cumtime, _) in stats.items():
        where = _short(file)
        rows.append({"where": f"{where}:{function}", "line": line, "calls": calls, "own": tottime, "cum": cumtime})
        by_file[where] = by_file.get(where, 0.0) + tottime
    rows.sort(key=lambda r: -r["own"])
    cumulative = sorted((r for r in rows if "flopcalc/" in r["where"]), key=lambda r: -r["cum"])
    return {"model": name, "total": total, "own": rows[:top], "flopcalc_cum": cumulative[:top],
            "by_file": sorted(by_file.items(), key=lambda kv: -kv[1])[:top],
            "callees": _callees(stats, [r["where"] for r in cumulative[1:7]], 6)}


def _callees(stats: dict[Any, Any], callers: list[str], top: int) -> dict[str, list[tuple[str, float]]]:
    """For each of ``callers`` (file:function), the functions it calls and their cumulative time from it."""
    found: dict[str, list[tuple[str, float]]] = {caller: [] for caller in callers}
    for (file, _, function), (_, _, _, _, called_by) in stats.items():
        for (caller_file, _, caller_function), (_, _, _, cumtime) in called_by.items():
            caller = f"{_short(caller_file)}:{caller_function}"
            if caller in found:
                found[caller].append((f"{_short(file)}:{function}", cumtime))
    return {caller: sorted(callees, key=lambda c: -c[1])[:top] for caller, callees in found.items()}


def _short(file: str) -> str:
    """A source path from its package root (flopcalc/..., torch/...), or the name of a built-in."""
    for root in ("flopcalc/", "torch/", "torchvision/", "sympy/"):
        if root in file:
            return root + file.rsplit(root, 1)[1]
    return file


def main() -> None:
    task = json.loads(sys.argv[1])
    out = Path(sys.argv[2])
    tool = tools.TOOLS[task["tool"]]
    tool.activate(Path(sys.prefix))
    warnings.filterwarnings("ignore")
    try:
        if task["kind"] == "time":
            result: dict[str, Any] = time_models(tool, task["models"], task["repeats"])
        elif task["kind"] == "overhead":
            result = overhead(task["models"], task["rounds"])
        elif task["kind"] == "zoo":
            result = zoo(tool, task["models"])
        elif task["kind"] == "big":
            result = big(tool)
        elif task["kind"] == "versions":
            result = {name: tools.version(each, Path(sys.prefix)) for name, each in tools.TOOLS.items()}
        elif task["kind"] == "conventions":
            result = conventions(task["models"])
        elif task["kind"] == "closed":
            result = closed_form(task["model"], task["forwards"])
        elif task["kind"] == "profile":
            result = profile(task["model"], task.get("top", 15))
        else:
            raise ValueError(f"unknown task kind {task['kind']!r}")
    except Exception as exc:  # noqa: BLE001  (any failure of a tool is a result to report)
        traceback.print_exc()
        result = {"error": _error(exc)}
    out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
