"""AlexNet's console table, Markdown and LaTeX compared with tests/golden/, and its rows summed to its totals.

The goldens are rewritten only by ``pytest tests/test_golden.py --update-golden`` (``make golden``); review the
diff before committing. Each test names its golden file explicitly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def test_cli_cache(update_golden):
    """``flopcalc/cli_cache.json``, the fixed commands' output (``--help``, ``formula NAME``, ``ratio``; see
    flopcalc.cli_cache), is what the live command prints now; ``--update-golden`` rewrites it."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "flopcalc.cli_cache", *([] if update_golden else ["--check"])],
                          cwd=root, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr


def test_console(alexnet, update_golden):
    check_golden("alexnet.txt", plain_text(to_rich(alexnet), width=WIDTH), update_golden)


def test_markdown(alexnet, update_golden):
    check_golden("alexnet.md", to_markdown(alexnet, formulas=True), update_golden)


def test_latex(alexnet, update_golden):
    check_golden("alexnet.tex", to_latex(alexnet, formulas=True), update_golden)


# name: (params, MACs, other ops), by hand. Convs: params C_in·C_out·K² + C_out, MACs C_out·H·W·C_in·K², bias adds
# C_out·H·W; ReLU one compare per element; 3×3 max pool 8 compares per output; the 6→6 adaptive pool one tap
# per output: 1 div each; linear: params C_in·C_out + C_out, MACs C_in·C_out, C_out bias adds.
ALEXNET_LAYERS = {
    "features.0": (3 * 64 * 11 * 11 + 64, 64 * 55 * 55 * 3 * 11 * 11, 64 * 55 * 55),  # 23,296 70,276,800 193,600
    "features.1": (0, 0, 64 * 55 * 55),
    "features.2": (0, 0, 64 * 27 * 27 * 8),  # 373,248
    "features.3": (64 * 192 * 25 + 192, 192 * 27 * 27 * 64 * 25, 192 * 27 * 27),  # 307,392 223,948,800 139,968
    "features.4": (0, 0, 192 * 27 * 27),
    "features.5": (0, 0, 192 * 13 * 13 * 8),  # 259,584
    "features.6": (192 * 384 * 9 + 384, 384 * 13 * 13 * 192 * 9, 384 * 13 * 13),  # 663,936 112,140,288 64,896
    "features.7": (0, 0, 384 * 13 * 13),
    "features.8": (384 * 256 * 9 + 256, 256 * 13 * 13 * 384 * 9, 256 * 13 * 13),  # 884,992 149,520,384 43,264
    "features.9": (0, 0, 256 * 13 * 13),
    "features.10": (256 * 256 * 9 + 256, 256 * 13 * 13 * 256 * 9, 256 * 13 * 13),  # 590,080 99,680,256 43,264
    "features.11": (0, 0, 256 * 13 * 13),
    "features.12": (0, 0, 256 * 6 * 6 * 8),  # 73,728
    "avgpool": (0, 0, 256 * 6 * 6),  # 9,216 div
    "classifier.0": (0, 0, 0),
    "classifier.1": (9216 * 4096 + 4096, 9216 * 4096, 4096),  # 37,752,832 37,748,736
    "classifier.2": (0, 0, 4096),
    "classifier.3": (0, 0, 0),
    "classifier.4": (4096 * 4096 + 4096, 4096 * 4096, 4096),  # 16,781,312 16,777,216
    "classifier.5": (0, 0, 4096),
    "classifier.6": (4096 * 1000 + 1000, 4096 * 1000, 1000),  # 4,097,000 4,096,000
}


def test_golden_rows_are_the_hand_counts():
    """Each layer line of the console golden shows the hand-counted params, MACs and other ops, in that order."""
    lines: dict[str, list[str]] = {}
    for line in (GOLDEN / "alexnet.txt").read_text().splitlines():
        if line.strip():
            lines.setdefault(line.split()[0], line.split())  # the first: the table's Total line, not "Total params"
    for name, (params, macs, other) in ALEXNET_LAYERS.items():
        words = lines[name]
        assert words[3:5] == [f"{params:,}", f"{macs:,}"] and words[6] == f"{other:,}", name
    other_ops = sum(other for _, _, other in ALEXNET_LAYERS.values())
    # bias 494,184 + compares 1,199,744 + div 9,216 = 1,703,144; FLOPs 2 × 714,188,480 + 1,703,144
    assert other_ops == 1_703_144 and 2 * 714_188_480 + other_ops == 1_430_080_104
    assert lines["Total"][1:5] == ["61,100,840", "714,188,480", "100.0", "1,703,144"]
    assert "1,430,080,104 FLOPs" in (GOLDEN / "alexnet.txt").read_text()


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
