"""AlexNet's console table, Markdown and LaTeX compared with tests/golden/, and its rows summed to its totals.

The goldens are rewritten only by ``pytest tests/test_golden.py --update-golden`` (``make golden``); review the
diff before committing. Each test names its golden file explicitly.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torchvision

from flopcalc import analyze
from flopcalc.render.console import plain_text, to_rich
from flopcalc.render.json import to_json
from flopcalc.render.latex import to_latex
from flopcalc.render.markdown import to_markdown

GOLDEN = Path(__file__).parent / "golden"
WIDTH = 120


@pytest.fixture(scope="module")
def alexnet():
    return analyze(torchvision.models.alexnet(weights=None), (1, 3, 224, 224), name="alexnet")


def check_golden(name: str, text: str, update: bool) -> None:
    path = GOLDEN / name
    if update:
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"{path} is missing; create it with: pytest tests/test_golden.py --update-golden"
    assert text == path.read_text(encoding="utf-8"), (
        f"output differs from {path}; if the change is intended: pytest tests/test_golden.py --update-golden"
    )


def test_console(alexnet, update_golden):
    check_golden("alexnet.txt", plain_text(to_rich(alexnet), width=WIDTH), update_golden)


def test_markdown(alexnet, update_golden):
    check_golden("alexnet.md", to_markdown(alexnet, formulas=True), update_golden)


def test_latex(alexnet, update_golden):
    check_golden("alexnet.tex", to_latex(alexnet, formulas=True), update_golden)


def test_seed_totals(alexnet):
    assert alexnet.totals.params == 61_100_840
    convs = (64 * 55 * 55 * 3 * 11 * 11 + 192 * 27 * 27 * 64 * 5 * 5 + 384 * 13 * 13 * 192 * 3 * 3
             + 256 * 13 * 13 * 384 * 3 * 3 + 256 * 13 * 13 * 256 * 3 * 3)
    linears = 9216 * 4096 + 4096 * 4096 + 4096 * 1000
    assert alexnet.totals.macs == convs + linears == 714_188_480


def test_rows_sum_to_totals(alexnet):
    leaves = alexnet.leaves
    assert sum(row.params for row in leaves) == alexnet.totals.params
    assert sum(row.macs for row in leaves) == alexnet.totals.macs
    ops: Counter[str] = Counter()
    for row in leaves:
        ops.update(row.ops)
    assert dict(ops) == dict(alexnet.totals.ops)
    for row in alexnet.rows:  # every container is the sum of its children
        if row.children:
            children = [alexnet.rows[i] for i in row.children]
            assert row.params == sum(child.params for child in children)
            assert row.macs == sum(child.macs for child in children)


def test_json_rows_sum_to_totals(alexnet):
    data = json.loads(to_json(alexnet))
    parents = {layer["parent"] for layer in data["layers"]}
    leaves = [layer for layer in data["layers"] if layer["name"] not in parents]
    assert sum(layer["params"] for layer in leaves) == data["totals"]["params"]
    assert sum(layer["macs"] for layer in leaves) == data["totals"]["macs"]
    assert sum(layer["flops"] for layer in leaves) == data["totals"]["flops"]
