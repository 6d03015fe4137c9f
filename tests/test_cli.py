"""The flopcalc command, in process (typer's CliRunner): formats, exit statuses, one-line errors, subcommands.

Most cases use small models from a file written to tmp_path; one runs the demo on torchvision's AlexNet.
The small net: Conv2d(3, 8, 3) on 3×8×8 -> 8×6×6, ReLU, Flatten, Linear(288, 10):
params 3·8·3·3 + 8 + 288·10 + 10 = 3,114; MACs 8·6·6·3·3·3 + 288·10 = 10,656.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import textwrap
from pathlib import Path

import pytest
import sympy as sp
import torch

from flopcalc import InputError, InputSpec
from flopcalc.cli_parse import parse_assignment, parse_shape
from support import assert_one_line_error, run_cli

MODELS = '''
import torch
from torch import nn

from flopcalc.formula import LayerFormula
from flopcalc.registry import REGISTRY, Bound

import sympy as sp


def small():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(288, 10))


def wide():
    return nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(576, 10))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)


class Doubler(nn.Module):
    def forward(self, x):
        return x * 2


REGISTRY.bind(Doubler, lambda m, a, k: Bound(
    LayerFormula(name="doubler", description="claims 7 MACs", params=sp.Integer(0), macs=sp.Integer(7)), {}))


def mismatched():
    return nn.Sequential(nn.Linear(4, 4), Doubler())


class Det(nn.Module):
    def forward(self, x):
        return torch.linalg.det(x)


def uncounted():
    return nn.Sequential(Det())


class Product(nn.Module):
    def forward(self, a, b):
        return torch.matmul(a, b)


def embedding():
    return nn.Embedding(100, 8)


def needs_argument(width):
    return nn.Linear(width, width)


def not_a_model():
    return 42
'''
SMALL_PARAMS = 3 * 8 * 3 * 3 + 8 + 288 * 10 + 10
SMALL_MACS = 8 * 6 * 6 * 3 * 3 * 3 + 288 * 10
WIDE_PARAMS = 3 * 16 * 3 * 3 + 16 + 576 * 10 + 10


@pytest.fixture(scope="module")
def models_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "my_models.py"
    path.write_text(textwrap.dedent(MODELS))
    return path


@pytest.mark.parametrize(("text", "batch", "expected"), [
    ("3x224x224", 1, InputSpec((1, 3, 224, 224))),
    ("10x64", 4, InputSpec((4, 10, 64))),
    ("3X32X32", 1, InputSpec((1, 3, 32, 32))),
    ("128:int64", 2, InputSpec((2, 128), torch.int64)),
    (" 7 ", 1, InputSpec((1, 7))),
], ids=["image", "batch", "upper-x", "dtype", "spaces"])
def test_parse_shape(text, batch, expected):
    assert parse_shape(text, batch) == expected


@pytest.mark.parametrize("text", ["", "3xax4", "3x0", "-3", "3x-1", "x3", "3x", "3.5x2", "3:float99", ":int64"],
                         ids=["empty", "letters", "zero", "negative", "negative-dim", "leading-x", "trailing-x",
                              "fraction", "unknown-dtype", "no-dims"])
def test_parse_shape_rejects(text):
    with pytest.raises(InputError):
        parse_shape(text)


def test_parse_assignment():
    assert parse_assignment("C_in=3") == ("C_in", 3)
    for bad in ("C_in", "C_in=x", "=3"):
        with pytest.raises(InputError):
            parse_assignment(bad)


def test_demo_alexnet():
    result = run_cli("alexnet", "--input", "3x224x224")
    assert result.exit_code == 0, result.output
    assert "61,100,840" in result.stdout and "714,188,480" in result.stdout
    assert "features.0" in result.stdout and "MACs" in result.stdout and "FLOPs" in result.stdout


@pytest.mark.parametrize("fmt", ["table", "markdown", "latex", "csv", "json", "html"])
def test_every_format(models_file, fmt):
    result = run_cli(f"{models_file}:small", "--input", "3x8x8", "--format", fmt, "--formulas")
    assert result.exit_code == 0, result.output
    out = result.stdout
    if fmt == "json":
        data = json.loads(out)
        assert data["totals"]["params"] == SMALL_PARAMS and data["totals"]["macs"] == SMALL_MACS
    elif fmt == "csv":
        *rows, total = csv.DictReader(io.StringIO(out))
        assert sum(int(r["macs"]) for r in rows) == int(total["macs"]) == SMALL_MACS
    else:
        assert f"{SMALL_PARAMS:,}" in out and f"{SMALL_MACS:,}" in out
    marker = {"markdown": "| Layer |", "latex": "\\toprule", "html": "<table>", "table": "Total params",
              "csv": "depth,name,type,output_shape,params,macs", "json": '"schema_version": 1'}
    assert marker[fmt] in out


def test_output_file_and_explicit_command(models_file, tmp_path):
    target = tmp_path / "report.md"
    result = run_cli("analyze", f"{models_file}:Net", "--input", "4", "--format", "markdown", "--output", target)
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "wrote" in result.stderr
    assert "| `fc` | Linear | 1×2 | 10 | 8 |" in target.read_text()  # params 4·2 + 2, MACs 4·2


def test_batch_and_depth(models_file):
    result = run_cli(f"{models_file}:small", "--input", "3x8x8", "--batch", "2", "--format", "json", "--depth", "1")
    data = json.loads(result.stdout)
    assert data["inputs"] == [{"shape": [2, 3, 8, 8], "dtype": "float32"}]
    assert data["totals"]["macs"] == 2 * SMALL_MACS
    assert {layer["depth"] for layer in data["layers"]} == {1}


def test_several_inputs_and_dtype(models_file):
    product = json.loads(run_cli(f"{models_file}:Product", "--input", "2x3", "--input", "3x4", "--format", "json").stdout)
    assert product["inputs"] == [{"shape": [1, 2, 3], "dtype": "float32"}, {"shape": [1, 3, 4], "dtype": "float32"}]
    assert product["totals"]["macs"] == 1 * 2 * 3 * 4
    tokens = json.loads(run_cli(f"{models_file}:embedding", "--input", "5:int64", "--format", "json").stdout)
    assert tokens["totals"]["params"] == 100 * 8
    assert tokens["layers"][0]["output_shapes"] == [[1, 5, 8]]


def test_device_cpu_gives_the_same_counts(models_file):
    meta = json.loads(run_cli(f"{models_file}:small", "--input", "3x8x8", "--format", "json").stdout)
    cpu = json.loads(run_cli(f"{models_file}:small", "--input", "3x8x8", "--format", "json", "--device", "cpu").stdout)
    assert cpu["device"] == "cpu" and cpu["totals"] == meta["totals"]


@pytest.mark.parametrize(("args", "fragments"), [
    (["alexnt", "--input", "3x224x224"], ["unknown model 'alexnt'", "alexnet", "package.module:factory"]),
    (["alexnet", "--input", "3xax224"], ["malformed input shape", "3x224x224"]),
    (["alexnet", "--input", "0x224x224"], ["dimension <= 0"]),
    (["alexnet", "--input", "-3x224"], ["dimension <= 0"]),
    (["alexnet", "--input", ""], ["malformed input shape"]),
    (["missing/nowhere.py:make", "--input", "3"], ["no such file", "nowhere.py"]),
    (["torch.nn:NoSuchLayer", "--input", "3"], ["no factory 'NoSuchLayer'"]),
    (["no_such_package.models:make", "--input", "3"], ["cannot import 'no_such_package.models'"]),
], ids=["unknown-model", "letters", "zero", "negative", "empty", "missing-file", "no-factory", "no-module"])
def test_errors_are_one_line(args, fragments):
    assert_one_line_error(run_cli(*args), *fragments)


@pytest.mark.parametrize(("factory", "fragments"), [
    ("nothing_here", ["no factory 'nothing_here'", "small", "wide"]),
    ("needs_argument", ["building", "missing 1 required positional argument", "without arguments"]),
    ("not_a_model", ["returned a int, not an nn.Module"]),
], ids=["no-factory", "factory-raises", "not-a-module"])
def test_file_factory_errors(models_file, factory, fragments):
    assert_one_line_error(run_cli(f"{models_file}:{factory}", "--input", "4"), *fragments)


def test_forward_failure_names_layer_and_shape(models_file):
    result = run_cli(f"{models_file}:small", "--input", "4x8x8")
    assert_one_line_error(result, "forward pass failed in 0 (Conv2d)", "1x4x8x8")


def test_check(models_file):
    assert run_cli(f"{models_file}:small", "--input", "3x8x8", "--check").exit_code == 0
    result = run_cli(f"{models_file}:mismatched", "--input", "4", "--check")
    assert result.exit_code == 1
    assert "disagree in 1" in result.stderr and "Traceback" not in result.output
    assert "macs: formula 7, measured 0" in result.stdout  # the report is printed first


def test_strict(models_file):
    assert run_cli(f"{models_file}:small", "--input", "3x8x8", "--strict").exit_code == 0
    lenient = run_cli(f"{models_file}:uncounted", "--input", "3x3")
    assert lenient.exit_code == 0
    result = run_cli(f"{models_file}:uncounted", "--input", "3x3", "--strict")
    assert result.exit_code == 1 and "aten._linalg_det.default ×1" in result.stderr


def test_formula_substituted():
    values = ["C_in=3", "C_out=64", "K_h=11", "K_w=11", "s_h=4", "s_w=4", "p_h=2", "p_w=2", "d_h=1", "d_w=1",
              "H=224", "W=224", "N=1", "G=1", "B=1"]
    result = run_cli("formula", "conv2d", *values)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "C_in·C_out·K_h·K_w/G + B·C_out" in out
    assert "3·64·11·11 + 64 = 23,296" in out  # params
    assert f"= {3 * 64 * 55 * 55 * 11 * 11:,}" in out  # MACs: H_out = W_out = (224 + 2·2 - 11)//4 + 1 = 55
    assert f"= {64 * 55 * 55:,}" in out  # bias adds
    assert "(1, 64, 55, 55)" in out
    latex = run_cli("formula", "conv2d", *values, "--format", "latex").stdout
    assert "\\begin{align*}" in latex and "23{,}296" in latex
    assert "\\frac{C_{\\mathrm{in}} C_{\\mathrm{out}} K_{h} K_{w}}{G}" in latex and "H_{\\mathrm{out}}" in latex
    partial = run_cli("formula", "conv2d", "C_in=3", "C_out=64", "K_h=3", "K_w=3", "H=32", "W=32", "--format", "latex")
    math = [line for line in partial.stdout.splitlines() if not line.startswith(("%", "\\begin", "\\end"))]
    assert partial.exit_code == 0 and not any("*" in line for line in math)  # sympy's * never reaches math mode


def test_formula_symbolic_and_listing():
    result = run_cli("formula", "conv2d")
    assert result.exit_code == 0 and "output shape = (N, C_out, H_out, W_out)" in result.stdout
    listing = run_cli("formula")
    assert listing.exit_code == 0 and "depthwise_conv2d" in listing.stdout


def test_formula_errors():
    assert_one_line_error(run_cli("formula", "conv2"), "unknown formula 'conv2'", "did you mean conv2d", "conv3d")
    assert_one_line_error(run_cli("formula", "conv2d", "K=3"), "no symbol K", "K_h")
    assert_one_line_error(run_cli("formula", "conv2d", "C_in=three"), "SYMBOL=INTEGER")


def _printed_expression(output: str) -> sp.Expr:
    text = next(line for line in output.splitlines() if line.startswith("text:")).removeprefix("text:")
    return sp.parse_expr(text, local_dict={name: sp.Symbol(name, positive=True) for name in "MKG"})


@pytest.mark.parametrize("params", [False, True], ids=["macs", "params"])
def test_ratio_depthwise_separable(params):
    result = run_cli("ratio", "depthwise-separable", *(["--params"] if params else []))
    assert result.exit_code == 0, result.output
    M, K = sp.symbols("M K", positive=True)
    assert sp.simplify(_printed_expression(result.stdout) - (1 / M + 1 / K**2)) == 0
    assert "latex: \\frac{1}{M} + \\frac{1}{K^{2}}" in result.stdout
    assert "math:  1/M + 1/K²" in result.stdout  # as a person writes it


def test_ratio_group():
    result = run_cli("ratio", "group")
    assert sp.simplify(_printed_expression(result.stdout) - 1 / sp.Symbol("G", positive=True)) == 0


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_compare_with_accuracy_and_plot(models_file, tmp_path, suffix):
    small, wide = f"{models_file}:small", f"{models_file}:wide"
    accuracy = tmp_path / "accuracy.csv"
    accuracy.write_text(f"Model,Accuracy\n{small},61.5\n{wide},64.25\n")
    plot = tmp_path / f"scatter.{suffix}"
    result = run_cli("compare", small, wide, "--input", "3x8x8", "--accuracy", accuracy, "--plot", plot)
    assert result.exit_code == 0, result.output
    assert f"{SMALL_PARAMS:,}" in result.stdout and f"{WIDE_PARAMS:,}" in result.stdout
    assert "61.5" in result.stdout and "64.25" in result.stdout
    assert plot.stat().st_size > 0
    if suffix == "svg":
        assert "<svg" in plot.read_text()


def test_compare_errors(models_file, tmp_path):
    small = f"{models_file}:small"
    assert_one_line_error(run_cli("compare", small, "--input", "3x8x8", "--accuracy", tmp_path / "none.csv"),
                          "no such accuracy file")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,top1\nx,1\n")
    assert_one_line_error(run_cli("compare", small, "--input", "3x8x8", "--accuracy", bad), "model,accuracy")
    assert_one_line_error(run_cli("compare", small, "--input", "3x8x8", "--plot", tmp_path / "p.gif"), ".png")


WIDE_MACS = 16 * 6 * 6 * 3 * 3 * 3 + 576 * 10  # 15,552 + 5,760 = 21,312


@pytest.mark.parametrize("fmt", ["table", "markdown", "latex", "csv", "json", "html"])
def test_compare_in_every_format(models_file, fmt):
    small, wide = f"{models_file}:small", f"{models_file}:wide"
    result = run_cli("compare", small, wide, "--input", "3x8x8", "--format", fmt)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert not out.startswith("\n") and not result.stderr.startswith("\n")
    if fmt == "json":
        models = json.loads(out)["models"]
        assert [(m["params"], m["macs"]) for m in models] == [(SMALL_PARAMS, SMALL_MACS), (WIDE_PARAMS, WIDE_MACS)]
    elif fmt == "csv":
        records = list(csv.DictReader(io.StringIO(out)))
        assert [(int(r["params"]), int(r["macs"])) for r in records] == [(SMALL_PARAMS, SMALL_MACS),
                                                                        (WIDE_PARAMS, WIDE_MACS)]
    else:
        assert f"{SMALL_MACS:,}" in out and f"{WIDE_MACS:,}" in out and "1×3×8×8" in out.replace("$\\times$", "×")
    marker = {"markdown": "| Model |", "latex": "\\toprule", "html": "<table>", "table": "Model"}
    assert marker.get(fmt, "") in out


def test_compare_help_offers_no_closed_forms():
    result = run_cli("compare", "--help")
    assert result.exit_code == 0 and "3xHxW" not in result.stdout and "(N)" not in result.stdout


def test_compare_plot_axes_and_a_missing_accuracy(models_file, tmp_path):
    small, wide = f"{models_file}:small", f"{models_file}:wide"
    accuracy = tmp_path / "accuracy.csv"
    accuracy.write_text(f"model,accuracy\n{small},61.5\n")
    plot = tmp_path / "scatter.svg"
    assert_one_line_error(run_cli("compare", small, wide, "--input", "3x8x8", "--accuracy", accuracy),
                          "no accuracy for", wide)
    assert_one_line_error(run_cli("compare", small, "--input", "3x8x8", "--plot", plot, "--y", "accuracy"),
                          "needs --accuracy")
    accuracy.write_text(f"model,accuracy\n{small},61.5\n{wide},64.25\n")
    result = run_cli("compare", small, wide, "--input", "3x8x8", "--accuracy", accuracy, "--plot", plot,
                 "--x", "macs", "--y", "accuracy")
    assert result.exit_code == 0, result.output
    svg = plot.read_text()
    assert "MACs (multiply-accumulates)" in svg and "accuracy" in svg and "parameters" not in svg


def test_plot_without_matplotlib(models_file, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    result = run_cli("compare", f"{models_file}:small", "--input", "3x8x8", "--plot", tmp_path / "p.png")
    assert result.exit_code == 2 and "pip install 'flopcalc[plot]'" in result.stderr


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(("reference", "shape"), [
    ("alexnet_1024.py:alexnet_1024", "3x224x224"),
    ("keras_cnn.py:keras_cnn", "1x48x48"),
    ("resnet18_food11.py:resnet18_food11", "3x224x224"),
    ("mobilenet_v2_small.py:mobilenet_v2_small", "3x224x224"),
    ("mobilenet_v3_style.py:mobilenet_v3_style", "3x32x32"),
    ("conv_variants.py:plain_cnn", "3x128x128"),
    ("conv_variants.py:depthwise_separable_cnn", "3x128x128"),
    ("conv_variants.py:group_cnn", "3x128x128"),
], ids=lambda value: value.split(":")[-1] if ".py:" in value else None)
def test_seed_examples_check_and_strict(reference, shape):
    result = run_cli(f"{EXAMPLES / reference}", "--input", shape, "--check", "--strict", "--format", "json")
    assert result.exit_code == 0, result.stderr
    totals = json.loads(result.stdout)["totals"]
    if reference.startswith("alexnet_1024"):  # seed 002: hand count and thop's "FLOPS" (really MACs)
        assert (totals["params"], totals["macs"]) == (45_442_856, 698_533_568)
    if reference.startswith("keras_cnn"):  # seed 001: Keras summary, trainable + non-trainable
        assert (totals["trainable_params"], totals["non_trainable_params"]) == (4_741_415, 5_056)


@pytest.mark.parametrize("argv", [["alexnet"], ["alexnet", "--input", "3x8x8", "--format", "foo"], ["ratio", "foo"]],
                         ids=["missing-input", "bad-format", "bad-ratio"])
def test_usage_errors_are_one_line(argv, monkeypatch, capsys):
    from flopcalc.cli import main

    monkeypatch.setattr("sys.argv", ["flopcalc", *argv])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("Error: ")
