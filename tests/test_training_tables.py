"""The training views in the tables: ``(self)`` rows carry their call's own backward work and roofline, so
rows add up in every column, and no backward, bytes or memory count is cut at any terminal width.

The network: Conv2d(3, 8, 3, padding=1) on 1×3×16×16, then a residual block ``relu(x + bn(conv(x)))`` with
Conv2d(8, 8, 3, padding=1), then global average pooling, Flatten and Linear(8, 10).
"""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
import torchvision
from torch import nn

from flopcalc import analyze
from flopcalc.render import cells
from flopcalc.render.console import to_rich
from flopcalc.render.csv import to_csv
from flopcalc.render.json import to_json
from test_tables import WIDTHS, render, whole_numbers


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(x + self.bn(self.conv(x)))


def net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), Block(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 10))


@pytest.fixture(scope="module")
def report():
    return analyze(net(), (1, 3, 16, 16), backward=True, memory=True, hardware="h100-sxm")


def test_backward_by_hand_with_a_residual(report):
    first, conv = report.row("0").backward, report.row("1.conv").backward
    # The input needs no gradient: the first conv has only grad-weight, 8*16*16*3*9 = 55,296 MACs, and its
    # bias gradient sums 256 positions per channel: 8*(256 - 1) = 2,040 adds.
    assert (first.grad_input.macs, first.grad_weight.macs, first.grad_weight.ops) == (0, 55_296, {"add": 2_040})
    # The block's conv: 8*16*16*8*9 = 147,456 MACs for each of grad-input and grad-weight.
    assert (conv.grad_input.macs, conv.grad_weight.macs) == (147_456, 147_456)
    t = report.totals.backward
    # grad-input: block conv 147,456 + Linear 8*10 = 80; grad-weight: 55,296 + 147,456 + 80 = 202,832
    assert (t.grad_input.macs, t.grad_weight.macs) == (147_536, 202_832)


def test_the_models_own_backward_work_gets_a_self_row(report):
    """The block's input feeds both its conv and its residual add: autograd sums the two gradients between
    nodes, 8*16*16 = 2,048 adds, the model's own backward work. Its forward has no work of its own, so the
    (self) row exists for the backward alone."""
    root = report.rows[0]
    assert root.own is not None and root.own.index == 0 and (root.own.macs, root.own.ops) == (0, {})
    assert root.own.backward.measured.ops == {"add": 2_048}
    assert (root.own.backward.grad_input.ops, root.own.backward.grad_weight.macs) == ({"add": 2_048}, 0)


@pytest.mark.parametrize("name", ["", "1"])
def test_children_and_self_add_up_in_every_training_column(report, name):
    row = report.row(name)
    parts = [report.rows[c] for c in row.children] + ([row.own] if row.own else [])
    assert sum(p.backward.grad_input.macs for p in parts) == row.backward.grad_input.macs
    assert sum(p.backward.grad_weight.macs for p in parts) == row.backward.grad_weight.macs
    assert sum(p.backward.other_ops for p in parts) == row.backward.other_ops
    assert sum(p.roofline.bytes for p in parts) == row.roofline.bytes
    assert sum(p.roofline.flops for p in parts) == row.roofline.flops


def test_self_rows_have_their_own_roofline_and_no_output(report):
    block = report.row("1")
    # the residual add reads two 1×8×16×16 float32 tensors and writes one: 3*2,048*4 = 24,576 bytes
    assert block.own.roofline.bytes == 24_576 and block.own.roofline.flops == 2_048
    data = json.loads(to_json(report))
    own = next(layer for layer in data["layers"] if layer["kind"] == "self" and layer["index"] == block.index)
    assert own["output_bytes"] is None and own["roofline"]["bytes_moved"] == 24_576
    assert own["backward"]["measured"]["ops"] == {}
    lines = list(csv.DictReader(io.StringIO(to_csv(report))))
    csv_own = next(line for line in lines if line["name"] == "1 (self)")
    assert (csv_own["output_bytes"], csv_own["bytes_moved"]) == ("", "24576")


TRAINING_KEYS = ("grad_input_macs", "grad_weight_macs", "backward_other_ops", "output_bytes", "bytes_moved")


@pytest.fixture(scope="module")
def resnet18():
    return analyze(torchvision.models.resnet18(), (1, 3, 64, 64), name="resnet18", backward=True, memory=True,
                   hardware="a100-sxm-80gb")


@pytest.mark.parametrize("width", WIDTHS)
def test_no_training_count_is_cut_at_any_width(resnet18, width):
    text = render(to_rich(resnet18), width)
    assert max(len(line) for line in text.splitlines()) <= width
    left_out = re.search(r"Left out to fit \d+ columns: ([^.]*)\.", " ".join(text.split()))
    found = whole_numbers(text)
    headers = {column.key: column.header for column in cells.columns(report=resnet18)}
    shown = {key for key in TRAINING_KEYS if not (left_out and headers[key] in left_out.group(1))}
    assert width < 200 or shown == set(TRAINING_KEYS)  # a wide terminal shows every column
    assert {"grad_input_macs", "grad_weight_macs"} <= shown  # asked for with --backward: never left out
    for row, values in cells.layer_cells(resnet18):
        for key in shown:
            if values[key]:
                assert found[values[key]], f"{display(row)} {key} {values[key]} cut at {width} columns"
    for column in cells.columns(report=resnet18):  # every column shown or named as left out
        assert column.header in text or (left_out and column.header in left_out.group(1)) or "Stacked" in text


def display(row) -> str:
    return row.name or "model"
