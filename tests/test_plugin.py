"""The pytest plugin: discovered through its entry point, its fixture records, --flopcalc-report writes JSON."""

from __future__ import annotations

import json
from importlib.metadata import entry_points

pytest_plugins = ["pytester"]

TWO_MODELS = """
    from torch import nn
    from flopcalc.testing import assert_counts

    def test_conv(flopcalc_analyze):
        report = flopcalc_analyze(nn.Conv2d(3, 8, 3), (2, 3, 10, 10))
        assert_counts(report, params=3 * 8 * 3 * 3 + 8)

    def test_pointwise(flopcalc_analyze):
        flopcalc_analyze(nn.Sequential(nn.Conv2d(1, 2, 1, bias=False)), (1, 1, 4, 4), name="pointwise")
"""


def test_the_entry_point_names_the_plugin_module():
    found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert found.get("flopcalc") == "flopcalc.pytest_plugin"


def test_pytest_discovers_the_option(pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--flopcalc-report=FILE*"])


def test_the_report_holds_every_model_the_fixture_analysed(pytester):
    pytester.makepyfile(TWO_MODELS)
    result = pytester.runpytest("--flopcalc-report", "out/counts.json")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["flopcalc: counts of 2 model(s) written to *counts.json"])
    document = json.loads((pytester.path / "out" / "counts.json").read_text(encoding="utf-8"))
    assert document["schema_version"] == 1
    conv, pointwise = document["models"]
    assert conv["test"] == "test_the_report_holds_every_model_the_fixture_analysed.py::test_conv"
    assert conv["model"] == "Conv2d"
    assert conv["totals"]["params"] == 3 * 8 * 3 * 3 + 8
    assert conv["totals"]["macs"] == 2 * 8 * 8 * 8 * 3 * 3 * 3
    assert conv["totals"]["flops"] == 2 * (2 * 8 * 8 * 8 * 3 * 3 * 3) + 2 * 8 * 8 * 8
    assert pointwise["model"] == "pointwise"
    assert pointwise["totals"]["macs"] == 1 * 4 * 4 * 2 * 1


def test_without_the_option_nothing_is_written(pytester):
    pytester.makepyfile(TWO_MODELS)
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)
    assert "flopcalc:" not in result.stdout.str()
    assert not list(pytester.path.rglob("*.json"))


def test_an_unwritable_report_path_is_a_usage_error_not_an_internal_error(pytester):
    pytester.makepyfile(TWO_MODELS)
    (pytester.path / "taken").write_text("a file, so no folder can be made here")
    result = pytester.runpytest("--flopcalc-report", "taken/counts.json")
    assert result.ret == 4  # pytest.ExitCode.USAGE_ERROR, before any test runs
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines(["*--flopcalc-report *taken/counts.json: *taken is a file, not a folder*"])
