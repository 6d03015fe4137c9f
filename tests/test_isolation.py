"""analyze() leaves the model exactly as it came (meta or cpu, inference or training, success or failure), and
no executed work is lost: models that used to be changed, or whose work used to vanish, each with a test."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import torchvision
from torch import nn

import flopcalc
from flopcalc import ForwardError, InputError
from model_state import assert_unchanged, snapshot


class RotaryCache(nn.Module):
    """Stores a cache on ``self`` in forward (LLaMA-style): with real weights the pass used to leave a fake
    tensor there, so later real forwards returned fake tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("cos", torch.empty(0), persistent=False)
        self.cached = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.cached:
            self.cos = torch.arange(x.shape[1], dtype=torch.float32).unsqueeze(-1).cos()
            self.cached = x.shape[1]
        return x * self.cos[: x.shape[1]]


class StepCounter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("steps", torch.zeros(()))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.steps.add_(1)
        self.calls += 1
        self.last_input = x
        return x


class FreezesHead(nn.Module):
    """A fine-tuning ``train()`` override: it must not run during analysis."""

    def __init__(self) -> None:
        super().__init__()
        self.body, self.head = nn.Linear(4, 4), nn.Linear(4, 2)

    def train(self, mode: bool = True) -> FreezesHead:
        super().train(mode)
        self.head.requires_grad_(not mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class SelfMutating(nn.Module):
    """A forward that changes flags, hooks and parameters of its own module."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fc.weight.requires_grad_(False)
        self.fc.register_forward_hook(lambda *args: None)
        self.fc.weight.mul_(2)
        self.fc.bias = nn.Parameter(torch.zeros(4))
        return self.fc(x)


class Boom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("steps", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.steps.add_(1)
        self.partial = x * 2
        raise RuntimeError("boom")


def _weight_norm_linear() -> nn.Module:
    with pytest.warns(FutureWarning):
        return nn.Sequential(nn.utils.weight_norm(nn.Linear(4, 5)), nn.ReLU())


def _spectral_norm_linear() -> nn.Module:
    return nn.Sequential(nn.utils.spectral_norm(nn.Linear(4, 5)))


EDGE_MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "rotary-cache": (lambda: nn.Sequential(nn.Linear(16, 16), RotaryCache()), (1, 10, 16)),
    "step-counter": (lambda: nn.Sequential(nn.Linear(3, 3), StepCounter()), (2, 3)),
    "batchnorm": (lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout()), (2, 3, 6, 6)),
    "weight-norm": (_weight_norm_linear, (2, 4)),
    "spectral-norm": (_spectral_norm_linear, (2, 4)),
    "lazy": (lambda: nn.Sequential(nn.LazyLinear(4), nn.LazyBatchNorm1d()), (2, 8)),
    "train-override": (FreezesHead, (2, 4)),
    "self-mutating": (SelfMutating, (2, 4)),
    "tied-weights": (lambda: _tied(), (2, 6)),
    "transformer-encoder": (
        lambda: nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), 1), (2, 5, 16)
    ),
}


def _tied() -> nn.Module:
    embed, head = nn.Linear(6, 3, bias=False), nn.Linear(3, 6, bias=False)
    model = nn.Sequential(embed, head)
    head.weight = nn.Parameter(embed.weight.detach().t().contiguous())
    model[1].register_forward_pre_hook(lambda module, args: None)
    return model


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("device", ["meta", "cpu"])
@pytest.mark.parametrize("name", list(EDGE_MODELS))
def test_edge_models_are_left_untouched(name: str, device: str, training: bool) -> None:
    build, shape = EDGE_MODELS[name]
    model = build()
    before = snapshot(model)
    flopcalc.analyze(model, shape, device=device, training=training)
    assert_unchanged(before, model)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_model_is_left_untouched_when_forward_raises(device: str) -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), Boom())
    before = snapshot(model)
    with pytest.raises(ForwardError, match="boom"):
        flopcalc.analyze(model, (2, 3), device=device, training=True)
    assert_unchanged(before, model)


TORCHVISION_SAMPLE = ["resnet18", "mobilenet_v3_small", "squeezenet1_0", "vit_b_16"]


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("name", TORCHVISION_SAMPLE)
def test_torchvision_sample_is_left_untouched(name: str, training: bool) -> None:
    model = torchvision.models.get_model(name, num_classes=10)
    before = snapshot(model)
    flopcalc.analyze(model, (2, 3, 224, 224), training=training)
    assert_unchanged(before, model)


def test_torchvision_sample_is_left_untouched_on_cpu() -> None:
    model = torchvision.models.mobilenet_v3_small(num_classes=10)
    before = snapshot(model)
    flopcalc.analyze(model, (2, 3, 64, 64), device="cpu", training=True)
    assert_unchanged(before, model)


def test_meta_model_is_left_untouched() -> None:
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(16, 16), nn.BatchNorm1d(10), StepCounter())
    before = snapshot(model)
    flopcalc.analyze(model, (1, 10, 16), training=True)
    assert_unchanged(before, model)


def test_closed_form_pass_leaves_model_untouched() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), StepCounter())
    before = snapshot(model)
    flopcalc.analyze(model, ("N", 3, "H", "W"), training=True)
    assert_unchanged(before, model)


def test_real_forward_after_analysis_returns_real_tensors() -> None:
    model = nn.Sequential(nn.Linear(16, 16), RotaryCache())
    flopcalc.analyze(model, (1, 10, 16))
    out = model(torch.randn(1, 8, 16))
    assert type(out) is torch.Tensor
    assert model[1].cos.shape == (8, 1)  # the model built its cache on its own first real call


def test_training_pass_does_not_update_running_statistics() -> None:
    bn = nn.BatchNorm1d(3)
    for device in ("meta", "cpu"):
        flopcalc.analyze(bn, (4, 3), device=device, training=True)
    assert bn.num_batches_tracked.item() == 0
    assert torch.equal(bn.running_mean, torch.zeros(3)) and torch.equal(bn.running_var, torch.ones(3))


def test_train_override_does_not_run() -> None:
    model = FreezesHead()
    flopcalc.analyze(model, (2, 4))
    assert all(p.requires_grad for p in model.parameters())
    assert model.training


def test_lazy_modules_are_counted_and_stay_lazy() -> None:
    model = nn.Sequential(nn.LazyLinear(4))
    for device in ("meta", "cpu"):
        report = flopcalc.analyze(model, (2, 8), device=device)
        assert report.totals.params == 8 * 4 + 4  # weight 8·4 + bias 4 = 36
        assert report.totals.macs == 2 * 8 * 4  # N·C_in·C_out = 64
        assert not report.mismatches
    assert isinstance(model[0], nn.LazyLinear)
    assert isinstance(model[0].weight, nn.parameter.UninitializedParameter)


def test_lazy_initialisation_is_not_forward_work() -> None:
    """Weight initialisation (uniform_) in a lazy module's first call is set-up: no uncounted op, no row mark."""
    model = nn.Sequential(nn.LazyConv2d(8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))
    for device in ("meta", "cpu"):
        report = flopcalc.analyze(model, (1, 3, 16, 16), device=device)
        assert report.uncounted == {} and not any(row.uncounted for row in report.rows)
        # conv 8·14·14·3·3·3 = 42,336 MACs; linear 8·14·14 = 1,568 features → 10: 15,680 MACs
        assert report.totals.macs == 42_336 + 15_680
        assert report.totals.params == (3 * 8 * 9 + 8) + (1_568 * 10 + 10)  # 224 + 15,690 = 15,914
    assert isinstance(model[0], nn.LazyConv2d) and "initialize_parameters" not in vars(model[0])


def test_lazy_modules_refuse_a_closed_form() -> None:
    model = nn.Sequential(nn.LazyLinear(4))
    with pytest.raises(InputError, match="lazy modules"):
        flopcalc.analyze(model, ("N", 8))
    assert isinstance(model[0].weight, nn.parameter.UninitializedParameter)


def test_cpu_inputs_do_not_use_the_global_rng() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(), nn.LazyLinear(2))  # dropout and lazy init draw numbers
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    flopcalc.analyze(model, (2, 3), device="cpu", training=True)
    assert torch.equal(torch.rand(3), expected)


def test_example_inputs_are_not_changed() -> None:
    class InPlace(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mul_(2)

    x = torch.ones(2, 3)
    flopcalc.analyze(InPlace(), x, device="cpu")
    assert torch.equal(x, torch.ones(2, 3))


def test_concurrent_calls_on_one_model_give_the_single_call_totals() -> None:
    model = torchvision.models.resnet18(num_classes=10)
    expected = flopcalc.analyze(model, (1, 3, 64, 64)).totals
    before = snapshot(model)
    with ThreadPoolExecutor(4) as pool:
        totals = list(pool.map(lambda _: flopcalc.analyze(model, (1, 3, 64, 64)).totals, range(4)))
    assert all(t == expected for t in totals)
    assert_unchanged(before, model)


def test_analyze_inside_its_own_forward_is_refused() -> None:
    class Reentrant(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            flopcalc.analyze(self, (1, 2))
            return x

    with pytest.raises(ForwardError, match="already being analysed"):
        flopcalc.analyze(Reentrant(), (1, 2))
    assert threading.active_count() >= 1
