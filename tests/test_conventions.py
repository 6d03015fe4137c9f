"""Other counters' conventions applied to one analysis: hand-counted numbers, the peers' own ResNet-50 figures
(issue 12, measured with the peers), the CLI and JSON views."""

import gc
import json

import pytest
import torch
import torchvision
from torch import nn

import flopcalc
from flopcalc import InputError, conventions
from flopcalc.cli import app
from typer.testing import CliRunner


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 10),
    )


@pytest.fixture(scope="module")
def small_report() -> flopcalc.Report:
    return flopcalc.analyze(small_cnn(), (1, 3, 16, 16))


# Hand counts for small_cnn on 1x3x16x16 (conv output 8x16x16 = 2,048 elements):
#   conv MACs 2,048 * 3*3*3 = 55,296; conv bias adds 2,048; BatchNorm 2,048 elements; linear 8*10 = 80 MACs + 10 bias.
HAND = {
    "flopcalc": 55_296 + 80,  # 55,376 MACs
    # thop: conv 55,296 + BN 2*2,048*2 (affine) = 8,192 + adaptive pool (16/1*16/1 + 1) * 8 outputs = 2,056 + linear 80
    "thop": 55_296 + 8_192 + 2_056 + 80,
    # ultralytics-thop: the same norm; adaptive pool 8*16*16 inputs + 8 outputs = 2,056
    "ultralytics-thop": 55_296 + 8_192 + 2_056 + 80,
    "ptflops-aten": 55_296 + 2_048 + 80 + 10,  # bias adds counted as MACs
    "fvcore": 55_296 + 2 * 2_048 + 2_048 + 80,  # BN (eval, affine) 2 per element, adaptive_avg_pool2d 1 per input
    # torchinfo: conv (216 + 8 params) * 16*16 positions = 57,344; BN 16 params * batch 1; linear 90 params * 1
    "torchinfo": (216 + 8) * 256 + 16 + 90,
    "torch": 2 * (55_296 + 80),  # FLOPs, 2 per MAC
    # ptflops (pytorch): conv hook 55,296 + 2,048 bias; BN hook 2,048 * 2 (affine); ReLU hook 2,048 + patched F.relu
    # 2,048; adaptive pool hook 2,048 inputs + patched F.adaptive_avg_pool2d 2,048; linear hook 8*10 + 10 bias
    "ptflops": 55_296 + 2_048 + 4_096 + 4_096 + 4_096 + 90,
    "deepspeed": 55_296 + 80,  # MACs; FLOPs below
    "calflops": 55_296 + 80,
}
# DeepSpeed and calflops FLOPs: 2 * 55,376 MACs + conv bias 2,048 + BN 2 * 2,048 + relu 2,048 + pool input 2,048
PROFILER_FLOPS = 2 * 55_376 + 2_048 + 4_096 + 2_048 + 2_048


@pytest.mark.parametrize("name", sorted(HAND))
def test_hand_counted(small_report: flopcalc.Report, name: str) -> None:
    result = small_report.as_convention(name)
    assert result.value == HAND[name]
    assert result.value == result.baseline + sum(d.amount for d in result.differences)


@pytest.mark.parametrize("name", ["deepspeed", "calflops"])
def test_profilers_print_flops_too(small_report: flopcalc.Report, name: str) -> None:
    (flops,) = small_report.as_convention(name).also
    assert (flops.value, flops.unit) == (PROFILER_FLOPS, "FLOPs")
    assert flops.value == flops.baseline + sum(d.amount for d in flops.differences)


def test_differences_by_rule(small_report: flopcalc.Report) -> None:
    fvcore = {d.rule: d.amount for d in small_report.as_convention("fvcore").differences}
    assert fvcore == {"batch_norm (eval) 2 per element with affine, else 1": 4_096,  # 2 * 2,048
                      "adaptive_avg_pool2d 1 per input element": 2_048}
    torch_result = small_report.as_convention("torch")
    assert (torch_result.unit, torch_result.baseline, torch_result.differences) == ("FLOPs", 110_752, ())


def test_blind_spots_name_what_is_missed() -> None:
    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = nn.MultiheadAttention(16, 2, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.mha(x, x, x, need_weights=False)[0]

    report = flopcalc.analyze(Attention(), (1, 4, 16))
    # in projection 4*16*48 = 3,072, q.k and attention.v 2 * 4*4*16 = 512, out projection 4*16*16 = 1,024
    assert report.totals.macs == 3_072 + 512 + 1_024
    thop = report.as_convention("thop")
    assert thop.value == 0
    assert thop.blind_spots == ("MultiheadAttention: no rule (thop looks up the exact type), counted as 0: -4,608 MACs",)
    fvcore = report.as_convention("fvcore")
    assert fvcore.value == 3_072 + 1_024  # scaled_dot_product_attention is unsupported
    assert [d.amount for d in fvcore.differences] == [-512]


def test_needs_no_model_and_no_second_pass() -> None:
    model = small_cnn()
    calls = []
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    report = flopcalc.analyze(model, (1, 3, 16, 16))
    del model
    gc.collect()
    results = conventions.apply_all(report)  # the language-model formulas do not apply to a CNN
    assert {r.name: r.value for r in results} == HAND
    assert len(calls) == 1


def test_listing_and_unknown_names() -> None:
    assert list(conventions.CONVENTIONS)[:2] == ["flopcalc", "thop"]
    assert all(c.rules and c.source for c in conventions.CONVENTIONS.values())
    with pytest.raises(InputError, match="did you mean fvcore"):
        conventions.get("fvcor")


def test_symbolic_report_is_refused() -> None:
    report = flopcalc.analyze(small_cnn(), (1, 3, "H", "W"))
    with pytest.raises(InputError, match="concrete sizes"):
        report.as_convention("thop")


# ResNet-50 at 1x3x224x224 as printed by each peer (issue 12, torch 2.14.1, torchvision 0.29.1).
RESNET50 = {
    "thop": 4_133_742_592, "ultralytics-thop": 4_133_742_592, "ptflops-aten": 4_089_185_256,
    "fvcore": 4_111_512_576, "torchinfo": 4_089_238_376, "torch": 8_178_368_512,
}


def test_resnet50_as_the_peers_print_it() -> None:
    with torch.device("meta"):
        model = torchvision.models.resnet50()
    report = flopcalc.analyze(model, (1, 3, 224, 224))
    assert {name: report.as_convention(name).value for name in RESNET50} == RESNET50


runner = CliRunner()


def test_cli_one_convention_and_all() -> None:
    one = runner.invoke(app, ["alexnet", "--input", "3x224x224", "--convention", "torch"])
    assert one.exit_code == 0, one.output
    # alexnet: 714,188,480 MACs (README) -> FlopCounterMode prints 1,428,376,960 FLOPs
    assert "1,428,376,960 FLOPs" in one.output
    every = runner.invoke(app, ["alexnet", "--input", "3x224x224", "--convention", "all", "--format", "markdown"])
    assert every.exit_code == 0, every.output
    # one row per printed figure: flopcalc, DeepSpeed and calflops print FLOPs besides MACs; the language-model
    # formulas do not apply to alexnet
    applicable = [c for c in conventions.CONVENTIONS.values() if not c.language_model]
    assert every.output.count("\n| `") == len(applicable) + 3


def test_cli_json_as_convention() -> None:
    result = runner.invoke(app, ["alexnet", "--input", "3x224x224", "--convention", "ptflops-aten", "-f", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)["as_convention"]
    # alexnet biases: conv 64*55*55 + 192*27*27 + 384*13*13 + 256*13*13 + 256*13*13
    # = 193,600 + 139,968 + 64,896 + 43,264 + 43,264 = 484,992 and linear 4,096 + 4,096 + 1,000 = 9,192 bias adds,
    # counted as MACs by ptflops (aten)
    assert data["value"] == 714_188_480 + 484_992 + 9_192
    assert data["unit"] == "MACs" and data["differences"][0]["amount"] == 494_184


@pytest.mark.parametrize("args, message", [
    (["--convention", "nope"], "unknown convention 'nope'"),
    (["--convention", "thop", "--format", "csv"], "goes with --format table, markdown or json"),
])
def test_cli_bad_convention(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["alexnet", "--input", "3x224x224", *args])
    assert result.exit_code == 2
    assert message in result.output


def tiny_gpt2() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=1000, n_positions=128,
                                     bos_token_id=0, eos_token_id=0)
    with torch.device("meta"):
        return transformers.GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def gpt2_report() -> flopcalc.Report:
    return flopcalc.analyze(tiny_gpt2(), flopcalc.InputSpec((1, 32), torch.int64))


# tiny GPT-2: 2 layers, d = 64, vocab 1,000, 128 positions, 32 tokens. Each layer: ln 2*64 = 128, attention
# 64*192 + 192 = 12,480 and 64*64 + 64 = 4,160, ln 128, mlp 64*256 + 256 = 16,640 and 256*64 + 64 = 16,448:
# 49,984; final ln 128. N = 2 * 49,984 + 128 = 100,096; the embeddings 1,000*64 + 128*64 = 72,192 are left
# out (the head is tied to wte).
N_GPT2 = 2 * 49_984 + 128
LLM = {
    "2N": 2 * N_GPT2 * 32,
    # attention: 2 * n_layer * n_ctx * d_attn = 2 * 2 * 32 * 64 per token
    "kaplan": 2 * N_GPT2 * 32 + 2 * 2 * 32 * 64 * 32,
    "palm": 6 * N_GPT2 * 32 + 12 * 2 * 64 * 32 * 32,
    # 24*B*s*L*h^2 * 3 + 4*B*s^2*L*h * 3 + 2*B*s*h*V * 3 with B=1, s=32, L=2, h=64, V=1,000
    "megatron": 3 * (24 * 32 * 2 * 64 * 64 + 4 * 32 * 32 * 2 * 64 + 2 * 32 * 64 * 1_000),
}


@pytest.mark.parametrize("name", sorted(LLM))
def test_language_model_formulas(gpt2_report: flopcalc.Report, name: str) -> None:
    result = gpt2_report.as_convention(name)
    assert (result.value, result.unit) == (LLM[name], "FLOPs")


def test_formula_conventions_list_what_they_read_not_as_blind_spots(gpt2_report: flopcalc.Report) -> None:
    result = gpt2_report.as_convention("palm")
    assert result.blind_spots == ()
    # the values above: N = 100,096, B = 1, s = 32, L = 2, d_attn = h = 64, V = 1,000
    assert result.notes == ("N = 100,096 non-embedding params, B = 1, s = 32, L = 2, d_attn = 64, h = 64, V = 1,000",)
    assert result.to_dict()["notes"] == list(result.notes)


def test_megatron_with_recomputation(gpt2_report: flopcalc.Report) -> None:
    (recompute,) = gpt2_report.as_convention("megatron").also
    assert recompute.value == LLM["megatron"] // 3 * 4


def test_language_model_formulas_need_a_language_model(small_report: flopcalc.Report) -> None:
    with pytest.raises(InputError, match="is for language models"):
        small_report.as_convention("palm")
    assert "palm" not in [result.name for result in conventions.apply_all(small_report)]


# Recurrent layers, 5 steps x batch 2 (sequence first), input 4, hidden 3, one layer with biases.
# LSTM with proj_size=2: weight_ih 12x4 = 48, weight_hh 12x2 = 24, biases 12 + 12 = 24.
#   flopcalc: per step and entry 4*3*(4 + 2) gate MACs + 3*2 projection = 78; x 10 = 780 MACs.
#   thop (ignores proj_size): gate state (4 + 3)*3 + 3 + 2*3 = 30, x 4 = 120, + 3*3 + 3 = 132; x 10 = 1,320.
#   ultralytics-thop: state (4 + 2)*3 + 3 + 6 = 27, x 4 = 108, + 9 + 3 + 3*2 = 126; x 10 = 1,260.
#   ptflops: 48 + 24 + 24 + 10*3 elementwise = 126, x dim 0 x dim 1 = 1,260, divided by the batch it reads off
#   dim 0 of the sequence-first input (5): 252.
#   DeepSpeed, calflops: FLOPs (2*48 - 12) + (2*24 - 12) + 30 + 24 = 174, x 10 = 1,740; MACs 0.
# GRU: weight_ih 9x4 = 36, weight_hh 9x3 = 27, biases 18; flopcalc 9*(4 + 3) = 63 MACs per step; x 10 = 630.
#   thop: state (3 + 4)*3 + 3 + 6 = 30, x 2 = 60, + 30 + 3 + 9 = 102; x 10 = 1,020 (ultralytics the same).
#   ptflops: 36 + 27 + 18 + 7*3 = 102, x 10 = 1,020, / 5 = 204.
#   DeepSpeed: (72 - 9) + (54 - 9) + 21 + 18 = 147, x 10 = 1,470 FLOPs.
# fvcore has no handle for aten::lstm or aten::gru: 0.
RECURRENT = {
    "lstm": (lambda: nn.LSTM(4, 3, proj_size=2), 780, {"thop": 1_320, "ultralytics-thop": 1_260, "ptflops": 252,
                                                        "fvcore": 0, "deepspeed": 0, "calflops": 0}, 1_740),
    "gru": (lambda: nn.GRU(4, 3), 630, {"thop": 1_020, "ultralytics-thop": 1_020, "ptflops": 204, "fvcore": 0,
                                        "deepspeed": 0, "calflops": 0}, 1_470),
}


@pytest.mark.parametrize("kind", sorted(RECURRENT))
def test_recurrent_rules(kind: str) -> None:
    build, macs, expected, profiler_flops = RECURRENT[kind]
    report = flopcalc.analyze(build(), (5, 2, 4))
    assert report.totals.macs == macs
    assert {name: report.as_convention(name).value for name in expected} == expected
    for name in ("deepspeed", "calflops"):
        assert report.as_convention(name).also[0].value == profiler_flops
        missed = f"RNN/GRU/LSTM: the hook adds FLOPs, no MACs: -{macs:,} MACs"
        assert report.as_convention(name).blind_spots == (missed,)


def test_module_shared_by_two_parents() -> None:
    shared = nn.Linear(8, 8)
    model = nn.Sequential(nn.Sequential(shared, nn.ReLU()), nn.Sequential(shared, nn.ReLU()))
    report = flopcalc.analyze(model, (2, 8))
    assert report.totals.macs == 2 * 2 * 8 * 8  # two calls of 2*8*8 = 128: 256
    # calflops sums parent by parent: the shared Linear's two calls (256) once per parent (2): 512. thop also
    # registers its hook once per path (model.apply), so each call adds 2 x 128: 2 parents x 2 calls x 2 x 128
    # = 1,024. ptflops sums its module hooks parent by parent: Linear (8*8 + 8 bias) * 2 rows = 144 per call,
    # 2 calls x 2 parents = 576, ReLU hooks 2 * 16 = 32; divided by the batch 2: 304; plus the patched F.relu
    # 2 * 16 = 32: 336. ultralytics-thop and DeepSpeed add each module's total once.
    expected = {"flopcalc": 256, "thop": 1_024, "ultralytics-thop": 256, "ptflops": 336, "deepspeed": 256,
                "calflops": 512}
    assert {name: report.as_convention(name).value for name in expected} == expected
    # FLOPs: DeepSpeed 2*256 + relu 2*16 = 544; calflops 2*512 + 32 = 1,056
    assert [report.as_convention(name).also[0].value for name in ("deepspeed", "calflops")] == [544, 1_056]
    assert "a module held by several parents counted once per parent" in {
        d.rule for d in report.as_convention("calflops").differences}


class _HeldGelu(nn.Module):
    """Keeps F.gelu as an attribute, as transformers' GELUActivation does."""

    def __init__(self) -> None:
        super().__init__()
        self.act = torch.nn.functional.gelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x)


class _Conv1D(nn.Module):
    """torch.addmm on an (in, out) weight, as transformers' Conv1D: no transpose, unlike F.linear."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(8, 4))
        self.bias = nn.Parameter(torch.zeros(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x, self.weight)


def test_patched_function_forms() -> None:
    report = flopcalc.analyze(nn.Sequential(_Conv1D(), _HeldGelu(), nn.GELU()), (3, 8))
    assert report.totals.macs == 3 * 8 * 4  # 96
    # DeepSpeed FLOPs: 2 * 96 for torch.addmm plus its bias vector's 4 elements once; the held F.gelu is the
    # unpatched original (0); nn.GELU calls the patched F.gelu: 3*4 = 12.
    assert report.as_convention("deepspeed").also[0].value == 2 * 96 + 4 + 12
    # ultralytics-thop counts F.linear, matmul, bmm, einsum and SDPA outside a module rule, not torch.addmm
    assert report.as_convention("ultralytics-thop").value == 0
    # ptflops: patched torch.addmm 96 + 4 (the added matrix) and nn.GELU's patched F.gelu 12, plus nn.GELU's
    # module hook 12 divided by the batch 3 = 4
    assert report.as_convention("ptflops").value == 96 + 4 + 12 + 12 // 3


@pytest.mark.parametrize("width", [60, 80, 120, 200])
def test_every_convention_view_keeps_each_number_whole(small_report: flopcalc.Report, width: int) -> None:
    from flopcalc.render.console import plain_text
    from flopcalc.render.conventions import convention_to_rich, conventions_to_rich, side_by_side_rows

    results = conventions.apply_all(small_report)
    text = plain_text(conventions_to_rich(small_report, results), width)
    assert max(len(line) for line in text.splitlines()) <= width
    for row in side_by_side_rows(results):
        assert row[2] in text  # the printed value
        for amount in (part.rsplit(" ", 1)[-1] for part in row[5].splitlines() if part != "same count"):
            assert amount in text, (amount, width)
    one = plain_text(convention_to_rich(small_report, small_report.as_convention("thop")), width)
    assert max(len(line) for line in one.splitlines()) <= width
    for difference in small_report.as_convention("thop").differences:
        assert f"{difference.amount:+,}" in one
