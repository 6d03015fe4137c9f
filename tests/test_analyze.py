"""analyze(): hand-counted probes, attribution to module calls, device invariance, and no trace on the model."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import flopcalc
from flopcalc import ForwardError, InputError, InputSpec, Status, UncountedOpsError


class Matmul(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x @ y


class Einsum(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bij,bjk->bik", x, y)


class Attention(nn.Module):
    def __init__(self, causal: bool):
        super().__init__()
        self.causal = causal

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)


class OwnWeightConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 3, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight)


@pytest.mark.parametrize(
    ("model", "inputs", "macs"),
    [
        pytest.param(Matmul(), [(2, 3, 4), (4, 5)], 2 * 3 * 4 * 5, id="matmul-operator"),
        pytest.param(Einsum(), [(2, 3, 4), (2, 4, 5)], 2 * 3 * 4 * 5, id="einsum"),
        # QKᵀ and AV: 2 × (N·H·L·S·E) = 2 × 2·4·6·6·8; the causal mask is not discounted (docs/conventions.md).
        pytest.param(Attention(False), [(2, 4, 6, 8)] * 3, 2 * (2 * 4 * 6 * 6 * 8), id="sdpa"),
        pytest.param(Attention(True), [(2, 4, 6, 8)] * 3, 2 * (2 * 4 * 6 * 6 * 8), id="sdpa-causal"),
        pytest.param(OwnWeightConv(), (1, 3, 10, 10), 8 * 8 * 8 * 3 * 3 * 3, id="functional-conv2d"),
        # Projections q, k, v, out: 4 × N·L·E·E; scores and weighted sum: 2 × N·L·S·E.
        pytest.param(
            nn.MultiheadAttention(16, 4, batch_first=True), [(2, 6, 16)] * 3,
            4 * (2 * 6 * 16 * 16) + 2 * (2 * 6 * 6 * 16), id="multihead-attention",
        ),
        # Per step and batch item, 4 gates × H × (input + hidden): layer 0 4·20·(10 + 20), layer 1 4·20·(20 + 20).
        pytest.param(nn.LSTM(10, 20, 2), (5, 3, 10), 5 * 3 * (4 * 20 * 30 + 4 * 20 * 40), id="lstm"),
    ],
)
@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_hand_counted_probes(model: nn.Module, inputs: object, macs: int, device: str) -> None:
    report = flopcalc.analyze(model, inputs, device=device)
    assert report.totals.macs == macs
    assert report.totals.measured_macs == macs
    assert not report.uncounted
    assert not report.mismatches


class Parent(nn.Module):
    def __init__(self, shared: nn.Linear):
        super().__init__()
        self.fc = shared

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class SharedLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        shared = nn.Linear(4, 4)
        self.a = Parent(shared)
        self.b = Parent(shared)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


def test_shared_module_params_once_macs_per_call() -> None:
    report = flopcalc.analyze(SharedLinear(), (1, 4))
    assert report.totals.params == 4 * 4 + 4
    assert report.totals.macs == 2 * (4 * 4)
    fc_rows = [row for row in report.rows if row.type == "Linear"]
    assert [row.name for row in fc_rows] == ["a.fc", "a.fc#2"]
    assert [row.params for row in fc_rows] == [4 * 4 + 4, 0]  # the second call reuses the same weights
    assert sum(row.params for row in report.rows if row.is_leaf) == report.totals.params


def test_module_called_twice_counts_twice() -> None:
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(3, 3), relu, nn.Linear(3, 3), relu)
    report = flopcalc.analyze(model, (2, 3))
    assert report.totals.macs == 2 * (2 * 3 * 3)
    assert report.totals.ops["compare"] == 2 * (2 * 3)  # one comparison per element, per call


@pytest.mark.parametrize("name", ["alexnet", "resnet18", "vgg11", "squeezenet1_0"])
def test_conv_linear_macs_equal_flop_counter_mode(name: str) -> None:
    """torch's FlopCounterMode counts only conv and matmul work, as 2 FLOPs per MAC."""
    with torch.device("meta"):
        model = torchvision.models.get_model(name)
    report = flopcalc.analyze(model, (2, 3, 224, 224))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.empty(2, 3, 224, 224, device="meta"))
    assert report.totals.macs == counter.get_total_flops() // 2


def test_vit_counts_identically_on_cpu_and_meta() -> None:
    model = torchvision.models.vit_b_16()
    on_meta = flopcalc.analyze(model, (1, 3, 224, 224))
    on_cpu = flopcalc.analyze(model, (1, 3, 224, 224), device="cpu")
    assert on_meta.totals == on_cpu.totals
    assert [(r.name, r.macs, r.ops) for r in on_meta.rows] == [(r.name, r.macs, r.ops) for r in on_cpu.rows]
    assert not on_meta.mismatches and not on_meta.uncounted


def test_large_meta_model_is_counted_without_weights() -> None:
    """A 1.6-billion-parameter stack (6.4 GB as float32) on meta: counted, nothing allocated."""
    with torch.device("meta"):
        layer = nn.TransformerEncoderLayer(2048, 16, 8192, batch_first=True)
        model = nn.TransformerEncoder(layer, num_layers=32, enable_nested_tensor=False)
    report = flopcalc.analyze(model, (1, 128, 2048))
    per_layer = 4 * 2048 * 2048 + 4 * 2048 + 2 * 2048 * 8192 + 8192 + 2048 + 2 * 2 * 2048
    assert report.totals.params == 32 * per_layer
    # Per layer: 4 projections + FFN over 128 tokens, plus QKᵀ and AV over 128 × 128.
    assert report.totals.macs == 32 * (128 * (4 * 2048 * 2048 + 2 * 2048 * 8192) + 2 * 128 * 128 * 2048)


def test_keras_split_of_parameters() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Linear(2, 2))
    model[2].requires_grad_(False)
    totals = flopcalc.analyze(model, (1, 1, 4, 4)).totals
    assert totals.params == (1 * 4 * 9 + 4) + (4 + 4) + (2 * 2 + 2)
    assert totals.trainable_params == (1 * 4 * 9 + 4) + (4 + 4)
    assert totals.frozen_params == 2 * 2 + 2
    assert totals.non_trainable_params == (2 * 2 + 2) + (4 + 4)  # frozen + running mean and variance
    assert totals.buffers == 4 + 4 + 1  # num_batches_tracked is a buffer but not a float statistic
    assert totals.param_bytes == 4 * totals.params


def test_integer_token_inputs_and_kwargs() -> None:
    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(100, 8)
            self.head = nn.Linear(8, 3)

        def forward(self, tokens: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
            return self.head(self.embed(tokens)) * scale

    by_spec = flopcalc.analyze(Tagger(), InputSpec((2, 5), torch.int64), kwargs={"scale": 2.0})
    by_example = flopcalc.analyze(Tagger(), {"tokens": torch.zeros(2, 5, dtype=torch.int64)})
    assert by_spec.totals.macs == by_example.totals.macs == 2 * 5 * 8 * 3


class Boom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


def _snapshot(model: nn.Module) -> list[object]:
    return [
        {k: v.clone() for k, v in model.state_dict().items()},
        [(m.training, dict(m._forward_hooks), dict(m._forward_pre_hooks), dict(m._buffers)) for m in model.modules()],
        [(n, p.requires_grad) for n, p in model.named_parameters()],
        [sorted(vars(m)) for m in model.modules()],
    ]


def _assert_same(before: list[object], after: list[object]) -> None:
    state_before, state_after = before[0], after[0]
    assert state_before.keys() == state_after.keys()
    assert all(torch.equal(state_before[k], state_after[k]) for k in state_before)
    assert before[1:] == after[1:]


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_model_is_left_untouched(device: str) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(), nn.Flatten())
    model[0].requires_grad_(False)
    model[1].eval()  # a mix of flags must come back as it was
    model[2].register_forward_hook(lambda *args: None)
    before = _snapshot(model)
    flopcalc.analyze(model, (2, 3, 8, 8), device=device)
    _assert_same(before, _snapshot(model))


def test_model_is_left_untouched_when_forward_raises() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), Boom())
    model[1].register_forward_pre_hook(lambda *args: None)
    before = _snapshot(model)
    with pytest.raises(ForwardError, match=r"in 2 \(Boom\) called with input 2x4x6x6: RuntimeError: boom"):
        flopcalc.analyze(model, (2, 3, 8, 8))
    _assert_same(before, _snapshot(model))


def test_shape_error_names_the_layer() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(10, 2))
    with pytest.raises(ForwardError, match=r"in 1 \(Linear\) called with input 1x12"):
        flopcalc.analyze(model, (1, 3, 4))


def test_uncounted_ops_are_listed_and_strict_raises() -> None:
    class Cumsum(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cumsum(x, 0)

    report = flopcalc.analyze(Cumsum(), (4, 4))
    assert report.uncounted == {"aten.cumsum.default": 1}
    assert report.rows[0].status is Status.MEASURED_ONLY
    with pytest.raises(UncountedOpsError, match="aten.cumsum.default ×1"):
        flopcalc.analyze(Cumsum(), (4, 4), strict=True)


@pytest.mark.parametrize("bad", [(1, 0, 3), (1, -2), "3x224", 3.5])
def test_bad_inputs(bad: object) -> None:
    with pytest.raises(InputError):
        flopcalc.analyze(nn.Identity(), bad)
