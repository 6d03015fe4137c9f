"""The ``>>>`` examples in flopcalc's docstrings run, and give what they show."""

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import flopcalc

MODULES = sorted(
    info.name for info in pkgutil.walk_packages(flopcalc.__path__, "flopcalc.")
    if ">>>" in Path(importlib.util.find_spec(info.name).origin).read_text(encoding="utf-8")
)


def test_the_examples_are_found() -> None:
    assert {"flopcalc.layers.conv", "flopcalc.layers.linear", "flopcalc.layers.norm"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
