"""``flopcalc MODEL [options]`` parsed without typer, for the command lines whose meaning is plain.

typer (with click and pydantic) costs about 0.3 s of CPU before the model command starts, a tenth of importing
torch. :func:`model_options` reads the model command's usual forms itself: one model name, the ``analyze``
command's options as ``--name value``, ``--name=value`` or ``-x value``, each value one its type accepts as typed
(digits for a count, a listed choice), each single-valued option at most once. It answers ``None`` for anything
else (help, an unknown or repeated option, a value that starts with ``-``, a count out of range, an unknown
choice, a second positional, another command), which then goes to typer, so every error and help page is
typer's own. The option table mirrors the ``analyze`` command's signature in :mod:`flopcalc.cli`;
``tests/test_cli_fast.py`` checks it against typer's parameters and compares both parsers on many command lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from flopcalc.cli_model import Device, ModelOptions, Optimizer, TimeDevice
from flopcalc.cli_show import Format

COMMANDS = ("analyze", "formula", "ratio", "compare")
"""The command names typer dispatches on; a first word among the others is never a model here."""


def _count(minimum: int) -> Callable[[str], int | None]:
    def parse(text: str) -> int | None:
        return int(text) if re.fullmatch(r"0|[1-9][0-9]{0,17}", text) and int(text) >= minimum else None

    return parse


def _choice(choices: type[Any]) -> Callable[[str], Any]:
    return lambda text: choices(text) if text in {c.value for c in choices} else None


def _path(text: str) -> Path | None:
    return Path(text) if text not in ("", "-") else None


def _text(text: str) -> str:
    return text


_VALUED: dict[str, tuple[str, Callable[[str], Any], bool]] = {  # option: field, parser, repeatable
    "--input": ("inputs", _text, True), "--batch": ("batch", _text, False), "--arg": ("arguments", _text, True),
    "--depth": ("depth", _count(0), False), "--device": ("device", _choice(Device), False),
    "--format": ("output_format", _choice(Format), False), "--output": ("output", _path, False),
    "--at": ("at", _text, True), "--hint": ("hint", _text, True), "--convention": ("convention", _text, False),
    "--seq": ("seq", _text, False), "--context": ("context", _text, False), "--generate": ("generate", _text, False),
    "--dtype": ("dtype", _text, False), "--attention": ("attention", _text, False),
    "--optimizer": ("optimizer", _choice(Optimizer), False), "--hardware": ("hardware", _text, False),
    "--plot": ("plot", _path, False), "--time": ("time", _choice(TimeDevice), False),
    "--repeats": ("repeats", _count(1), False),
}
_SHORT = {"-i": "--input", "-f": "--format", "-o": "--output"}
EXAMPLES = {
    "--input": "3x224x224", "--batch": "8", "--arg": "num_classes=11", "--depth": "1", "--device": "cpu",
    "--format": "json", "--output": "report.txt", "--at": "224x224", "--hint": "H=224", "--convention": "fvcore",
    "--seq": "128", "--context": "4096", "--generate": "128", "--dtype": "bfloat16", "--attention": "eager",
    "--optimizer": "adamw", "--hardware": "h100-sxm", "--plot": "roofline.png", "--time": "cpu", "--repeats": "10",
}
"""A valid value of each option that takes one, for the error that names an option given without its value."""
_FLAGS = ("formulas", "check", "strict", "decode", "backward", "memory")
"""Boolean options, each with its ``--no-`` form."""


def model_options(argv: Sequence[str]) -> ModelOptions | None:
    """The model command's options as typer would parse ``argv``; ``None`` where typer should decide."""
    words = list(argv)
    if words and words[0] == "analyze":
        words = words[1:]
    elif not words or words[0] in COMMANDS:
        return None
    positional: list[str] = []
    fields: dict[str, Any] = {}
    tokens = iter(words)
    for token in tokens:
        if not token.startswith("-") or token == "-":
            positional.append(token)
            continue
        name, has_value, value = token.partition("=")
        name = _SHORT.get(name, name) if not has_value else name
        flag = name.removeprefix("--no-") if name.startswith("--no-") else name.removeprefix("--")
        if flag in _FLAGS and not has_value:
            if flag in fields:
                return None
            fields[flag] = not name.startswith("--no-")
            continue
        if name not in _VALUED or (has_value and not name.startswith("--")):
            return None
        field, parse, repeatable = _VALUED[name]
        value = value if has_value else next(tokens, None)
        if value is None or value.startswith("-") and value != "-":
            return None
        parsed = parse(value)
        if parsed is None or (field in fields and not repeatable):
            return None
        if repeatable:
            fields.setdefault(field, []).append(parsed)
        else:
            fields[field] = parsed
    if len(positional) != 1:
        return None
    return ModelOptions(positional[0], **fields)
