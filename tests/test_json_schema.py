"""The JSON report holds exactly the fields docs/json-schema.md documents, with values derived by hand.

The model: Conv2d(3, 4, 3) on 1×3×6×6 (output 1×4×4×4), BatchNorm2d(4), ReLU, flatten, Linear(64, 2), and a
Linear(2, 2) that the forward pass never calls.
conv: params 3·4·3·3 + 4 = 112, MACs 4·4·4 · 3·3·3 = 1,728, bias adds 4·4·4 = 64;
BatchNorm at inference on 64 elements of 4 channels: per channel 1 add + 1 sqrt + 1 div (the rstd), per element
1 add (centring), 2 mul (normalise, scale), 1 add (shift): add 4 + 128 = 132, mul 128, sqrt 4, div 4;
buffers running_mean 4 + running_var 4 float32 (32 B) and num_batches_tracked 1 int64 (8 B): 9 elements, 40 B;
ReLU 64 compares; linear: params 64·2 + 2 = 130, MACs 64·2 = 128, bias adds 2.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import flopcalc
from flopcalc.render.json import to_json

SCHEMA = Path(__file__).resolve().parent.parent / "docs" / "json-schema.md"
CONV_MACS, LINEAR_MACS = 4 * 4 * 4 * 3 * 3 * 3, 64 * 2  # 1,728 and 128


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU()
        self.head = nn.Linear(64, 2)
        self.unused = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.bn(self.conv(x))).flatten(1))


@pytest.fixture(scope="module")
def data() -> dict:
    return json.loads(to_json(flopcalc.analyze(Small(), (1, 3, 6, 6), name="small")))


def documented(section: str) -> set[str]:
    """The field names of one table of docs/json-schema.md: every backticked name in its first column."""
    text = SCHEMA.read_text().split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([^`]+)`", row.split("|")[1])}


def test_every_documented_field_is_written_and_every_written_field_documented(data):
    assert set(data) == documented("Top level")
    assert set(data["totals"]) == documented("`totals`")
    for layer in data["layers"]:
        assert set(layer) == documented("`layers[]`"), layer["name"]


def test_totals_memory_and_never_called_modules(data):
    totals = data["totals"]
    # params 112 + BatchNorm 2·4 = 8 + 130 + never-called 2·2 + 2 = 6 → 256, float32: 256·4 = 1,024 B
    assert (totals["params"], totals["param_bytes"], totals["param_bytes_by_dtype"]) == (256, 1024, {"float32": 1024})
    # running mean and variance 2·4 float32 = 32 B, num_batches_tracked 1 int64 = 8 B
    assert (totals["buffers"], totals["buffer_bytes"]) == (9, 40)
    assert (totals["frozen_params"], totals["non_trainable_params"], totals["keras_total_params"]) == (0, 8, 264)
    assert data["uncalled_params"] == {"unused": 6}
    assert data["uncounted_ops"] == {} and data["unchecked"] == []
    assert (totals["macs"], totals["measured_macs"]) == (CONV_MACS + LINEAR_MACS, 1856)


def test_layer_entries(data):
    layers = {layer["name"]: layer for layer in data["layers"]}
    assert [(layer["index"], layer["kind"]) for layer in data["layers"]] == [
        (1, "module"), (2, "module"), (3, "module"), (4, "module")
    ]
    conv, bn = layers["conv"], layers["bn"]
    assert conv["share_of_macs"] == 100 * 1728 / 1856  # 93.1 %
    assert (conv["measured_macs"], conv["measured_ops"], conv["measured_flops"]) == (1728, {"bias_add": 64}, 3520)
    assert conv["formula"]["macs_substituted"].endswith("= 1,728")
    assert conv["formula"]["values"]["C_in"] == 3 and conv["formula"]["values"]["C_out"] == 4
    assert bn["measured_ops"] == {"add": 132, "mul": 128, "sqrt": 4, "div": 4}
    assert (bn["macs"], bn["share_of_macs"], bn["checked_other_ops"], bn["checked_other_ops_share"]) == (
        0, 0.0, 268, 1.0  # 132 + 128 + 4 + 4 other ops, all checked by the batch_norm formula
    )
    assert layers["act"]["checked_macs_share"] is None  # no MACs to check
