"""Every convention against the numbers the peers themselves printed (tests/data/peer_counts.json, made by
``python bench/peer_counts.py`` in the peers' environment: the commands and versions are in the file).

The torchvision models are counted at their image input; the transformers models (``"tokens": true``) are
built from the config stored with their numbers, on meta, and counted at one sequence of int64 token ids; the
small hand-written ones (recurrent layers, a shared module) come from bench/models.py, which the peers ran."""

import functools
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
import torchvision

import flopcalc

DATA = json.loads((Path(__file__).parent / "data" / "peer_counts.json").read_text())
_BENCH_MODELS = Path(__file__).parents[1] / "bench" / "models.py"
QUICK = {"resnet50", "vit_b_16", "convnext_tiny", "alexnet", "resnet18", "mobilenet_v3_small", "hf_gpt2_2l",
         "hf_bert_small", "hf_llama_gqa", "recurrent_stack", "shared_module"}
"""Checked in every run; the other reference models only with ``-m slow`` (make test-all)."""


def _model(name: str) -> torch.nn.Module:
    entry = DATA["models"][name]
    if entry.get("tokens"):
        transformers = pytest.importorskip("transformers")
        from flopcalc import hf

        config = dict(entry["config"])
        return hf.load(transformers.CONFIG_MAPPING[config.pop("model_type")].from_dict(config)).model
    small = _small_models()
    if name in small:
        with torch.device("meta"):
            return small[name][0]()
    try:
        with torch.device("meta"):
            return torchvision.models.get_model(name).eval()
    except NotImplementedError:  # regnet computes with tensors in its constructor
        model = torchvision.models.get_model(name).eval()
        return model.to("meta")


@functools.cache
def _small_models() -> dict:
    """bench/models.py's SMALL: the hand-written models the peers counted, by name."""
    spec = importlib.util.spec_from_file_location("bench_models", _BENCH_MODELS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SMALL


@pytest.fixture(scope="module")
def reports() -> dict[str, flopcalc.Report]:
    return {}


def _report(reports: dict[str, flopcalc.Report], name: str) -> flopcalc.Report:
    if name not in reports:
        entry = DATA["models"][name]
        shape = tuple(entry["input"])
        inputs = [flopcalc.InputSpec(shape, torch.int64)] if entry.get("tokens") else shape
        reports[name] = flopcalc.analyze(_model(name), inputs)
    return reports[name]


def _cases() -> list:
    cases = []
    for name, entry in DATA["models"].items():
        marks = () if name in QUICK else (pytest.mark.slow,)
        for tool, printed in entry["printed"].items():
            if isinstance(printed, dict) and "error" in printed:
                continue  # the peer could not count this model
            cases.append(pytest.param(name, tool, printed, id=f"{name}-{tool}", marks=marks))
    return cases


@pytest.mark.parametrize("name, tool, printed", _cases())
def test_convention_reproduces_the_peer(reports: dict[str, flopcalc.Report], name: str, tool: str,
                                        printed: object) -> None:
    result = _report(reports, name).as_convention(DATA["conventions"][tool])
    if isinstance(printed, dict):  # DeepSpeed and calflops print MACs and FLOPs
        (flops,) = result.also
        assert (result.value, flops.value) == (printed["MACs"], printed["FLOPs"])
    else:
        assert float(printed).is_integer() or math.isclose(float(printed), round(float(printed)))
        assert result.value == round(float(printed))
