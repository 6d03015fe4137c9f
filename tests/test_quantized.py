"""Quantized models (torch.ao static, dynamic, QAT-converted): packed weights are parameters, quantized kernels
are counted as the float ops they stand for, and torchvision's published quantized metadata is reproduced.

Models are quantized here from random weights with fbgemm (nothing is downloaded); the metadata is read from
torchvision's weight enums, which needs no download either.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.ao.quantization as quantization
from torch import nn
from torchvision.models import get_model_weights
from torchvision.models import quantization as tvq

import flopcalc
from flopcalc import ForwardError
from model_state import assert_unchanged, snapshot

QUANTIZED = ["googlenet", "inception_v3", "mobilenet_v2", "mobilenet_v3_large", "resnet18", "resnet50",
             "resnext101_32x8d", "resnext101_64x4d", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0",
             "shufflenet_v2_x1_5", "shufflenet_v2_x2_0"]

# torchvision publishes googlenet's count without the auxiliary classifiers, which its weights drop.
OPTIONS = {"googlenet": {"aux_logits": False}}


@pytest.fixture(autouse=True)
def _fbgemm() -> None:
    torch.backends.quantized.engine = "fbgemm"
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


def _quantized(name: str, fuse: bool, qat: bool = False) -> tuple[nn.Module, int]:
    """torchvision's quantizable ``name`` with random weights, calibrated on one random batch and converted;
    and its input size."""
    size = 299 if name == "inception_v3" else 224
    model = getattr(tvq, name)(weights=None, quantize=False, **OPTIONS.get(name, {}))
    model.eval()
    if fuse:
        model.fuse_model(is_qat=qat)
    model.qconfig = (quantization.get_default_qat_qconfig if qat else quantization.get_default_qconfig)("fbgemm")
    if qat:
        model.train()
        quantization.prepare_qat(model, inplace=True)
        model.eval()
    else:
        quantization.prepare(model, inplace=True)
    with torch.no_grad():
        model(torch.randn(1, 3, size, size))
    quantization.convert(model, inplace=True)
    return model, size


def _published(name: str) -> tuple[int, float]:
    meta = get_model_weights(f"quantized_{name}").DEFAULT.meta
    return meta["num_params"], meta["_ops"]


def _folded_batch_norm(name: str) -> int:
    """Parameters that fusion removes: each BatchNorm's weight and bias (2C) become the conv's bias (C)."""
    model = getattr(tvq, name)(weights=None, quantize=False, **OPTIONS.get(name, {}))
    return sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def _assert_published(name: str, fuse: bool) -> None:
    model, size = _quantized(name, fuse)
    report = flopcalc.analyze(model, (1, 3, size, size), device="cpu")
    num_params, gmacs = _published(name)
    expected_params = num_params - (_folded_batch_norm(name) if fuse else 0)
    assert report.totals.params == expected_params
    assert round(report.totals.macs / 1e9, 3) == gmacs
    # int8 weights cannot be trained; unfused, the quantized BatchNorm keeps its float weight and bias (2C)
    assert report.totals.trainable_params == (0 if fuse else 2 * _folded_batch_norm(name))
    assert not report.uncounted
    assert not report.mismatches


@pytest.mark.parametrize("fuse", [False, True], ids=["unfused", "fused"])
@pytest.mark.parametrize("name", ["mobilenet_v2", "shufflenet_v2_x0_5"])
def test_quantized_torchvision_models_reproduce_published_metadata(name: str, fuse: bool) -> None:
    _assert_published(name, fuse)


@pytest.mark.slow
@pytest.mark.parametrize("name", QUANTIZED)
def test_every_quantized_torchvision_model_reproduces_published_metadata(name: str) -> None:
    _assert_published(name, fuse=False)
    _assert_published(name, fuse=True)


def test_qat_converted_model_counts_as_the_static_one() -> None:
    static, _ = _quantized("shufflenet_v2_x0_5", fuse=True)
    qat, _ = _quantized("shufflenet_v2_x0_5", fuse=True, qat=True)
    a = flopcalc.analyze(static, (1, 3, 224, 224), device="cpu").totals
    b = flopcalc.analyze(qat, (1, 3, 224, 224), device="cpu").totals
    assert (a.params, a.macs, a.ops) == (b.params, b.macs, b.ops)


def test_dynamic_quantized_linear_layers() -> None:
    model = quantization.quantize_dynamic(
        nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)), {nn.Linear}, dtype=torch.qint8
    )
    report = flopcalc.analyze(model, (2, 8), device="cpu")
    assert report.totals.params == (8 * 16 + 16) + (16 * 4 + 4)  # 144 + 68 = 212
    assert report.totals.macs == 2 * 8 * 16 + 2 * 16 * 4  # 256 + 128 = 384
    assert report.totals.ops == {"bias_add": 2 * 16 + 2 * 4, "compare": 2 * 16}  # 40 bias adds, 32 ReLU compares
    assert not report.uncounted and not report.mismatches


def test_static_quantized_layers_hand_counted() -> None:
    model = nn.Sequential(quantization.QuantStub(), nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5),
                          quantization.DeQuantStub())
    model.eval()
    model.qconfig = quantization.get_default_qconfig("fbgemm")
    quantization.prepare(model, inplace=True)
    model(torch.randn(2, 3, 8, 8))
    quantization.convert(model, inplace=True)
    report = flopcalc.analyze(model, (2, 3, 8, 8), device="cpu")
    # conv: 3·4·3·3 + 4 = 112 params, 2·4·6·6·3·3·3 = 7,776 MACs; linear: 144·5 + 5 = 725 params, 2·144·5 = 1,440
    assert report.totals.params == 112 + 725
    assert report.totals.macs == 7_776 + 1_440
    assert report.totals.ops == {
        "bias_add": 2 * 4 * 6 * 6 + 2 * 5,  # 288 + 10
        "div": 2 * 3 * 8 * 8, "compare": 2 * (2 * 3 * 8 * 8), "add": 2 * 3 * 8 * 8 + 2 * 5,  # quantize 384 elements
        "mul": 2 * 5,  # dequantize the 10 outputs: 1 add + 1 mul each
    }
    assert [row.status.value for row in report.rows[2:5:2]] == ["match", "match"]


def test_quantized_model_on_meta_asks_for_cpu_and_is_left_untouched() -> None:
    model, _ = _quantized("shufflenet_v2_x0_5", fuse=True)
    before = snapshot(model)
    with pytest.raises(ForwardError, match=r"run it on the CPU \(device='cpu'"):
        flopcalc.analyze(model, (1, 3, 224, 224))
    flopcalc.analyze(model, (1, 3, 224, 224), device="cpu")
    assert_unchanged(before, model)
