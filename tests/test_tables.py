"""Tables a reader can use: no number cut at any terminal width, rows that add up with ``(self)`` rows, a
Status legend under every table, totals-only and ``--at`` views in every format.

The attention model: three Linear(4, 4) projections of 40 tokens, ``softmax(q kᵀ / 2) v`` in the model's own
forward. q kᵀ: 40·40·4 = 6,400 MACs, weights·v: 40·40·4 = 6,400 MACs, 12,800 in all, each a functional row
(``← @``); softmax over 40 rows of 40 (a functional row too): 40·40 = 1,600 exp, 40·39 = 1,560 add, 1,600 div.
The halving is the model's own work, its ``(self)`` row: 40·40 = 1,600 div. Each projection: 40·4·4 = 640 MACs,
4·4 + 4 = 20 params, 40·4 = 160 bias adds.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
import torchvision
from rich.console import Console
from torch import nn

from flopcalc import analyze
from flopcalc.render import cells, totals
from flopcalc.render.compare import ComparisonEntry
from flopcalc.render.console import comparison_to_rich, to_plain_text, to_rich
from flopcalc.render.csv import to_csv
from flopcalc.render.html import to_html
from flopcalc.render.json import to_json
from flopcalc.render.latex import to_latex
from flopcalc.render.markdown import to_markdown

WIDTHS = (60, 80, 120, 200)
RENDERERS = {"markdown": to_markdown, "latex": to_latex, "csv": to_csv, "json": to_json, "html": to_html,
             "table": to_plain_text}


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.q(x) @ self.k(x).transpose(-2, -1) / 2).softmax(-1) @ self.v(x)


class Determinant(nn.Module):
    """An op without a counting rule (det) in the model's own forward, outside every child."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.det(self.lin(x))


@pytest.fixture(scope="module")
def attention():
    return analyze(Attention(), (1, 40, 4), name="attention")


@pytest.fixture(scope="module")
def resnet50():
    return analyze(torchvision.models.resnet50(), (1, 3, 224, 224), name="resnet50")


def render(renderable, width: int) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None, record=True)
    console.print(renderable)
    return console.export_text()


def whole_numbers(text: str) -> Counter[str]:
    """Every count in ``text`` as written (``1,814,073,344``), each token whole: digits and separators."""
    return Counter(re.findall(r"(?<![\d,.])\d{1,3}(?:,\d{3})*(?![\d,])", text))


def assert_counts_intact(text: str, counts: list[int], width: int) -> None:
    missing = Counter(f"{n:,}" for n in counts) - whole_numbers(text)
    assert not missing, f"at {width} columns these counts are cut or missing: {sorted(missing)}"
    assert max(len(line) for line in text.splitlines()) <= width


@pytest.mark.parametrize("width", WIDTHS)
def test_no_layer_count_is_cut_at_any_width(resnet50, width):
    text = render(to_rich(resnet50), width)
    data = json.loads(to_json(resnet50))
    counts = [layer[key] for layer in data["layers"] for key in ("params", "macs", "other_ops")]
    counts += [data["totals"][key] for key in ("params", "macs", "other_ops", "flops")]
    assert_counts_intact(text, counts, width)
    for row in cells.visible_rows(resnet50):
        assert row.name in text.replace("\n", "") or row.name.split(".")[-1] in text  # folded names stay
    left_out = re.search(r"Left out to fit \d+ columns: ([^.]*)\.", text)
    for column in cells.columns():  # a column is shown or named as left out, never dropped silently
        assert column.header in text or (left_out and column.header in left_out.group(1)) or "Stacked" in text
    assert "BatchNorm2\n" not in text  # a type is never folded inside the word


@pytest.fixture(scope="module")
def compared():
    return [analyze(torchvision.models.get_model(name), (1, 3, 224, 224), name=name)
            for name in ("resnet18", "mobilenet_v2", "alexnet")]


@pytest.mark.parametrize("width", WIDTHS)
def test_no_comparison_count_is_cut_at_any_width(compared, width):
    reports = compared
    text = render(comparison_to_rich([ComparisonEntry(r.model, r) for r in reports]), width)
    counts = [n for r in reports for n in (r.totals.params, r.totals.macs, r.totals.flops)]
    assert 1_814_073_344 in counts  # resnet18's MACs, the number the issue saw cut to 1,814,073,34
    assert_counts_intact(text, counts, width)
    assert all(r.model in text for r in reports)


FLOPCALC = Path(sys.executable).parent / "flopcalc"


@pytest.mark.skipif(shutil.which("script") is None or not FLOPCALC.exists(), reason="needs script and flopcalc")
def test_a_real_80_column_terminal_keeps_every_digit():
    command = f"stty cols 80; {FLOPCALC} compare resnet18 alexnet --input 3x224x224"
    done = subprocess.run(["script", "-qc", command, "/dev/null"], capture_output=True, text=True, timeout=600)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", done.stdout).replace("\r", "")
    assert "1,814,073,344" in text and "714,188,480" in text  # resnet18 and alexnet MACs, whole
    assert "resnet18" in text and "alexnet" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_the_models_own_work_is_a_self_row(attention):
    own = attention.rows[0].own
    assert own is not None and own.name == "(self)" and own.type == "Attention.forward"
    assert own.macs == 0 and dict(own.ops) == {"div": 40 * 40}
    rows = cells.visible_rows(attention)
    assert [row.name for row in rows] == ["q", "k", "← @", "← Tensor.softmax", "v", "← @#2", "(self)"]
    assert sum(row.macs for row in rows) == attention.totals.macs == 3 * 640 + 2 * 6_400
    shares = [cells.share(row, attention) for row in rows]
    assert round(sum(shares), 9) == 100  # % MACs adds up: 3 × 640 / 14,720 + 2 × 6,400 / 14,720


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_self_rows_and_the_legend_appear_in_every_format(attention, fmt):
    text = RENDERERS[fmt](attention, None, False)
    assert "(self)" in text and "6,400" in text.replace("6400", "6,400")
    if fmt not in ("json", "csv"):
        for status, _ in cells.STATUS_LEGEND:
            assert status in text
        assert "formula and executed operators agree" in text and "own forward did outside its child" in text


def test_the_uncounted_mark_is_on_the_row_where_the_op_ran():
    report = analyze(Determinant(), (1, 3, 3))
    by_name = {row.name: values for row, values in cells.layer_cells(report)}
    assert by_name["(self)"]["status"] == "measured-only*" and by_name["lin"]["status"] == "match"
    assert cells.UNCOUNTED_LEGEND in cells.legend(cells.visible_rows(report))
    assert "measured-only*" in to_plain_text(report)


def test_a_block_with_a_residual_add_gets_a_self_row():
    report = analyze(torchvision.models.resnet18(), (1, 3, 64, 64))
    own = report.row("layer1.0").own
    # the residual add of BasicBlock: 64 channels · 16 · 16 = 16,384 adds; no params, no MACs
    assert own is not None and own.name == "layer1.0 (self)" and own.params == 0 and own.macs == 0
    assert dict(own.ops) == {"add": 64 * 16 * 16}
    names = [row.name for row in cells.visible_rows(report, depth=3)]
    assert names.index("layer1.0 (self)") == names.index("layer1.0.relu#2") + 1  # after the block's children
    assert "layer1.0 (self)" not in [row.name for row in cells.visible_rows(report, depth=2)]


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_depth_zero_is_the_totals_alone_in_every_format(attention, fmt):
    text = RENDERERS[fmt](attention, 0, False)
    assert "14,720" in text or "14720" in text  # 3 × 640 + 12,800 MACs
    if fmt == "json":
        assert json.loads(text)["layers"] == []
    elif fmt == "csv":
        (total,) = csv.DictReader(io.StringIO(text))
        assert total["name"] == "Total" and total["macs"] == "14720"
    else:
        assert "Output shape" not in text and "Linear" not in text  # no layer table


EVALUATED = [
    {"at": {"H": 8}, "params": 1_234, "macs": 56_789, "flops": 114_000, "source": "closed form"},
    {"at": {"H": 9}, "params": 1_234, "macs": 71_000, "flops": 142_500, "source": "concrete"},
]


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_at_points_appear_in_every_format(attention, fmt):
    text = RENDERERS[fmt](attention, None, False, evaluated=EVALUATED)
    if fmt == "json":
        assert json.loads(text)["evaluated"] == EVALUATED
        return
    numbers = text if fmt == "csv" else text.replace(",", "")
    assert "H=8" in text and "H=9" in text and "56789" in numbers and "142500" in numbers
    assert "concrete" in text and "closed form" in text


def test_csv_has_a_flops_column_and_a_total_line(attention):
    *rows, total, at8, at9 = csv.DictReader(io.StringIO(to_csv(attention, evaluated=EVALUATED)))
    # a projection: 2 × 640 MACs + 160 bias adds = 1,440 FLOPs
    assert rows[0]["name"] == "q" and rows[0]["flops"] == "1440"
    # total: 2 × 14,720 + 3 × 160 bias adds + 1,600 exp + 1,560 add + 2 × 1,600 div = 36,280
    assert (total["depth"], total["name"], total["flops"]) == ("0", "Total", "36280")
    assert at8["name"] == "Total at H=8" and at8["type"] == "closed form" and at9["macs"] == "71000"
    # other ops are what the FLOPs hold beyond 2 × MACs: 114,000 - 2 × 56,789 = 422; 142,500 - 2 × 71,000 = 500
    assert (at8["other_ops"], at9["other_ops"]) == ("422", "500")


def test_a_long_latex_table_breaks_across_pages(resnet50):
    long = to_latex(resnet50)
    assert len(cells.visible_rows(resnet50)) > 40
    assert "\\begin{longtable}" in long and "\\endhead" in long and "\\begin{table}" not in long
    assert long.count("\\caption") == 1 and "usepackage{longtable}" in long
    short = analyze(Attention(), (1, 40, 4))
    assert "\\begin{longtable}" not in to_latex(short) and "\\begin{longtable}" in to_latex(short, longtable=True)


def test_repr_is_one_line_and_notebooks_get_html(attention):
    text = repr(attention)  # 7 calls: the model, q, k, v, the two products and the softmax
    assert "\n" not in text and len(text) < 200
    assert text == "<Report attention: input 1x40x4, 60 params, 14,720 MACs, 7 calls; every formula matches>"
    html = attention._repr_html_()
    assert html.startswith("<div>") and "<table>" in html and "6,400" in html and "<html>" not in html


def test_units_and_the_keras_note(attention):
    items = dict(totals.totals_items(attention))
    assert "torchinfo counts the frozen params only" in items["Non-trainable params"]
    assert "1 kB = 1024 B" in items["Parameter memory"]
