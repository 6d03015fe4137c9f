"""Functional calls made in a module's own forward are rows checked by their family's formula, and every report
says how much of its counts a matching formula stands behind. Expected numbers are derived by hand."""

import csv
import io
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import _get_current_function_mode_stack
from torchvision.ops import SqueezeExcitation

import flopcalc
from flopcalc import Status
from flopcalc.render.cells import FUNCTION_LEGEND, legend, visible_rows
from flopcalc.render.console import to_plain_text
from flopcalc.render.coverage import fmt_share
from flopcalc.render.csv import to_csv
from flopcalc.render.html import to_html
from flopcalc.render.json import to_json
from flopcalc.render.latex import to_latex
from flopcalc.render.markdown import to_markdown

RENDERERS = {"table": to_plain_text, "markdown": to_markdown, "latex": to_latex, "html": to_html, "csv": to_csv,
             "json": to_json}


class FunctionalAttention(nn.Module):
    """Projections used through F.linear, a hand-written attention core, and a module-called output layer."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(16, 48)
        self.proj = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = F.linear(x, self.qkv.weight, self.qkv.bias).chunk(3, dim=-1)
        scores = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
        return self.proj(torch.bmm(scores, v))


class ThreeProducts(nn.Module):
    """The same product written three ways: ``@``, the method ``matmul`` and the function ``torch.matmul``."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.w
        return torch.matmul(y.matmul(self.w.T), self.w)


def test_product_rows_are_labelled_as_written() -> None:
    """torch hands ``x @ w`` and ``x.matmul(w)`` to the tracer as one function; the call site tells them apart."""
    rows = rows_by_name(flopcalc.analyze(ThreeProducts(), (2, 4)))
    assert [(name, row.function) for name, row in rows.items() if row.function] == [
        ("w ← @", "@"), ("← Tensor.matmul", "Tensor.matmul"), ("w ← torch.matmul", "torch.matmul")]
    # (2×4)·(4×5), (2×5)·(5×4), (2×4)·(4×5): 2·4·5 = 40 MACs each
    assert [row.macs for row in rows.values() if row.function] == [40, 40, 40]


class Residual(nn.Module):
    """A functional conv plus a residual add: the add is the module's own, unchecked, work."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 4, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, padding=1) + x


def rows_by_name(report: flopcalc.Report) -> dict[str, flopcalc.LayerRow]:
    return {row.name: row for row in report.rows}


def test_functional_calls_are_rows_under_their_module() -> None:
    report = flopcalc.analyze(FunctionalAttention(), (2, 5, 16))
    rows = rows_by_name(report)
    assert list(rows) == ["", "qkv ← F.linear", "← @", "← torch.softmax", "← torch.bmm", "proj"]
    qkv = rows["qkv ← F.linear"]
    # 2·5 rows · 16 in · 48 out = 7,680 MACs; bias 2·5·48 = 480; params 16·48 + 48 = 816 (qkv's, now owned)
    assert (qkv.type, qkv.macs, dict(qkv.ops), qkv.params, qkv.status) == ("F.linear", 7680, {"bias_add": 480}, 816,
                                                                           Status.MATCH)
    assert qkv.bound is not None and qkv.bound.formula.name == "linear"
    assert (qkv.parent, qkv.depth, qkv.function) == (0, 1, "F.linear")
    # q @ kᵀ: 2 · (5×16)·(16×5) = 2·5·16·5 = 800 MACs; scores·v the same
    assert (rows["← @"].macs, rows["← torch.bmm"].macs) == (800, 800)
    # softmax over rows of 5: per row 5 exp, 4 add, 5 div; 2·5 rows
    assert dict(rows["← torch.softmax"].ops) == {"exp": 50, "add": 40, "div": 50}
    assert report.uncalled == {}  # qkv is used through F.linear, so its parameters are owned
    # The model does nothing outside checked calls: a checked container.
    assert rows[""].status is Status.MATCH
    # 7,680 + 800 + 800 + proj 2·5·16·16 = 2,560 → 11,840 MACs, all checked
    assert (report.totals.macs, report.totals.checked.macs, report.totals.checked.macs_share) == (11840, 11840, 1.0)
    assert rows[""].own is None  # all of the forward's work is in its calls: no (self) row
    assert FUNCTION_LEGEND in legend(visible_rows(report))


def test_calls_inside_a_module_with_a_formula_are_not_rows() -> None:
    report = flopcalc.analyze(nn.Sequential(nn.Linear(8, 4), nn.GELU(), nn.Softmax(-1)), (3, 8))
    assert [row.name for row in report.rows] == ["", "0", "1", "2"]
    assert not any(row.is_function for row in report.rows)


def test_own_work_is_unchecked_and_listed() -> None:
    report = flopcalc.analyze(Residual(), (1, 4, 6, 6))
    conv = report.rows[1]
    # 1·4·6·6 outputs · 4·3·3 window = 5,184 MACs, checked by the conv2d formula
    assert (conv.name, conv.type, conv.macs, conv.status, conv.params) == (
        "weight ← F.conv2d", "F.conv2d", 5184, Status.MATCH, 144
    )
    model = report.rows[0]
    assert model.status is Status.MEASURED_ONLY  # the residual add is its own work
    # the add: one per element, 4·6·6 = 144 other ops, unchecked; the conv has no other ops
    assert (report.totals.checked.macs_share, report.totals.checked.other_ops, report.totals.other_ops) == (1.0, 0, 144)
    assert report.totals.checked.ops_share == 0.0
    [unchecked] = report.unchecked
    assert (unchecked.name, unchecked.type, unchecked.macs, unchecked.other_ops) == ("(self)", "Residual.forward", 0, 144)
    own = model.own  # the add as the model's (self) row, beside the functional conv's row: 5,184 + 0 MACs
    assert (own.name, own.macs, dict(own.ops), own.status) == ("(self)", 0, {"add": 144}, Status.MEASURED_ONLY)
    assert (own.checked.other_ops, own.checked.ops_share) == (0, 0.0)
    # The functional row is named after the raw parameter it used.
    assert [row.name for row in visible_rows(report)] == ["weight ← F.conv2d", "(self)"]
    text = to_markdown(report)
    assert "5,184 of 5,184 MACs (100%), 0 of 144 other ops (0.0%)" in text
    assert "(self) (Residual.forward) 144 other ops: own work outside its children" in text


def test_the_self_row_of_a_matching_formula_row_is_checked() -> None:
    report = flopcalc.analyze(SqueezeExcitation(8, 2), (1, 8, 4, 4))
    own = report.rows[0].own
    # the rescale, one mul per input element 8·4·4 = 128, is the block's own work, inside its matching formula
    assert (own.name, dict(own.ops), own.status) == ("(self)", {"mul": 128}, Status.MATCH)
    assert (own.checked.other_ops, own.checked.ops_share) == (128, 1.0)
    assert report.unchecked == ()


def test_matrix_products_and_contractions() -> None:
    class Products(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return (
                torch.matmul(a, b),  # (2,3,4,5)·(2,3,5,6): 2·3·4·5·6 = 720 MACs
                torch.einsum("bhij,bhjk->bhik", a, b),  # the same contraction: 720 MACs
                torch.baddbmm(torch.zeros(6, 4, 6), a.flatten(0, 1), b.flatten(0, 1)),  # 720 MACs + 6·4·6 = 144 bias adds
                torch.einsum("bhij,bhij->bhi", a, a),  # batched dot products: 2·3·4·5 = 120 MACs
                torch.einsum("ij,ij->ij", a[0, 0], a[0, 0]),  # nothing contracted: 4·5 = 20 muls, the caller's own
            )

    report = flopcalc.analyze(Products(), [(2, 3, 4, 5), (2, 3, 5, 6)])
    rows = rows_by_name(report)
    assert rows["← torch.matmul"].macs == 720
    assert rows["← torch.einsum"].macs == 720
    assert (rows["← torch.baddbmm"].macs, dict(rows["← torch.baddbmm"].ops)) == (720, {"bias_add": 144})
    assert all(row.status is Status.MATCH for row in report.rows[1:])
    assert rows["← torch.einsum#2"].macs == 120
    assert "← torch.einsum#3" not in rows
    assert report.rows[0].status is Status.MEASURED_ONLY
    assert [(u.name, u.macs, u.other_ops) for u in report.unchecked] == [("(self)", 0, 20)]


def test_attention_norm_pool_embedding_interpolate() -> None:
    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = nn.Parameter(torch.randn(10, 16))
            self.gamma = nn.Parameter(torch.ones(16))

        def forward(self, ids: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
            e = F.layer_norm(F.embedding(ids, self.table), (16,), self.gamma)
            q = e.view(2, 1, 4, 16)
            attended = F.scaled_dot_product_attention(q, q, q, is_causal=True)
            pooled = F.max_pool2d(image, 2)
            return attended, F.interpolate(pooled, scale_factor=2, mode="bilinear")

    inputs = [flopcalc.InputSpec((2, 4), torch.int64), (1, 3, 8, 8)]
    report = flopcalc.analyze(Mixed(), inputs)
    rows = rows_by_name(report)
    assert all(row.status is Status.MATCH for row in report.rows), [r.mismatches for r in report.rows]
    assert (rows["table ← F.embedding"].params, rows["table ← F.embedding"].macs) == (160, 0)  # 10·16
    # layer norm over 8 rows of 16, scale only: add 8·(15 + 15) + 8 (ε) + 8·16 (centring) = 376;
    # mul 8·16 (squares) + 8·16 (rstd) + 8·16 (γ) = 384; div 8 + 8 + 8 = 24; sqrt 8
    assert dict(rows["gamma ← F.layer_norm"].ops) == {"add": 376, "mul": 384, "div": 24, "sqrt": 8}
    sdpa = rows["← F.scaled_dot_product_attention"]
    # N=2, H=1, L=S=4, E=16: QKᵀ and AV 2·4·4·(16 + 16) = 1,024 MACs; √scale on Q and K 2·4·16·2 = 256 mul;
    # mask 2·16 = 32 add + softmax 2·4 rows · 3 = 24 add; 32 exp; 32 div
    assert (sdpa.macs, dict(sdpa.ops)) == (1024, {"mul": 256, "add": 56, "exp": 32, "div": 32})
    # 3·4·4 outputs, 2·2 windows: 3 compares each = 144
    assert dict(rows["← F.max_pool2d"].ops) == {"compare": 144}
    # bilinear to 3·8·8 = 192 outputs: 4 mul + 3 add each
    assert dict(rows["← F.interpolate"].ops) == {"mul": 768, "add": 576}


def test_functional_rows_in_a_closed_form() -> None:
    report = flopcalc.analyze(FunctionalAttention(), ("N", 5, 16))
    row = rows_by_name(report)["qkv ← F.linear"]
    assert row.status is Status.MATCH
    # per batch item: qkv 5·16·48 = 3,840; q@kᵀ and scores·v 5·16·5 = 400 each; proj 5·16·16 = 1,280 → 5,920·N
    assert report.evaluate(N=3)["macs"] == 17760
    assert report.totals.checked.macs_share == 1.0


def test_json_carries_function_and_checked_fields() -> None:
    data = json.loads(to_json(flopcalc.analyze(Residual(), (1, 4, 6, 6))))
    assert data["totals"]["checked_macs"] == 5184
    assert data["totals"]["checked_macs_share"] == 1.0
    assert data["totals"]["checked_other_ops"] == 0
    assert data["totals"]["checked_other_ops_share"] == 0.0
    layer, own = data["layers"]
    assert (layer["kind"], layer["name"], layer["type"], layer["function"], layer["parent"]) == (
        "function", "weight ← F.conv2d", "F.conv2d", "F.conv2d", ""
    )
    assert (layer["checked_macs"], layer["checked_macs_share"]) == (5184, 1.0)
    # the residual add, 4·6·6 = 144 adds, is the model's (self) entry: nothing of it checked
    assert (own["kind"], own["name"], own["function"], own["other_ops"], own["checked_other_ops"]) == (
        "self", "(self)", None, 144, 0
    )
    assert data["unchecked"] == [
        {"name": "(self)", "type": "Residual.forward", "macs": 0, "other_ops": 144,
         "reason": "own work outside its children"}
    ]


def test_the_mode_is_gone_after_the_pass_also_when_it_fails() -> None:
    class Failing(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.linear(x, torch.ones(3, 5))  # 4 features into a 5-feature weight

    with pytest.raises(flopcalc.ForwardError, match="← F.linear"):
        flopcalc.analyze(Failing(), (2, 4))
    assert _get_current_function_mode_stack() == []
    flopcalc.analyze(FunctionalAttention(), (2, 5, 16))
    assert _get_current_function_mode_stack() == []


@pytest.mark.parametrize(("share", "text"), [(1.0, "100%"), (0.99996, "99.9%"), (0.0, "0.0%"), (None, "n/a")])
def test_shares_never_round_up_to_complete(share: float | None, text: str) -> None:
    assert fmt_share(share) == text


@pytest.mark.parametrize("fmt", ["table", "markdown", "latex", "html", "csv", "json"])
def test_the_coverage_figure_is_in_every_format(fmt: str) -> None:
    report = flopcalc.analyze(Residual(), (1, 4, 6, 6))
    text = RENDERERS[fmt](report)
    if fmt == "csv":  # the conv row and the total line: all 5,184 MACs checked; the (self) row has no MACs
        shares = [record["checked_macs_share"] for record in csv.DictReader(io.StringIO(text))]
        assert shares == ["1.000000", "", "1.000000"]
    elif fmt == "json":
        assert json.loads(text)["totals"]["checked_macs"] == 5184
    else:  # the totals line and the note naming the unchecked residual add (4·6·6 = 144 other ops)
        flat = " ".join(text.split())
        assert "5,184 of 5,184 MACs" in flat and "0 of 144 other ops" in flat
        assert "(self) (Residual.forward) 144 other ops" in flat
