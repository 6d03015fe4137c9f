"""The command line's values read from text: shapes, sizes, points, assignments, constructor arguments, the
accuracy file.

Each parser raises :class:`~flopcalc.errors.InputError` with one line naming what is wrong and what would work.
Only :func:`parse_input` needs torch (for the dtype), and imports it when called, so that ``flopcalc formula``
and ``flopcalc ratio`` start without it.
"""

from __future__ import annotations

import ast
import csv
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flopcalc.errors import InputError

if TYPE_CHECKING:
    from flopcalc.inputs import Dim, InputSpec, ModelInputs

SHAPE_HELP = (
    "dims without the batch joined by x, e.g. 3x224x224, or with capitalised names for a closed form, e.g. 3xHxW; "
    "optional dtype suffix, e.g. 128:int64; NAME=SHAPE for a keyword input, e.g. attention_mask=128:int64"
)

INPUT_DTYPES = (
    "float32", "float16", "bfloat16", "float64", "complex64", "complex128",
    "int64", "int32", "int16", "int8", "uint8", "bool",
)
"""Dtypes an input can be created in: floating point for activations, integers for token ids and indices."""

_INTEGER = re.compile(r"-?[0-9]+")
"""ASCII digits only: ``str.isdigit`` also accepts ``²``, which ``int`` then refuses."""


def _integer(text: str) -> int | None:
    text = text.strip()
    return int(text) if _INTEGER.fullmatch(text) else None


def parse_dim(text: str, whole: str) -> Dim:
    """One dimension: a positive integer, or a name starting with a capital letter (``H``, ``Seq``) for a
    closed form over that size."""
    text = text.strip()
    if text.isidentifier() and text[0].isupper():
        return text
    value = _integer(text)
    if value is None:
        raise InputError(f"malformed input shape {whole!r}: expected {SHAPE_HELP}")
    if value <= 0:
        raise InputError(f"input shape {whole!r} has a dimension <= 0; every dimension must be a positive integer")
    return value


def parse_shape(text: str, batch: Dim = 1) -> InputSpec:
    """``"3x224x224"`` -> ``InputSpec((batch, 3, 224, 224))``; ``"128:int64"`` -> an int64 spec of ``(batch, 128)``;
    ``"3xHxW"`` names two sizes, for closed-form counts.

    Raises:
        InputError: empty, zero or negative dimensions, other characters, or a dtype inputs cannot have.
    """
    import torch

    from flopcalc.inputs import InputSpec

    dims_text, _, dtype_name = text.strip().partition(":")
    if not dims_text:
        raise InputError(f"malformed input shape {text!r}: expected {SHAPE_HELP}")
    dims = tuple(parse_dim(part, text) for part in re.split(r"x|(?<=\d)X(?=\d)", dims_text))
    dtype_name = dtype_name.strip() or "float32"
    if dtype_name not in INPUT_DTYPES:
        raise InputError(
            f"input shape {text!r}: an input cannot be {dtype_name!r}; use one of {', '.join(INPUT_DTYPES)}"
        )
    return InputSpec((batch, *dims), getattr(torch, dtype_name))


def parse_input(text: str, batch: Dim = 1) -> tuple[str | None, InputSpec]:
    """``--input``: ``"3x224x224"`` is positional (name ``None``); ``"attention_mask=128:int64"`` is the forward's
    keyword argument ``attention_mask``."""
    name, sep, shape = text.partition("=")
    if not sep:
        return None, parse_shape(text, batch)
    name = name.strip()
    if not name.isidentifier():
        raise InputError(f"--input {text!r}: {name!r} is not an argument name; write NAME=SHAPE, e.g. mask=128:int64")
    return name, parse_shape(shape, batch)


SIZE_OPTIONS = {"--batch": ("8", "N"), "--seq": ("128", "S"), "--context": ("4096", "P"), "--generate": ("128", "T")}
"""The size options, each with an example number and the name its help suggests for a closed form."""


def parse_size(text: str, option: str) -> Dim:
    """A size option (:data:`SIZE_OPTIONS`): a positive integer, or a name starting with a capital letter for a
    closed form in that size (``--seq S``)."""
    number, name = SIZE_OPTIONS[option]
    text = text.strip()
    if text.isidentifier() and text[0].isupper():
        return text
    value = _integer(text)
    if value is None:
        raise InputError(f"{option} {text}: not a whole number; e.g. {option} {number} (or a capitalised name for "
                         f"a closed form, {option} {name})")
    if value <= 0:
        raise InputError(f"{option} {text}: must be at least 1; e.g. {option} {number}")
    return value


def parse_batch(text: str) -> Dim:
    """``--batch``: a positive integer, or a symbol name (``N``) for a closed form in the batch size."""
    return parse_size(text, "--batch")


def symbols_of(shapes: Sequence[Sequence[Dim]]) -> list[str]:
    """Symbol names in the shapes, in order of first appearance."""
    return list(dict.fromkeys(d for shape in shapes for d in shape if isinstance(d, str)))


def parse_points(text: str, symbols: Sequence[str]) -> list[dict[str, int]]:
    """``--at 224x224,320x320``: one size per symbol, in the order the symbols first appear in the inputs."""
    points = []
    for point in text.split(","):
        values = [_integer(v) for v in point.strip().split("x")]
        if len(values) != len(symbols) or not all(v is not None and v > 0 for v in values):
            raise InputError(
                f"malformed --at point {point!r}: give {len(symbols)} positive sizes joined by x for "
                f"{'x'.join(symbols)}, points separated by commas, e.g. --at {'x'.join(['224'] * len(symbols))}"
            )
        points.append({name: int(v) for name, v in zip(symbols, values, strict=True) if v is not None})
    return points


def parse_assignment(text: str, example: str = "C_in=3") -> tuple[str, int]:
    """``"C_in=3"`` -> ``("C_in", 3)``; the value may be negative here, the formula says which values it takes."""
    name, sep, value = text.partition("=")
    number = _integer(value)
    if not sep or not name.strip() or number is None:
        raise InputError(f"malformed value {text!r}: expected SYMBOL=INTEGER, e.g. {example}")
    return name.strip(), number


def parse_assignments(texts: Sequence[str]) -> dict[str, int]:
    """``formula``'s ``SYMBOL=VALUE`` arguments, each symbol once: a second value for a symbol is refused
    rather than one of them silently used."""
    values: dict[str, list[int]] = {}
    for text in texts:
        name, value = parse_assignment(text)
        values.setdefault(name, []).append(value)
    for name, given in values.items():
        if len(given) > 1:
            times = "twice" if len(given) == 2 else f"{len(given)} times"
            listed = ", ".join(f"{name}={value}" for value in given)
            raise InputError(f"{name} is given {times} ({listed}); give each symbol once")
    return {name: given[0] for name, given in values.items()}


def parse_hint(text: str) -> tuple[str, int]:
    """``--hint H=224``: a positive size."""
    name, value = parse_assignment(text, example="--hint H=224")
    if value <= 0:
        raise InputError(f"--hint {text!r}: a size must be a positive integer, e.g. --hint {name}=224")
    return name, value


def parse_argument(text: str) -> tuple[str, Any]:
    """``--arg num_classes=11`` -> ``("num_classes", 11)``: a keyword argument for the model's constructor, its
    value a Python literal (number, string in quotes, True/False/None, tuple, list, dict)."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise InputError(f"malformed --arg {text!r}: expected NAME=VALUE, e.g. --arg num_classes=11")
    try:
        return name, ast.literal_eval(value.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise InputError(
            f"--arg {text!r}: {value.strip()!r} is not a Python literal; write numbers, True/False/None, "
            f"tuples, or strings in quotes, e.g. --arg \"{name}='{value.strip()}'\""
        ) from None


def model_inputs(inputs: Sequence[str], batch: str) -> ModelInputs:
    """The ``--input`` values as forward arguments: plain shapes positional, ``NAME=SHAPE`` as keywords."""
    from flopcalc.inputs import ModelInputs

    size = parse_batch(batch)
    args: list[InputSpec] = []
    kwargs: dict[str, InputSpec] = {}
    for text in inputs:
        name, spec = parse_input(text, size)
        if name is None:
            args.append(spec)
        elif name in kwargs:
            raise InputError(f"--input {name}=... is given twice; give each keyword input once")
        else:
            kwargs[name] = spec
    return ModelInputs(tuple(args), kwargs)


def parse_arguments(texts: Sequence[str] | None) -> dict[str, Any]:
    """``--arg NAME=VALUE`` (repeatable) as the constructor's keyword arguments."""
    arguments: dict[str, Any] = {}
    for text in texts or ():
        name, value = parse_argument(text)
        if name in arguments:
            raise InputError(f"--arg {name}=... is given twice; give each constructor argument once")
        arguments[name] = value
    return arguments


def read_accuracy(path: Path) -> dict[str, float]:
    """The ``model`` and ``accuracy`` columns of a CSV file (header names compared case-insensitively)."""
    if not path.is_file():
        raise InputError(f"no such accuracy file: {path}; give a CSV with columns model,accuracy")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return _accuracies(path, csv.DictReader(handle))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV") from None
    except csv.Error as exc:
        raise InputError(f"{path} is not a readable CSV file: {exc}") from None


def _accuracies(path: Path, reader: csv.DictReader[str]) -> dict[str, float]:
    columns = {name.strip().lower(): name for name in reader.fieldnames or ()}
    if "model" not in columns or "accuracy" not in columns:
        raise InputError(f"{path} needs a header with columns model,accuracy; it has {', '.join(reader.fieldnames) if reader.fieldnames else 'no header line'}")
    found: dict[str, float] = {}
    for line, record in enumerate(reader, start=2):
        model, accuracy = record[columns["model"]], record[columns["accuracy"]]
        if model is None or accuracy is None:
            raise InputError(f"{path}:{line}: the row has no {'model' if model is None else 'accuracy'} value")
        try:
            found[model.strip()] = float(accuracy)
        except ValueError:
            raise InputError(f"{path}:{line}: accuracy {accuracy!r} is not a number") from None
    return found
