"""A Report is immutable all the way down (issue 10 §4): no mapping or sequence it holds can be changed."""

from __future__ import annotations

import dataclasses

import pytest
from torch import nn

import flopcalc


class Det(nn.Module):
    """An op without a counting rule, so the report lists something as uncounted."""

    def forward(self, x):
        import torch

        return torch.linalg.det(x)


@pytest.fixture(scope="module")
def report():
    return flopcalc.analyze(nn.Sequential(nn.Linear(3, 3), nn.ReLU(), Det()), (2, 3, 3))


def test_totals_mappings_are_read_only(report):
    with pytest.raises(TypeError):
        report.totals.ops["add"] = 1
    with pytest.raises(TypeError):
        report.totals.param_bytes_by_dtype["float32"] = 0


def test_report_mappings_are_read_only(report):
    assert report.uncounted  # aten._linalg_det ran without a rule
    with pytest.raises(TypeError):
        report.uncounted["aten.x"] = 1
    with pytest.raises(TypeError):
        report.uncalled["x"] = 1


def test_row_mappings_and_sequences_are_read_only(report):
    row = report.row("0")  # Linear(3, 3) on 2×3×3: 2·3·3·3 = 54 MACs, 18 bias adds
    assert (row.macs, dict(row.ops)) == (54, {"bias_add": 18})
    for mapping in (row.ops, row.measured.ops, row.measured_self.ops, row.bound.values, row.analytic.ops,
                    report.row("2").uncounted):
        with pytest.raises(TypeError):
            mapping["x"] = 1
    assert isinstance(report.rows, tuple) and isinstance(report.row("").children, tuple)
    assert all(isinstance(shape, tuple) for shape in row.input_shapes + row.output_shapes)


def test_a_caller_mapping_is_copied_not_wrapped(report):
    ops = {"add": 1}
    totals = type(report.totals)(**{**report.totals.__dict__, "ops": ops})
    ops["add"] = 2
    assert totals.ops == {"add": 1}


def test_closed_form_mappings_are_read_only():
    closed = flopcalc.analyze(nn.Linear(4, 2), (1, "L", 4))
    with pytest.raises(TypeError):
        closed.closed_form.hints["L"] = 3
    with pytest.raises(TypeError):
        closed.closed_form.expressions["macs"] = 0


def test_the_coverage_figure_is_read_only(report):
    assert isinstance(dataclasses.replace(report, unchecked=list(report.unchecked)).unchecked, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.totals.checked.macs = 0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.row("0").checked.macs_share = 0.5  # type: ignore[misc]
