"""The command line (issue 15 §5): --version, -h, help without type tags, the cli.py shim, formula defaults,
--arg, keyword inputs, hints for common shape mistakes, the automatic cpu retry; and what each command imports
(issue 13: --help, --version, formula and ratio never import torch; model commands import torchvision only for
torchvision names), checked in fresh subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

from support import run_cli, run_fresh

ROOT = Path(__file__).resolve().parent.parent

MODELS = '''
import torch
from torch import nn


def small():
    return nn.Sequential(nn.Linear(4, 2))


def linear(width, bias=True):
    return nn.Linear(width, 3, bias=bias)


class Masked(nn.Module):
    """Token ids and a keyword attention mask: embedding rows scaled by the mask."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 8)
        self.fc = nn.Linear(8, 2)

    def forward(self, input_ids, attention_mask=None):
        return self.fc(self.embed(input_ids) * attention_mask.unsqueeze(-1))


class ReadsValues(nn.Module):
    """Reads a tensor value (.item()), which the shape-only meta pass cannot give."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        keep = int(x.abs().sum().item() >= 0)
        return self.fc(x) * keep
'''


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("commands") / "command_models.py"
    path.write_text(textwrap.dedent(MODELS))
    return path


def test_version():
    result = run_cli("--version")
    assert result.exit_code == 0
    assert result.stdout == f"flopcalc {version('flopcalc')}\n"


@pytest.mark.parametrize("command", [[], ["analyze"], ["formula"], ["ratio"], ["compare"]],
                         ids=["top", "analyze", "formula", "ratio", "compare"])
def test_help_short_and_long_without_type_tags(command):
    long, short = run_cli(*command, "--help"), run_cli(*command, "-h")
    assert long.exit_code == 0 and short.exit_code == 0
    assert long.stdout == short.stdout and "Usage: " in long.stdout
    for tag in ("<bool>", "<str>", "<int>", "<list[str]>", "<path>"):
        assert tag not in long.stdout, (tag, long.stdout)


def test_bare_command_prints_help_without_error():
    result = run_cli()
    assert result.exit_code == 0
    assert "Usage: " in result.stdout and "--input" not in result.stderr
    assert "Error" not in result.stdout + result.stderr


def test_formula_takes_the_layer_defaults_and_says_which():
    result = run_cli("formula", "conv2d", "C_in=3", "C_out=64", "K_h=3", "K_w=3", "H=32", "W=32")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "3·64·3·3 + 64 = 1,792" in out  # params: 3·64·3·3 + 64
    assert "= 1,555,200" in out  # MACs: H_out = W_out = 32 - 3 + 1 = 30; 3·64·30·30·3·3
    assert "(1, 64, 30, 30)" in out
    assert "defaults: N=1, G=1, B=1, s_h=1, s_w=1, d_h=1, d_w=1, p_h=0, p_w=0" in out
    assert "unbound" not in out


def test_formula_sheet_is_written_as_a_person_writes_it():
    out = run_cli("formula", "conv2d", "C_in=3", "C_out=64", "K_h=3", "K_w=3", "H=32", "W=32").stdout
    assert "= C_in·C_out·K_h·K_w/G + B·C_out" in out and "*" not in out
    assert "where H_out  = ⌊(H + 2·p_h - d_h·(K_h - 1) - 1)/s_h⌋ + 1" in out
    # both sizes substituted in the same order, added terms first: 32 + 1 - 3 = 30
    assert out.count("= 32 + 1 - 3 = 30") == 2


def test_a_value_left_symbolic_is_written_as_a_person_writes_it():
    # W unbound: H_out = 32 + 1 - 3 = 30, W_out = W - 2; 3·64·30·3·3 = 51,840 and 64·30 = 1,920
    result = run_cli("formula", "conv2d", "C_in=3", "C_out=64", "K_h=3", "K_w=3", "H=32")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "= 3·64·30·3·3·W_out = 51,840·W_out" in out
    assert "= 64·30·W_out = 1,920·W_out" in out
    assert "= W + 1 - 3 = W - 2" in out
    assert "*" not in out and "unbound: W" in out
    strided = run_cli("formula", "conv2d", "C_in=3", "C_out=64", "K_h=3", "K_w=3", "H=32", "s_w=2").stdout
    assert "= ⌊(W - 3)/2⌋ + 1 = ⌊W/2 - 3/2⌋ + 1" in strided and "floor" not in strided
    latex = run_cli("formula", "conv2d", "C_in=3", "C_out=64", "K_h=3", "K_w=3", "H=32", "--format", "latex").stdout
    assert r"&= 3 \cdot 64 \cdot 30 \cdot 3 \cdot 3 \cdot W_{\mathrm{out}} = 51{,}840 W_{\mathrm{out}}" in latex


def test_pooling_stride_defaults_to_the_kernel():
    result = run_cli("formula", "max_pool2d", "C=8", "H=32", "W=32", "K_h=2", "K_w=2")
    assert result.exit_code == 0, result.output
    assert "s_h=2, s_w=2" in result.stdout and "(1, 8, 16, 16)" in result.stdout  # floor((32 - 2)/2) + 1 = 16


def test_arg_passes_constructor_arguments_to_a_factory(models):
    result = run_cli(f"{models}:linear", "--arg", "width=5", "--arg", "bias=False", "--input", "5", "--format", "json")
    assert result.exit_code == 0, result.output
    totals = json.loads(result.stdout)["totals"]
    assert (totals["params"], totals["macs"]) == (5 * 3, 5 * 3)  # no bias: 5·3 weights, 5·3 MACs


def test_arg_passes_constructor_arguments_to_torchvision():
    result = run_cli("resnet18", "--arg", "num_classes=11", "--input", "3x224x224", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["totals"]["params"] == 11_182_155  # seed report: ResNet18 for Food-11


def test_factory_failure_names_the_arguments(models):
    result = run_cli(f"{models}:linear", "--input", "5")
    assert result.exit_code == 2 and "pass some with --arg NAME=VALUE" in result.stderr
    result = run_cli(f"{models}:linear", "--arg", "depth=2", "--input", "5")
    assert result.exit_code == 2 and "called with depth=2" in result.stderr


def test_keyword_input_is_named_in_the_title(models):
    result = run_cli(f"{models}:Masked", "--input", "6:int64", "--input", "attention_mask=6", "--depth", "0")
    assert result.exit_code == 0, result.output
    assert "input 1×6:int64, attention_mask=1×6 (meta device)" in " ".join(result.stdout.split())


def test_keyword_input(models):
    result = run_cli(f"{models}:Masked", "--input", "6:int64", "--input", "attention_mask=6", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["inputs"] == [  # input_ids, then attention_mask, named as given
        {"shape": [1, 6], "dtype": "int64"}, {"shape": [1, 6], "dtype": "float32", "name": "attention_mask"},
    ]
    assert data["totals"]["macs"] == 6 * 8 * 2  # fc on 1×6×8: 6·8·2 = 96
    assert data["totals"]["params"] == 100 * 8 + 8 * 2 + 2


@pytest.mark.parametrize(("model", "shape", "hint"), [
    ("alexnet", "1x3x224x224", "hint: flopcalc adds the batch dimension; drop the leading 1 or use --batch"),
    ("alexnet", "1x224x224", "hint: features.0 expects 3 channels, the input has 1"),
    ("{models}:Masked", "6", "hint: token ids need an integer dtype: --input 6:int64"),
], ids=["batch-included", "channels", "float-ids"])
def test_hints_for_common_shape_mistakes(models, model, shape, hint):
    result = run_cli(model.format(models=models), "--input", shape)
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith("Error: forward pass failed") and line.endswith(hint)


def test_meta_pass_needing_values_retries_on_cpu_with_a_note(models):
    result = run_cli(f"{models}:ReadsValues", "--input", "4", "--format", "json")
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("note: the forward pass needs real tensor values")
    assert "counted on cpu instead of meta" in result.stderr and len(result.stderr.splitlines()) == 1
    data = json.loads(result.stdout)
    assert data["device"] == "cpu" and data["totals"]["macs"] == 4 * 2


def test_explicit_meta_does_not_retry(models):
    result = run_cli(f"{models}:ReadsValues", "--input", "4", "--device", "meta")
    assert result.exit_code == 2 and "forward pass failed" in result.stderr and "note:" not in result.stderr


@pytest.mark.parametrize("argv", [
    ["--help"], ["-h"], ["--version"], [], ["ratio", "depthwise-separable"], ["formula"],
    ["formula", "conv2d", "C_in=3", "C_out=64", "K_h=3", "K_w=3", "H=32", "W=32"], ["analyze", "--help"],
], ids=["help", "h", "version", "bare", "ratio", "formula-list", "formula", "analyze-help"])
def test_commands_without_a_model_never_import_torch(argv, tmp_path):
    result = run_fresh(argv, entry="flopcalc.cli", cwd=tmp_path)
    assert result.status == 0
    assert "torch" not in result.loaded and "torchvision" not in result.loaded, result


def test_model_commands_import_torchvision_only_for_torchvision_names(models):
    from_file = run_fresh([f"{models}:small", "--input", "4", "--format", "json"], entry="flopcalc.cli",
                          cwd=models.parent)
    assert from_file.status == 0 and "torch" in from_file.loaded and "torchvision" not in from_file.loaded, from_file
    named = run_fresh(["alexnet", "--input", "3x64x64", "--format", "json"], entry="flopcalc.cli", cwd=models.parent)
    assert named.status == 0 and "torchvision" in named.loaded, named


def test_the_checkout_shim_runs_the_command(models):
    done = subprocess.run([sys.executable, str(ROOT / "cli.py"), f"{models}:small", "--input", "4", "--format",
                           "json"], cwd=models.parent, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["totals"]["params"] == 4 * 2 + 2


def test_the_shim_is_not_installed_as_a_module_named_cli(tmp_path):
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert packages["include"] == ["flopcalc*"]
    done = subprocess.run([sys.executable, "-c", "import importlib.util; print(importlib.util.find_spec('cli'))"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, env={
                              k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.stdout.strip() == "None"
