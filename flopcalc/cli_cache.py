"""The output of ``flopcalc``'s fixed commands, written ahead of time so that the command prints it at once.

``--version``, the help pages, the list of formulas, each formula's symbolic sheet (text and LaTeX) and the
convolution ratios depend on nothing the user gives, yet computing them costs typer's import (the help) or
sympy's and every layer family's formulas (about 1.5 s). ``python -m flopcalc.cli_cache`` runs each of those
command lines through the live command (:func:`flopcalc.cli.main`, so typer and the sympy formulas produce every
character) and writes what it printed to ``cli_cache.json`` beside this file, with a checksum of each flopcalc
source file the run imported; beside it, ``cli_sheets.txt`` holds each formula's plan for a sheet with numbers
(:mod:`flopcalc.sheet_plan`), which :mod:`flopcalc.sheet_fast` prints from. :mod:`flopcalc.cli_start` answers
from the files only while those sources are unchanged; ``python -m flopcalc.cli_cache --check``
(tests/test_golden.py) regenerates and compares, and ``make golden`` rewrites the files with the goldens.

Help is laid out by click at ``min(terminal columns, 80) - 2``; the pages are written at 80 columns, so they are
used on terminals (and pipes, which click treats as 80 columns) at least 80 wide.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

CACHE = Path(__file__).with_name("cli_cache.json")
SHEETS = Path(__file__).with_name("cli_sheets.txt")
"""Each formula's plan for a sheet with numbers (:mod:`flopcalc.sheet_plan`): a first line with the sources'
checksums as JSON, then one line per formula, ``NAME<tab>JSON``, so that a command reads only its own."""
PACKAGE = Path(__file__).resolve().parent
HELP_COLUMNS = 80
"""Terminal width the help pages are written at; click's layout is the same at any width from here up."""


def checksums(paths: Iterable[str]) -> dict[str, int]:
    """CRC-32 of each file's contents (paths relative to the package); -1 for a file that cannot be read.

    One per file, so that two branches that each rewrote the cache after changing different files merge
    without a conflict, and a file changed by both no longer matches either."""
    found = {}
    for relative in paths:
        try:
            found[relative] = zlib.crc32((PACKAGE / relative).read_bytes())
        except OSError:
            found[relative] = -1
    return found


def command_lines() -> list[list[str]]:
    """Every command line whose output is cached: the version, bare ``flopcalc`` and each command's help, the
    formula list, each formula's sheet in text and LaTeX, and each ratio of MACs and of params."""
    import typer.main

    from flopcalc.cli import app
    from flopcalc.registry import REGISTRY
    from flopcalc.render.formulas import RATIOS

    import flopcalc.layers  # noqa: F401  (registers the formulas)

    lines = [["--version"], [], ["--help"]]
    lines += [[command, "--help"] for command in sorted(typer.main.get_command(app).commands)]
    lines.append(["formula"])
    for name in sorted(REGISTRY.formulas):
        lines += [["formula", name], ["formula", name, "--format", "latex"]]
    for kind in RATIOS:
        lines += [["ratio", kind], ["ratio", kind, "--params"]]
    return lines


def _output(argv: Sequence[str]) -> str:
    """What ``flopcalc ARGV`` prints on stdout; it must succeed silently on stderr."""
    from flopcalc.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    status: object = 0
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            main(list(argv))
        except SystemExit as exc:
            status = exc.code
    if status not in (0, None) or stderr.getvalue():
        raise RuntimeError(f"flopcalc {' '.join(argv)} exited {status}: {stderr.getvalue().strip()}")
    return stdout.getvalue()


def _plans() -> dict[str, dict[str, object]]:
    """Each formula's plan for a sheet with numbers, by name (a formula that cannot be planned has none)."""
    from flopcalc.registry import REGISTRY
    from flopcalc.sheet_plan import plan

    found = {name: plan(REGISTRY.formula(name)) for name in sorted(REGISTRY.formulas)}
    return {name: found for name, found in found.items() if found is not None}


def build() -> dict[str, object]:
    """Run every cached command line through the live command and plan every formula's sheet with numbers;
    meant for a fresh process (``python -m``), so that the flopcalc modules loaded afterwards are exactly those
    the outputs came from."""
    os.environ["COLUMNS"] = str(HELP_COLUMNS)
    outputs = {" ".join(argv): _output(argv) for argv in command_lines()}
    plans = _plans()
    sources = sorted(
        Path(module.__file__).resolve().relative_to(PACKAGE).as_posix()
        for name, module in list(sys.modules.items())
        if (name == "flopcalc" or name.startswith("flopcalc.")) and getattr(module, "__file__", None)
    )
    return {"help_columns": HELP_COLUMNS, "outputs": outputs, "plans": plans,
            "sources": checksums(sorted({*sources, "cli_cache.py", "cli_start.py", "sheet_fast.py"}))}


def encode(cache: dict[str, object]) -> str:
    """``cli_cache.json``'s text: the cache without the plans."""
    fixed = {key: value for key, value in cache.items() if key != "plans"}
    return json.dumps(fixed, ensure_ascii=False, indent=0, sort_keys=True) + "\n"


def encode_sheets(cache: dict[str, object]) -> str:
    """``cli_sheets.txt``'s text: the sources' checksums, then one line per formula's plan."""
    lines = [json.dumps(cache["sources"], sort_keys=True)]
    plans: dict[str, object] = cache["plans"]  # type: ignore[assignment]
    lines += [f"{name}\t{json.dumps(plan, ensure_ascii=False, separators=(',', ':'))}" for name, plan in plans.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Write (or --check) flopcalc/cli_cache.json and cli_sheets.txt.")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from a fresh build")
    check = parser.parse_args().check
    cache = build()
    text, sheets = encode(cache), encode_sheets(cache)
    if not check:
        CACHE.write_text(text, encoding="utf-8")
        SHEETS.write_text(sheets, encoding="utf-8")
        return
    stored = CACHE.read_text(encoding="utf-8") if CACHE.exists() else ""
    if stored != text:
        fresh, old = json.loads(text), json.loads(stored) if stored else {}
        changed = [k for k in fresh["outputs"] if fresh["outputs"][k] != old.get("outputs", {}).get(k)]
        what = f"changed output of: {', '.join(changed)}" if changed else "the sources it came from changed"
    elif not SHEETS.exists() or SHEETS.read_text(encoding="utf-8") != sheets:
        what = f"{SHEETS.name}, the formulas' plans, changed"
    else:
        return
    print(f"{CACHE} is out of date ({what}); rewrite it with: python -m flopcalc.cli_cache (or make golden; "
          "after a merge conflict in it or in cli_sheets.txt, take either side and rewrite it)", file=sys.stderr)
    raise SystemExit(1)


if __name__ == "__main__":
    main()
