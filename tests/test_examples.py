"""Every example in examples/ runs under the test suite and reproduces its published numbers.

Expected numbers are the seed reports' own arithmetic where a report gives it (AlexNet's layer-by-layer
count), otherwise derived by hand from the architecture, layer by layer.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import runpy
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner

from flopcalc import Report, analyze
from flopcalc.cli import app
from flopcalc.models import load_model
from flopcalc.testing import assert_counts, assert_layers_match

pytest_plugins = ["pytester"]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

FACTORIES = {
    "alexnet_1024": ["alexnet_1024"],
    "keras_cnn": ["keras_cnn"],
    "resnet18_food11": ["resnet18_food11"],
    "mobilenet_v2_small": ["mobilenet_v2_small"],
    "mobilenet_v3_style": ["mobilenet_v3_style"],
    "conv_variants": ["plain_cnn", "depthwise_separable_cnn", "group_cnn"],
}
CASES = [(example, factory) for example, factories in FACTORIES.items() for factory in factories]


@functools.cache
def example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"flopcalc_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def report_of(name: str, factory: str) -> Report:
    module = example(name)
    return analyze(getattr(module, factory)(), module.INPUT)


def batch_norm(channels: int) -> int:
    """BatchNorm's weight and bias."""
    return 2 * channels


def inverted_residual(c_in: int, hidden: int, c_out: int, se: bool = False) -> int:
    """1x1 expand (absent when hidden == c_in), 3x3 depthwise, SE (two 1x1 convs with bias, hidden/4 wide)
    and 1x1 projection, each conv without bias and followed by BatchNorm (SE excepted)."""
    expand = c_in * hidden + batch_norm(hidden) if hidden != c_in else 0
    depthwise = hidden * 3 * 3 + batch_norm(hidden)
    squeeze = hidden // 4
    excitation = (hidden * squeeze + squeeze) + (squeeze * hidden + hidden) if se else 0
    return expand + depthwise + excitation + hidden * c_out + batch_norm(c_out)


# Seed 002: the report's hand count, conv1 corrected to 3·11·11·64 + 64 = 23,296.
ALEXNET_PARAMS = (
    (3 * 11 * 11 * 64 + 64) + (64 * 5 * 5 * 192 + 192) + (192 * 3 * 3 * 384 + 384) + (384 * 3 * 3 * 256 + 256)
    + (256 * 3 * 3 * 256 + 256) + (256 * 6 * 6 * 4096 + 4096) + (4096 * 1024 + 1024) + (1024 * 1000 + 1000)
)
# thop's "FLOPS": output positions · C_out · C_in · K² per conv, inputs · outputs per linear layer, no bias.
ALEXNET_MACS = (
    55 * 55 * 64 * 3 * 11 * 11 + 27 * 27 * 192 * 64 * 5 * 5 + 13 * 13 * 384 * 192 * 3 * 3
    + 13 * 13 * 256 * 384 * 3 * 3 + 13 * 13 * 256 * 256 * 3 * 3 + 9216 * 4096 + 4096 * 1024 + 1024 * 1000
)

# Seed 001: Keras' trainable params (3x3 kernels), and the BatchNorm moving mean and variance it calls non-trainable.
KERAS_CONV = (
    (1 * 9 * 32 + 32) + (32 * 9 * 32 + 32) + (32 * 9 * 64 + 64) + (64 * 9 * 64 + 64) + (64 * 9 * 128 + 128)
    + 2 * (128 * 9 * 128 + 128) + (128 * 9 * 256 + 256) + (256 * 9 * 256 + 256)
)
KERAS_DENSE = (2304 * 1024 + 1024) + (1024 * 1024 + 1024) + (1024 * 7 + 7)
KERAS_BN_CHANNELS = 32 + 64 + 128 + 256 + 1024 + 1024
KERAS_TRAINABLE = KERAS_CONV + KERAS_DENSE + 2 * KERAS_BN_CHANNELS
KERAS_NON_TRAINABLE = 2 * KERAS_BN_CHANNELS


def resnet_stage(c_in: int, c_out: int) -> int:
    """Two basic blocks; the first halves the size and projects the shortcut with a 1x1 conv and BatchNorm."""
    first = c_in * c_out * 9 + batch_norm(c_out) + c_out * c_out * 9 + batch_norm(c_out)
    shortcut = c_in * c_out + batch_norm(c_out)
    second = 2 * (c_out * c_out * 9 + batch_norm(c_out))
    return first + shortcut + second


# Seed 004: torchvision resnet18(num_classes=11).
RESNET18_PARAMS = (
    3 * 64 * 7 * 7 + batch_norm(64)
    + 2 * 2 * (64 * 64 * 9 + batch_norm(64))
    + resnet_stage(64, 128) + resnet_stage(128, 256) + resnet_stage(256, 512)
    + 512 * 11 + 11
)

MOBILENET_V2_PARAMS = (
    3 * 32 * 3 * 3 + batch_norm(32)
    + inverted_residual(32, 32, 16) + inverted_residual(16, 16 * 6, 32) + inverted_residual(32, 32 * 6, 32)
    + inverted_residual(32, 32 * 6, 64) + inverted_residual(64, 64 * 6, 64) + inverted_residual(64, 64, 128)
    + 128 * 1280 + batch_norm(1280)
    + 1280 * 11 + 11
)

MOBILENET_V3_PARAMS = (
    3 * 16 * 3 * 3 + batch_norm(16)
    + inverted_residual(16, 16, 16) + inverted_residual(16, 64, 24) + inverted_residual(24, 96, 24)
    + inverted_residual(24, 96, 40, se=True) + inverted_residual(40, 160, 40, se=True)
    + inverted_residual(40, 160, 80, se=True) + inverted_residual(80, 320, 112, se=True)
    + inverted_residual(112, 448, 160, se=True)
    + 160 * 960 + batch_norm(960)
    + 960 * 100 + 100
)
# Seed 003's listing, batch 8: the output of blocks 1-8.
MOBILENET_V3_BLOCK_SHAPES = [
    (8, 16, 32, 32), (8, 24, 16, 16), (8, 24, 16, 16), (8, 40, 8, 8), (8, 40, 8, 8), (8, 80, 4, 4),
    (8, 112, 4, 4), (8, 160, 2, 2),
]

# Four 3x3 stages with bias and BatchNorm, then an 11-way linear layer.
PLAIN_PARAMS = (
    (3 * 32 * 9 + 32) + (32 * 64 * 9 + 64) + (64 * 128 * 9 + 128) + (128 * 128 * 9 + 128)
    + batch_norm(32 + 64 + 128 + 128) + 128 * 11 + 11
)
DEPTHWISE_SEPARABLE_PARAMS = (
    (3 * 9 + 3) + (3 * 64 + 64) + (64 * 9 + 64) + (64 * 128 + 128) + (128 * 9 + 128) + (128 * 256 + 256)
    + (256 * 9 + 256) + (256 * 768 + 768)
    + batch_norm(64 + 128 + 256 + 768) + 768 * 11 + 11
)
GROUP_PARAMS = (
    (3 * 64 * 9 + 64) + (64 * 128 * 9 // 4 + 128) + (128 * 256 * 9 // 4 + 256) + (256 * 256 * 9 // 4 + 256)
    + batch_norm(64 + 128 + 256 + 256) + 256 * 11 + 11
)

PUBLISHED = {
    "alexnet_1024": {"params": ALEXNET_PARAMS, "macs": ALEXNET_MACS},
    "keras_cnn": {"trainable_params": KERAS_TRAINABLE, "non_trainable_params": KERAS_NON_TRAINABLE},
    "resnet18_food11": {"params": RESNET18_PARAMS},
    "mobilenet_v2_small": {"params": MOBILENET_V2_PARAMS},
    "mobilenet_v3_style": {"params": MOBILENET_V3_PARAMS},
    "plain_cnn": {"params": PLAIN_PARAMS},
    "depthwise_separable_cnn": {"params": DEPTHWISE_SEPARABLE_PARAMS},
    "group_cnn": {"params": GROUP_PARAMS},
}


SEED_NUMBERS = {  # as printed in the seed reports; the hand arithmetic above must give them too
    "alexnet_1024": {"params": 45_442_856, "macs": 698_533_568},
    "keras_cnn": {"trainable_params": 4_741_415, "non_trainable_params": 5_056},
    "resnet18_food11": {"params": 11_182_155},
}


@pytest.mark.parametrize("factory", list(SEED_NUMBERS))
def test_the_counts_are_the_seed_reports_numbers(factory):
    totals = report_of(factory, factory).totals
    for key, published in SEED_NUMBERS[factory].items():
        assert getattr(totals, key) == published == PUBLISHED[factory][key], key
    if factory == "keras_cnn":  # Keras' "Total params"
        assert totals.keras_total_params == 4_746_471


@pytest.mark.parametrize("name, factory", CASES, ids=[factory for _, factory in CASES])
def test_counts(name, factory):
    assert_counts(report_of(name, factory), **PUBLISHED[factory])


@pytest.mark.parametrize("name, factory", CASES, ids=[factory for _, factory in CASES])
def test_every_layer_formula_matches_its_measurement(name, factory):
    report = report_of(name, factory)
    assert_layers_match(report)
    # every MAC of the seeds' models comes from a formula that matches what the forward pass executed
    assert report.totals.checked.macs == report.totals.macs and report.totals.checked.macs_share == 1.0
    assert [u for u in report.unchecked if u.macs] == []


def test_the_examples_published_constants_are_what_they_count():
    alexnet = report_of("alexnet_1024", "alexnet_1024").totals
    assert (alexnet.params, alexnet.macs) == (example("alexnet_1024").PUBLISHED_PARAMS,
                                              example("alexnet_1024").PUBLISHED_MACS)
    keras, keras_totals = example("keras_cnn"), report_of("keras_cnn", "keras_cnn").totals
    assert (keras_totals.trainable_params, keras_totals.non_trainable_params, keras_totals.keras_total_params) == (
        keras.PUBLISHED_TRAINABLE, keras.PUBLISHED_NON_TRAINABLE, keras.PUBLISHED_TOTAL
    )
    assert report_of("resnet18_food11", "resnet18_food11").totals.params == example("resnet18_food11").PUBLISHED_PARAMS


def test_mobilenet_v3_style_has_the_reports_block_shapes():
    report = report_of("mobilenet_v3_style", "mobilenet_v3_style")
    blocks = [row.output_shapes[0] for row in report.rows if row.type == "InvertedResidual"]
    assert blocks == MOBILENET_V3_BLOCK_SHAPES
    assert report.rows[0].output_shapes == ((8, 100),)


def test_conv_variants_have_about_equal_parameter_counts():
    counts = [report_of("conv_variants", factory).totals.params for factory in FACTORIES["conv_variants"]]
    assert counts == [PLAIN_PARAMS, DEPTHWISE_SEPARABLE_PARAMS, GROUP_PARAMS]
    assert max(counts) <= 1.05 * min(counts)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_each_example_runs_as_a_script(name, capsys):
    runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="__main__")
    # what the script counted, without the published constants it prints beside them
    counted = re.sub(r"\(published[^)]*\)", "", capsys.readouterr().out)
    expected = [count for factory in FACTORIES[name] for count in PUBLISHED[factory].values()]
    assert expected
    for count in expected:
        assert f"{count:,}" in counted


@pytest.mark.parametrize("name, factory", CASES, ids=[factory for _, factory in CASES])
def test_each_factory_loads_by_file_reference(name, factory):
    model = load_model(f"{EXAMPLES / name}.py:{factory}")
    assert sum(p.numel() for p in model.parameters()) == report_of(name, factory).totals.params


def test_the_cli_counts_an_example(tmp_path):
    result = CliRunner().invoke(
        app, [f"{EXAMPLES / 'alexnet_1024.py'}:alexnet_1024", "--input", "3x224x224", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    totals = json.loads(result.stdout)["totals"]
    assert (totals["params"], totals["macs"]) == (ALEXNET_PARAMS, ALEXNET_MACS)


def test_the_example_ci_test_file_passes(pytester):
    result = pytester.runpytest(str(EXAMPLES / "test_my_model.py"))
    result.assert_outcomes(passed=3)
