"""The ``flopcalc`` command's entry point: print a fixed command's output at once, hand the rest to typer.

``flopcalc --version``, ``--help`` (and each command's), ``flopcalc formula [NAME] [--format text|latex]`` and
``flopcalc ratio KIND [--params]`` print the same text every time. :mod:`flopcalc.cli_cache` wrote that text from
the live command into ``cli_cache.json``; this module prints it without importing typer or sympy, so those
commands start within a few milliseconds of the interpreter. A formula with values that bind every symbol is
printed from the formula's plan (:mod:`flopcalc.sheet_fast`), also without typer or sympy, and a model command
in its plain forms is parsed by :mod:`flopcalc.cli_fast`, without typer. Anything else (values left unbound or
refused, a model command typer should parse, an unknown name, a narrow terminal for help, a cache whose flopcalc
sources have changed since it was written) goes to :func:`flopcalc.cli.main`, which computes it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from flopcalc.cli_cache import CACHE, checksums


def _formula_arguments(rest: Sequence[str]) -> tuple[list[str], bool] | None:
    """``formula``'s positional arguments and whether ``--format latex`` was asked; ``None`` for any other
    option or format."""
    positional, latex, tokens = [], False, iter(rest)
    for token in tokens:
        if token in ("-f", "--format") or token.startswith("--format="):
            value = token.partition("=")[2] if "=" in token else next(tokens, "")
            if value not in ("text", "latex"):
                return None
            latex = value == "latex"
        elif token.startswith("-"):
            return None
        else:
            positional.append(token)
    return positional, latex


def _formula_key(rest: Sequence[str]) -> str | None:
    """``formula [NAME] [--format|-f text|latex]`` in the cache's spelling; ``None`` for anything else."""
    parsed = _formula_arguments(rest)
    if parsed is None:
        return None
    names, latex = parsed
    if len(names) > 1 or (latex and not names):
        return None
    return " ".join(["formula", *names, *(["--format", "latex"] if latex else [])])


def _sheet_with_values(argv: Sequence[str]) -> str | None:
    """``formula NAME SYMBOL=VALUE ... [--format ...]`` printed from the formula's plan, without sympy."""
    parsed = _formula_arguments(argv[1:]) if argv and argv[0] == "formula" else None
    if parsed is None or len(parsed[0]) < 2:
        return None
    from flopcalc.sheet_fast import sheet_output

    (name, *assignments), latex = parsed
    return sheet_output(name, assignments, latex)


def _ratio_key(rest: Sequence[str]) -> str | None:
    """``ratio KIND [--params]`` in the cache's spelling; ``None`` for anything else."""
    kinds = [token for token in rest if token != "--params"]
    if len(kinds) != 1 or kinds[0].startswith("-"):
        return None
    return " ".join(["ratio", kinds[0], *(["--params"] if "--params" in rest else [])])


def cache_key(argv: Sequence[str]) -> str | None:
    """The cached command line that prints what ``argv`` would, or ``None``."""
    argv = ["--help" if token == "-h" else token for token in argv]
    if len(argv) <= 1 and (not argv or argv[0] in ("--help", "--version")):
        return " ".join(argv)
    if len(argv) == 2 and argv[1] == "--help":
        return " ".join(argv)
    if argv[0] == "formula":
        return _formula_key(argv[1:])
    if argv[0] == "ratio":
        return _ratio_key(argv[1:])
    return None


def cached_output(argv: Sequence[str]) -> str | None:
    """What ``flopcalc ARGV`` prints, from the cache, when the cache has it and is current."""
    key = cache_key(argv)
    if key is None:
        return None
    try:
        cache = json.loads(CACHE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if checksums(cache["sources"]) != cache["sources"]:
        return None
    if "--help" in key.split() or key == "":
        import shutil

        if shutil.get_terminal_size().columns < cache["help_columns"]:
            return None  # click lays the help out narrower there
    return cache["outputs"].get(key)


def _run_model_command(argv: Sequence[str]) -> None:
    """``flopcalc MODEL ...`` in one of its plain forms, parsed without typer (:mod:`flopcalc.cli_fast`); exits
    when it ran, returns for typer to parse anything else."""
    from flopcalc.cli_fast import model_options

    options = model_options(argv)
    if options is not None:
        from flopcalc.cli_model import exit_after, run_model_command

        exit_after(lambda: run_model_command(options))


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``flopcalc``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    text = cached_output(args)
    if text is None:
        text = _sheet_with_values(args)
    if text is None:
        _run_model_command(args)
        from flopcalc.cli import main as run_command

        run_command(args)  # exits
    else:
        sys.stdout.write(text)
        raise SystemExit(0)
