"""Closed forms over symbolic input sizes: exact at every size where their conditions hold."""

import random

import pytest
import sympy as sp
import torch
import torchvision
from torch import nn

import flopcalc
from flopcalc.symbolic import ConditionError, SymbolicTraceError

FAMILIES = [
    "alexnet", "vgg11", "resnet18", "densenet121", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0",
    "shufflenet_v2_x0_5", "squeezenet1_0", "regnet_x_400mf", "googlenet", "mnasnet0_5", "convnext_tiny",
]


def odd_non_square_sizes(seed: str, count: int = 5) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    sizes = []
    while len(sizes) < count:
        h, w = rng.randrange(65, 321, 2), rng.randrange(65, 321, 2)
        if h != w:
            sizes.append((h, w))
    return sizes


def build(name: str) -> nn.Module:
    try:
        with torch.device("meta"):
            return torchvision.models.get_model(name)
    except (NotImplementedError, RuntimeError):  # regnet computes its widths from tensor values
        return torchvision.models.get_model(name)


@pytest.mark.parametrize("name", FAMILIES)
def test_closed_form_equals_concrete_counts(name: str) -> None:
    model = build(name)
    symbolic = flopcalc.analyze(model, ("N", 3, "H", "W"))
    assert symbolic.is_symbolic and not symbolic.uncounted
    h, w, n = (sp.Symbol(s, integer=True, positive=True) for s in "HWN")
    assert symbolic.totals.macs.free_symbols == {n, h, w}
    for height, width in odd_non_square_sizes(name):
        concrete = flopcalc.analyze(model, (2, 3, height, width))
        point = symbolic.evaluate(N=2, H=height, W=width)
        assert (point["macs"], point["flops"]) == (concrete.totals.macs, concrete.totals.flops), (height, width)


def test_closed_form_of_a_conv_by_hand() -> None:
    """Conv2d(3, 8, 3, stride=2, padding=1): MACs = N·8·(⌊(H − 1)/2⌋ + 1)·(⌊(W − 1)/2⌋ + 1)·3·9."""
    report = flopcalc.analyze(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), ("N", 3, "H", "W"))
    n, h, w = (sp.Symbol(s, integer=True, positive=True) for s in "NHW")
    expected = n * 8 * (sp.floor((h - 1) / 2) + 1) * (sp.floor((w - 1) / 2) + 1) * 3 * 9
    assert sp.simplify(report.totals.macs - expected) == 0
    assert report.evaluate(N=1, H=224, W=224)["macs"] == 1 * 8 * 112 * 112 * 3 * 9


def test_named_sizes_are_shared() -> None:
    """``(1, 3, "S", "S")`` is a square input: one symbol, not two."""
    report = flopcalc.analyze(nn.Conv2d(3, 4, 1, bias=False), (1, 3, "S", "S"))
    s = sp.Symbol("S", integer=True, positive=True)
    assert report.totals.macs == 4 * 3 * s**2


def test_conditions_are_reported_and_enforced() -> None:
    report = flopcalc.analyze(torchvision.models.alexnet(), (1, 3, "H", "W"))
    assert report.closed_form.describe_conditions() == ["H >= 63", "W >= 63"]
    with pytest.raises(ConditionError, match="does not hold"):
        report.evaluate(H=40, W=224)


def test_model_that_fixes_its_size_gives_a_concrete_count_instead() -> None:
    model = torchvision.models.vit_b_16()
    with pytest.raises(SymbolicTraceError, match=r"fixes H = 224.*concrete count at H=224, W=224") as caught:
        flopcalc.analyze(model, (1, 3, "H", "W"), hints={"H": 224, "W": 224})
    assert caught.value.concrete.totals.macs == flopcalc.analyze(model, (1, 3, 224, 224)).totals.macs


def test_data_dependent_model_gives_a_concrete_count_instead() -> None:
    class Gate(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2 if bool(x.sum() > 0) else x

    with pytest.raises(SymbolicTraceError, match="forward pass fails with symbolic sizes L=229") as caught:
        flopcalc.analyze(Gate(), (1, "L"))
    assert caught.value.concrete is not None
    assert caught.value.concrete.input_shapes == ((1, 229),)


def test_cli_closed_form_json_table_and_latex(tmp_path) -> None:
    from typer.testing import CliRunner

    from flopcalc.cli import app

    runner = CliRunner()
    model_file = tmp_path / "net.py"
    model_file.write_text("import torch\ndef make():\n    return torch.nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)\n")
    args = [f"{model_file}:make", "--input", "3xHxW", "--batch", "N"]
    as_json = runner.invoke(app, [*args, "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    import json

    data = json.loads(as_json.stdout)
    names = {name: sp.Symbol(name) for name in data["closed_form"]["symbols"]}  # N is also sympy's N()
    n, h, w = names["N"], names["H"], names["W"]
    expected = n * 8 * (sp.floor((h - 1) / 2) + 1) * (sp.floor((w - 1) / 2) + 1) * 3 * 9
    assert sp.simplify(sp.parse_expr(data["totals"]["macs"], local_dict=names) - expected) == 0
    assert data["closed_form"]["symbols"] == ["N", "H", "W"]
    table = runner.invoke(app, [*args, "--at", "1x224x224,2x225x301"])
    assert table.exit_code == 0, table.output
    assert f"{1 * 8 * 112 * 112 * 3 * 9:,}" in table.stdout
    assert f"{2 * 8 * 113 * 151 * 3 * 9:,}" in table.stdout  # ⌊224/2⌋ + 1 = 113, ⌊300/2⌋ + 1 = 151
    latex = runner.invoke(app, [*args, "--format", "latex"])
    assert r"\left\lfloor" in latex.stdout


def test_cli_falls_back_to_a_concrete_count() -> None:
    from typer.testing import CliRunner

    from flopcalc.cli import app

    runner = CliRunner()
    pinned = runner.invoke(app, ["vit_b_16", "--input", "3xHxW", "--hint", "H=224", "--hint", "W=224"])
    assert pinned.exit_code == 0
    assert "cannot be counted in closed form: the model fixes H = 224" in pinned.stderr
    assert "17,563,828,224" in pinned.stdout  # the concrete MACs at 224×224 (equal to the meta analysis above)
    failing = runner.invoke(app, ["vit_b_16", "--input", "3xHxW"])
    assert failing.exit_code == 2
    assert len(failing.stderr.strip().splitlines()) == 1 and "Traceback" not in failing.output


def test_cli_at_outside_the_conditions_analyses_concretely() -> None:
    from typer.testing import CliRunner

    from flopcalc.cli import app

    result = CliRunner().invoke(app, ["resnet18", "--input", "3xHxW", "--at", "16x16", "--format", "json"])
    assert result.exit_code == 0, result.output
    import json

    (point,) = json.loads(result.stdout)["evaluated"]
    assert point["source"] == "concrete"  # H >= 33 fails at 16
    assert point["macs"] == flopcalc.analyze(torchvision.models.resnet18(), (1, 3, 16, 16)).totals.macs


def test_cli_rejects_named_sizes_in_compare() -> None:
    from typer.testing import CliRunner

    from flopcalc.cli import app

    result = CliRunner().invoke(app, ["compare", "alexnet", "resnet18", "--input", "3xHxW"])
    assert result.exit_code == 2
    assert "compare needs concrete sizes" in result.stderr
