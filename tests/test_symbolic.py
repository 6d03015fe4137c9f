"""Closed forms over symbolic input sizes: exact at every size where their conditions hold."""

import json
import random

import pytest
import sympy as sp
import torch
import torchvision
from torch import nn

import flopcalc
from flopcalc.analyze import evaluate_at
from flopcalc.render.console import to_plain_text
from flopcalc.render.csv import to_csv
from flopcalc.render.html import to_html
from flopcalc.render.json import to_json
from flopcalc.render.latex import to_latex
from flopcalc.render.markdown import to_markdown
from flopcalc.render import cells, closed_forms, totals
from flopcalc.sizes import simplify_sizes
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
    assert_renders_and_refuses_outside(model, symbolic)


def assert_renders_and_refuses_outside(model: nn.Module, report: flopcalc.Report) -> None:
    """Every format renders the closed form in named sizes; the conditions list; below the valid range
    evaluate refuses and evaluate_at counts concretely (or says the model cannot run there)."""
    text = to_plain_text(report, depth=1)
    assert "Where" in text and "Valid for" in text and "Measured" in text
    latex = to_latex(report, depth=1)
    assert "floor(" not in latex and "ceiling(" not in latex  # sympy's names never reach LaTeX
    assert "N" in to_markdown(report, depth=1) and to_csv(report, depth=1) and to_html(report, depth=1)
    data = json.loads(to_json(report, depth=1))
    assert data["closed_form"]["sizes"] and data["closed_form"]["leading"]["macs"]
    bounds = report.closed_form.bounds()
    low = bounds["H"][0]
    assert low > 1, bounds  # every family needs some minimum size
    below = {"N": 2, "H": low - 1, "W": bounds["W"][0]}
    with pytest.raises(ConditionError):
        report.evaluate(**below)
    (point,) = evaluate_at(model, ("N", 3, "H", "W"), report, [below])
    assert point["source"] == "concrete" or point["source"].startswith("not countable")
    if point["source"] == "concrete":
        assert point["macs"] == flopcalc.analyze(model, (2, 3, low - 1, bounds["W"][0])).totals.macs


def test_closed_form_of_a_conv_by_hand() -> None:
    """Conv2d(3, 8, 3, stride=2, padding=1): MACs = N·8·(⌊(H + 2 − 3)/2⌋ + 1)·(⌊(W − 1)/2⌋ + 1)·3·9
    = 216·N·⌈H/2⌉·⌈W/2⌉, since ⌊(x − 1)/2⌋ + 1 = ⌈x/2⌉ for integers."""
    report = flopcalc.analyze(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), ("N", 3, "H", "W"))
    n, h, w = (sp.Symbol(s, integer=True, positive=True) for s in "NHW")
    assert report.totals.macs == 216 * n * sp.ceiling(h / 2) * sp.ceiling(w / 2)
    expected = n * 8 * (sp.floor((h - 1) / 2) + 1) * (sp.floor((w - 1) / 2) + 1) * 3 * 9
    assert simplify_sizes(report.totals.measured_macs) == simplify_sizes(expected)
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
    # patch embedding 768·3·16·16·196 = 115,605,504; per encoder layer (197 tokens, 768 wide): qkv 197·768·2304
    # = 348,585,984, QKᵀ and AV 2·197·197·768 = 59,610,624, out_proj 197·768·768 = 116,195,328, MLP
    # 2·197·768·3072 = 929,562,624, so 1,453,954,560 · 12 layers = 17,447,454,720; head 768·1000 = 768,000
    assert caught.value.concrete.totals.macs == 115_605_504 + 17_447_454_720 + 768_000


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
    # N·8·(⌊(H − 1)/2⌋ + 1)·(⌊(W − 1)/2⌋ + 1)·3·9, with ⌊(x − 1)/2⌋ + 1 = ⌈x/2⌉
    assert sp.parse_expr(data["totals"]["macs"], local_dict=names) == 216 * n * sp.ceiling(h / 2) * sp.ceiling(w / 2)
    assert data["closed_form"]["symbols"] == ["N", "H", "W"]
    assert data["closed_form"]["sizes"] == {"H1": "ceiling(H/2)", "W1": "ceiling(W/2)"}
    assert data["closed_form"]["named"]["macs"] == "216*N*H1*W1"
    assert data["closed_form"]["leading"]["macs"] == "54*N*H*W"  # 216/4
    assert data["closed_form"]["measured_equal"] is True
    table = runner.invoke(app, [*args, "--at", "1x224x224,2x225x301"])
    assert table.exit_code == 0, table.output
    assert f"{1 * 8 * 112 * 112 * 3 * 9:,}" in table.stdout
    assert f"{2 * 8 * 113 * 151 * 3 * 9:,}" in table.stdout  # ⌊224/2⌋ + 1 = 113, ⌊300/2⌋ + 1 = 151
    repeated = runner.invoke(app, [*args, "--at", "1x224x224", "--at", "2x225x301"])  # the same two points
    assert repeated.exit_code == 0 and repeated.stdout == table.stdout
    latex = runner.invoke(app, [*args, "--format", "latex"])
    assert r"H_{1} = \left\lceil \frac{H}{2} \right\rceil" in latex.stdout


def test_cli_falls_back_to_a_concrete_count() -> None:
    from typer.testing import CliRunner

    from flopcalc.cli import app

    runner = CliRunner()
    pinned = runner.invoke(app, ["vit_b_16", "--input", "3xHxW", "--hint", "H=224", "--hint", "W=224"])
    assert pinned.exit_code == 0
    assert "cannot be counted in closed form: the model fixes H = 224" in pinned.stderr
    assert "trace.py" not in pinned.stderr  # torch records our tracer's frame, not the model's: not shown
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
    # at 16×16: conv1 8·8·64·3·49 = 602,112; layer1 (4×4) 4·16·64·64·9 = 2,359,296; layer2 (2×2) 4·128·64·9
    # + 3·4·128·128·9 + 4·128·64 = 2,097,152; layer3 (1×1) 256·128·9 + 3·256·256·9 + 256·128 = 2,097,152;
    # layer4 (1×1) 512·256·9 + 3·512·512·9 + 512·256 = 8,388,608; fc 512·1000 = 512,000
    assert point["macs"] == 602_112 + 2_359_296 + 2_097_152 + 2_097_152 + 8_388_608 + 512_000


def test_cli_rejects_named_sizes_in_compare() -> None:
    from typer.testing import CliRunner

    from flopcalc.cli import app

    result = CliRunner().invoke(app, ["compare", "alexnet", "resnet18", "--input", "3xHxW"])
    assert result.exit_code == 2
    assert "compare needs concrete sizes" in result.stderr


def test_resnet18_closed_form_as_a_person_writes_it() -> None:
    """Sizes halve five times (conv1 stride 2, maxpool, layer2-4 stride 2): H₁ = ⌈H/2⌉, …, H₅ = ⌈H₄/2⌉.

    MACs by hand: conv1 64·3·7·7 = 9,408 at H₁·W₁; layer1 4·64·64·9 = 147,456 at H₂·W₂; layer2
    128·64·9 + 3·128·128·9 + 128·64 = 73,728 + 442,368 + 8,192 = 524,288 at H₃·W₃; layer3 294,912 + 1,769,472
    + 32,768 = 2,097,152; layer4 1,179,648 + 7,077,888 + 131,072 = 8,388,608; fc 512·1000 = 512,000.
    Leading term: 9,408/4 + 147,456/16 + 524,288/64 + 2,097,152/256 + 8,388,608/1024
    = 2,352 + 9,216 + 8,192 + 8,192 + 8,192 = 36,144 (H·W).
    """
    report = flopcalc.analyze(torchvision.models.resnet18(), (1, 3, "H", "W"))
    items = dict(totals.totals_items(report))
    assert items["Where"] == (
        "H₁ = ⌈H/2⌉, W₁ = ⌈W/2⌉, H₂ = ⌈H₁/2⌉, W₂ = ⌈W₁/2⌉, H₃ = ⌈H₂/2⌉, W₃ = ⌈W₂/2⌉, "
        "H₄ = ⌈H₃/2⌉, W₄ = ⌈W₃/2⌉, H₅ = ⌈H₄/2⌉, W₅ = ⌈W₄/2⌉"
    )
    assert items["MACs"] == (
        "9,408·H₁·W₁ + 147,456·H₂·W₂ + 524,288·H₃·W₃ + 2,097,152·H₄·W₄ + 8,388,608·H₅·W₅ + 512,000 MACs"
    )
    assert items["Large sizes"].startswith("MACs ≈ 36,144·H·W, ")
    assert items["Measured"].startswith("equal to the formula at every size")
    table = to_plain_text(report, depth=1, width=120)  # the closed-form width for files and pipes
    assert max(len(line) for line in table.splitlines()) <= 120
    words = table.split()
    total = cells.total_cells(report)
    for word in total["macs"].split() + total["other_ops"].split() + ["measured-only"]:
        assert word in words, word  # wrapped between terms, never inside a term, a status or a count
    rows = {row.name: values for row, values in cells.layer_cells(report)}
    assert rows["conv1"]["output_shape"] == "1×64×H₁×W₁" and rows["conv1"]["macs"] == "9,408·H₁·W₁"
    assert rows["layer2.0.downsample.0"]["macs"] == "8,192·H₃·W₃"  # 128·64 = 8,192
    names = closed_forms.size_names(report)
    text = closed_forms.definitions(names, closed_forms.Style.TEXT)
    assert text[:3] == ["H1 = ceil(H/2)", "W1 = ceil(W/2)", "H2 = ceil(H1/2)"]
    latex = closed_forms.definitions(names, closed_forms.Style.LATEX)
    assert latex[0] == r"H_{1} = \left\lceil \frac{H}{2} \right\rceil"
    # 224 → 112 → 56 → 28 → 14 → 7: 9,408·112² + 147,456·56² + 524,288·28² + 2,097,152·14² + 8,388,608·7²
    # + 512,000 = 118,013,952 + 462,422,016 + 411,041,792 + 411,041,792 + 411,041,792 + 512,000 = 1,814,073,344
    assert report.evaluate(H=224, W=224)["macs"] == 1_814_073_344


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("floor((H - 1)/2) + 1", "ceiling(H/2)"),  # stride 2, padding 1, kernel 3: ⌊(H + 2 − 3)/2⌋ + 1
        ("floor(floor(H/4 - 1/4)/2) + 1", "ceiling(H/8)"),
        ("floor(floor(H/2)/2)", "floor(H/4)"),
        ("Min(floor(floor(H/2 - 1/2)/2 + 1/2), floor(floor(H/2 - 1/2)/2)) + 1", "ceiling(H/4)"),
        ("floor((H - 7)/4) + 1", "floor(H/4 + 1/4) - 1"),
        ("ceiling((H + 1)/2)", "floor(H/2) + 1"),
        ("floor((2*H + 1)/4)", "floor(H/2)"),
        ("floor(ceiling(H/2)/2)", "floor(H/4 + 1/4)"),
        ("floor(-H/3)", "-ceiling(H/3)"),
        ("512*floor((512*floor(H/32 - 1/32) + 512)*(floor(W/32 - 1/32) + 1)/512)", "512*ceiling(H/32)*ceiling(W/32)"),
    ],
)
def test_size_simplification_is_an_identity(raw: str, expected: str) -> None:
    """Each rewrite gives the expected normal form and equals the raw expression at every size up to 300
    (all pairs up to 40 for two sizes) and at random sizes up to 10⁶."""
    h, w = (sp.Symbol(s, integer=True, positive=True) for s in "HW")
    raw_expr = sp.sympify(raw, locals={"H": h, "W": w})
    simplified = simplify_sizes(raw_expr)
    assert simplified == sp.sympify(expected, locals={"H": h, "W": w})
    rng = random.Random(raw)
    points = [(v, v + 1) for v in range(1, 301)] + [(a, b) for a in range(1, 41) for b in range(1, 41)]
    points += [(rng.randint(1, 10**6), rng.randint(1, 10**6)) for _ in range(200)]
    for a, b in points:
        assert raw_expr.subs({h: a, w: b}) == simplified.subs({h: a, w: b}), (a, b)


def test_printed_closed_form_equals_the_raw_one_at_many_sizes() -> None:
    """The text a reader sees (sizes defined with ceil/floor, counts in their names) read back with sympy
    equals the traced closed form at random sizes, for a net mixing strides, paddings, ceil-mode pooling and
    an unpadded convolution."""
    model = nn.Sequential(
        nn.Conv2d(3, 8, 7, stride=2, padding=3), nn.MaxPool2d(3, 2, 1), nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.AvgPool2d(2, ceil_mode=True), nn.Conv2d(8, 4, 3), nn.ReLU(), nn.MaxPool2d(2),
    )
    report = flopcalc.analyze(model, ("N", 3, "H", "W"))
    data = json.loads(to_json(report))
    names = closed_forms.size_names(report)
    local = {"ceil": sp.ceiling, "floor": sp.floor, **{s.name: s for s in names.symbols}}
    sizes: dict[sp.Symbol, sp.Expr] = {}
    for line in closed_forms.definitions(names, closed_forms.Style.TEXT):
        name, definition = line.split(" = ")
        sizes[local[name]] = sp.sympify(definition, locals=local).xreplace(sizes)
    rng = random.Random(7)
    for _ in range(60):
        n, h, w = rng.randint(1, 4), rng.randint(40, 5000), rng.randint(40, 5000)
        if report.closed_form.violated({"N": n, "H": h, "W": w}):
            continue
        exact = report.evaluate(N=n, H=h, W=w)
        point = {local["N"]: n, local["H"]: h, local["W"]: w}
        for key in ("macs", "flops"):
            printed = sp.sympify(data["closed_form"]["named"][key], locals=local).xreplace(sizes)
            assert printed.xreplace(point) == exact[key], (key, n, h, w)


def test_evaluate_rejects_non_integer_sizes() -> None:
    report = flopcalc.analyze(nn.Conv2d(3, 4, 1, bias=False), ("N", 3, "H", "W"))
    for bad in (2.9, 2.0, True, "2"):
        with pytest.raises(ConditionError, match="positive integers"):
            report.evaluate(N=bad, H=8, W=8)
    assert report.evaluate(N=2, H=8, W=8)["macs"] == 2 * 4 * 3 * 8 * 8  # N·C_out·C_in·H·W = 1,536


def test_hint_for_a_name_not_in_the_inputs_is_an_error() -> None:
    from typer.testing import CliRunner

    from flopcalc.cli import app
    from flopcalc.errors import InputError

    with pytest.raises(InputError, match="hint for Q, which is not a size in the inputs; the named sizes are H, W"):
        flopcalc.analyze(nn.Conv2d(3, 4, 1), (1, 3, "H", "W"), hints={"Q": 224})
    result = CliRunner().invoke(app, ["alexnet", "--input", "3xHxW", "--hint", "Q=224"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "Error: hint for Q, which is not a size in the inputs; the named sizes are H, W"
    ]


def test_conditions_that_divide_by_zero_below_the_range_are_violated() -> None:
    """convnext_tiny's guards hold ``Mod(1, (H//4)·(W//4))``, undefined for H < 4: listing the conditions
    and evaluating there must not raise ZeroDivisionError."""
    with torch.device("meta"):
        model = torchvision.models.convnext_tiny()
    report = flopcalc.analyze(model, (1, 3, "H", "W"))
    assert report.closed_form.describe_conditions() == ["H >= 64", "W >= 64"]
    for size in (2, 16):
        with pytest.raises(ConditionError, match="does not hold"):
            report.evaluate(H=size, W=size)
