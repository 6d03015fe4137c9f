"""Renderers on a small hand-counted model: folding, formulas, escaping, agreement between formats.

The model: Conv2d(3, 8, 3) on 1×3×8×8 (output 8×6×6), ReLU called twice, Linear(288, 10).
conv: params 3·8·3·3 + 8 = 224, MACs 8·6·6·3·3·3 = 7,776, bias adds 8·6·6 = 288;
ReLU: 288 compares per call; linear: params 288·10 + 10 = 2,890, MACs 288·10 = 2,880, bias adds 10.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
import sympy as sp
import torch
from rich.console import Console
from torch import nn

from flopcalc import LayerFormula, Status, analyze
from flopcalc.registry import Bound
from flopcalc.render import cells, totals, units
from flopcalc.render.console import to_plain_text, to_rich
from flopcalc.render.csv import to_csv
from flopcalc.render.html import to_html
from flopcalc.render.json import to_json
from flopcalc.render.latex import escape as latex_escape
from flopcalc.render.latex import to_latex
from flopcalc.render.markdown import escape as markdown_escape
from flopcalc.render.markdown import to_markdown

CONV_PARAMS = 3 * 8 * 3 * 3 + 8
CONV_MACS = 8 * 6 * 6 * 3 * 3 * 3
LINEAR_PARAMS = 288 * 10 + 10
LINEAR_MACS = 288 * 10
TOTAL_MACS = CONV_MACS + LINEAR_MACS
RENDERERS = {"markdown": to_markdown, "latex": to_latex, "csv": to_csv, "json": to_json, "html": to_html,
             "table": to_plain_text}


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3))
        self.act = nn.ReLU()
        self.my_head = nn.Linear(288, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.my_head(self.act(self.act(self.features(x))).flatten(1))


WRONG_RELU = LayerFormula(name="wrong_relu", description="a ReLU formula claiming one MAC", params=sp.Integer(0),
                          macs=sp.Integer(1))


@pytest.fixture(scope="module")
def report():
    return analyze(Tiny(), (1, 3, 8, 8), name="tiny")


@pytest.fixture(scope="module")
def mismatched():
    return analyze(Tiny(), (1, 3, 8, 8), extra={nn.ReLU: lambda m, a, k: Bound(WRONG_RELU, {})}, name="tiny")


def test_rows_and_folding(report):
    names = [row.name for row in cells.visible_rows(report)]
    assert names == ["features", "features.0", "act", "act#2", "my_head"]
    folded = cells.visible_rows(report, depth=1)
    assert [row.name for row in folded] == ["features", "act", "act#2", "my_head"]
    assert folded[0].params == CONV_PARAMS and folded[0].macs == CONV_MACS  # inclusive counts of the subtree


def test_single_layer_model_shows_its_own_row():
    single = analyze(nn.Linear(4, 2), (1, 4))
    assert [row.name for row in cells.visible_rows(single)] == [""]
    assert cells.layer_cells(single)[0][1]["name"] == "Linear"


def test_cells(report):
    by_name = {row.name: values for row, values in cells.layer_cells(report, formulas=True)}
    conv = by_name["features.0"]
    assert conv["params"] == "224" and conv["macs"] == "7,776" and conv["other_ops"] == "288"
    assert conv["output_shape"] == "1×8×6×6"
    assert conv["share"] == f"{100 * CONV_MACS / TOTAL_MACS:.1f}"
    assert conv["formula"] == "conv2d"
    assert conv["params_formula"] == "3·8·3·3 + 8 = 224"
    assert conv["macs_formula"].endswith("= 7,776")
    assert by_name["features"]["params_formula"] == ""  # a container has no formula of its own
    raw = {row.name: values for row, values in cells.layer_cells(report, raw=True)}
    assert raw["features.0"]["macs"] == "7776" and raw["features.0"]["output_shape"] == "1x8x6x6"


def test_totals_items_name_their_units(report):
    items = dict(totals.totals_items(report))
    assert items["Total params"] == f"{CONV_PARAMS + LINEAR_PARAMS:,}"
    assert items["MACs"] == f"{TOTAL_MACS:,} MACs (10.66 K)"  # 7,776 + 2,880 = 10,656
    # other ops: 288 + 10 bias adds, 2 × 288 compares
    assert items["FLOPs"].startswith(f"{2 * TOTAL_MACS + 298 + 576:,} FLOPs")
    # 3,114 float32 params = 12,456 B; /1024 = 12.164 kB; /1024² = 0.012 MB
    assert items["Parameter memory"] == "12,456 B = 12.164 kB = 0.012 MB (float32; 1 kB = 1024 B)"
    assert dict(totals.notes(report))["Convention"] == report.convention


def test_leaf_rows_sum_to_totals(report):
    leaves = [row for row in cells.visible_rows(report) if row.is_leaf]
    assert sum(row.params for row in leaves) == report.totals.params
    assert sum(row.macs for row in leaves) == report.totals.macs
    assert sum(row.other_ops for row in leaves) == report.totals.other_ops


def test_json_schema_and_values(report):
    data = json.loads(to_json(report))
    assert data["schema_version"] == 1 and data["model"] == "tiny" and data["device"] == "meta"
    assert data["inputs"] == [{"shape": [1, 3, 8, 8], "dtype": "float32"}]
    totals = data["totals"]
    for key in ("params", "trainable_params", "non_trainable_params", "buffers", "param_bytes", "macs", "flops"):
        assert isinstance(totals[key], int), key
    assert totals["params"] == CONV_PARAMS + LINEAR_PARAMS and totals["macs"] == TOTAL_MACS
    conv = next(layer for layer in data["layers"] if layer["name"] == "features.0")
    assert conv["parent"] == "features" and conv["depth"] == 2
    assert conv["params"] == CONV_PARAMS and conv["macs"] == CONV_MACS and conv["measured_macs"] == CONV_MACS
    assert conv["ops"] == {"bias_add": 288} and conv["flops"] == 2 * CONV_MACS + 288
    assert conv["status"] == "match" and conv["mismatches"] == []
    assert conv["formula"]["name"] == "conv2d" and conv["formula"]["params_substituted"] == "3·8·3·3 + 8 = 224"
    assert conv["output_shapes"] == [[1, 8, 6, 6]]


RELU_OPS = 8 * 6 * 6  # one compare per element of the 8×6×6 conv output
HAND_ROWS = [  # name, params, MACs, other ops, status: the module docstring's arithmetic
    ("features", CONV_PARAMS, CONV_MACS, 288, "match"),
    ("features.0", CONV_PARAMS, CONV_MACS, 288, "match"),
    ("act", 0, 0, RELU_OPS, "match"),
    ("act#2", 0, 0, RELU_OPS, "match"),
    ("my_head", LINEAR_PARAMS, LINEAR_MACS, 10, "match"),
]


def test_csv_holds_the_hand_counts(report):
    *records, total = csv.DictReader(io.StringIO(to_csv(report)))
    got = [(r["name"], int(r["params"]), int(r["macs"]), int(r["other_ops"]), r["status"]) for r in records]
    assert got == HAND_ROWS
    # the ReLU rows have no MACs, so no share of them to check
    assert [r["checked_macs_share"] for r in records] == ["1.000000", "1.000000", "", "", "1.000000"]
    # the total line: 2 × 10,656 MACs + 298 bias adds + 576 compares = 22,186 FLOPs
    assert (total["depth"], total["name"], total["flops"]) == ("0", "Total", "22186")
    assert (int(total["params"]), int(total["macs"])) == (CONV_PARAMS + LINEAR_PARAMS, TOTAL_MACS)
    assert total["checked_macs_share"] == "1.000000"


def test_json_holds_the_hand_counts(report):
    layers = json.loads(to_json(report))["layers"]
    got = [(layer["name"], layer["params"], layer["macs"], layer["other_ops"], layer["status"]) for layer in layers]
    assert got == HAND_ROWS


@pytest.mark.parametrize("fmt", ["markdown", "latex", "html", "table"])
def test_human_formats_show_the_same_numbers(report, fmt):
    text = RENDERERS[fmt](report, None, True)
    for _, values in cells.layer_cells(report):
        assert values["params"] in text and values["macs"] in text
    assert f"{TOTAL_MACS:,}" in text and "Convention" in text


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_renderers_leave_the_report_unchanged(report, fmt):
    before = to_json(report)
    RENDERERS[fmt](report, 1, True)
    assert to_json(report) == before


@pytest.mark.parametrize(("text", "expected"), [
    ("features.0", "features.0"),
    ("my_head", r"my\_head"),
    ("act#2", r"act\#2"),
    ("50% & $x$", r"50\% \& \$x\$"),
    ("{a}~^\\", r"\{a\}\textasciitilde{}\textasciicircum{}\textbackslash{}"),
    ("1×8", r"1$\times$8"),
], ids=["dot", "underscore", "hash", "percent-amp-dollar", "braces-tilde-caret-backslash", "times"])
def test_latex_escape(text, expected):
    assert latex_escape(text) == expected


def test_latex_table(report):
    tex = to_latex(report, formulas=True)
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "\\quad features.0" in tex and r"my\_head" in tex and r"act\#2" in tex
    assert r"$3 \cdot 8 \cdot 3 \cdot 3 + 8 = 224$" in tex


def test_markdown_escape_and_code_spans(report):
    assert markdown_escape("a|b_c*") == r"a\|b\_c\*"
    md = to_markdown(report)
    assert "| `my_head` | Linear | 1×10 | 2,890 | 2,880 |" in md
    assert "|---|---|---|---:|---:|---:|---:|---|" in md


def test_html_escapes_names():
    model = nn.Sequential()
    model.add_module("<b>&", nn.Linear(4, 2))
    page = to_html(analyze(model, (1, 4)))
    assert "&lt;b&gt;&amp;" in page and "<b>&" not in page


def test_console_via_rich_protocol(report):
    console = Console(color_system=None, width=120, record=True, file=io.StringIO())
    console.print(report)
    text = console.export_text()
    assert "  features.0" in text and "7,776" in text and "Total params" in text
    folded = Console(color_system=None, width=120, record=True, file=io.StringIO())
    folded.print(to_rich(report, depth=1))
    assert "features.0" not in folded.export_text()


def test_parameter_memory_splits_bytes_by_dtype_only_when_mixed():
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2).half())
    items = dict(totals.totals_items(analyze(model, (1, 4))))
    # float32: 4·8 + 8 = 40 params = 160 B; float16: 8·2 + 2 = 18 params = 36 B; 196 B in all
    assert items["Parameter memory"] == "196 B = 0.191 kB = 0.000 MB (float16 36 B, float32 160 B; 1 kB = 1024 B)"


def test_legend_points_to_the_mismatch_note_only_when_there_is_one(report, mismatched):
    meaning = dict(cells.legend(cells.visible_rows(mismatched)))["mismatch"]
    assert meaning.endswith("(see Mismatch below)")
    assert "below" not in dict(cells.legend(cells.visible_rows(report)))["mismatch"]


def test_mismatch_is_highlighted(mismatched):
    assert {row.name for row in mismatched.mismatches} == {"act", "act#2"}
    notes = [value for label, value in totals.notes(mismatched) if label == "Mismatch"]
    assert notes[0].startswith("act (ReLU): macs: formula 1, measured 0")
    assert "| **mismatch** |" in to_markdown(mismatched)
    assert "\\textbf{mismatch}" in to_latex(mismatched)
    assert '<tr class="mismatch">' in to_html(mismatched)
    assert json.loads(to_json(mismatched))["layers"][2]["status"] == Status.MISMATCH.value


def test_uncounted_ops_are_marked():
    class Det(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.linalg.det(x)

    report = analyze(nn.Sequential(Det()), (1, 3, 3))
    row = report.row("0")
    assert cells.status_text(row) == "measured-only*"
    notes = dict(totals.notes(report))
    assert notes["Uncounted ops"].startswith("aten._linalg_det.default ×1")
    assert cells.UNCOUNTED_LEGEND in cells.legend(cells.visible_rows(report))


def test_parameter_memory_in_kib():
    # seed 003: 976,484 float32 parameters = 3,905,936 B, "3814.391 kB" with 1 kB = 1024 B
    assert units.fmt_bytes(976_484 * 4) == "3,905,936 B = 3,814.391 kB = 3.725 MB"


def test_never_called_modules_are_noted():
    class Spare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(4, 2)
            self.unused = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    notes = dict(totals.notes(analyze(Spare(), (1, 4))))
    assert notes["Never called"].startswith("unused (10 params): the forward pass did not call")  # 4·2 + 2


def test_console_shows_names_verbatim_not_as_markup():
    """A module named like rich markup or an emoji code is printed as written."""
    model = torch.nn.ModuleDict({"[red]y": torch.nn.Linear(2, 2), "y:fire:": torch.nn.ReLU()})

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            return self.inner["y:fire:"](self.inner["[red]y"](x))

    text = to_plain_text(analyze(Wrapper(), (1, 2), name="net:fire:"))
    assert "inner.[red]y" in text and "inner.y:fire:" in text and "net:fire:" in text
