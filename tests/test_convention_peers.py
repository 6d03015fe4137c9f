"""Every convention against the numbers the peers themselves printed (tests/data/peer_counts.json, made by
``python bench/peer_counts.py`` in the peers' environment: the command and versions are in the file)."""

import json
import math
from pathlib import Path

import pytest
import torch
import torchvision

import flopcalc

DATA = json.loads((Path(__file__).parent / "data" / "peer_counts.json").read_text())
QUICK = {"resnet50", "vit_b_16", "convnext_tiny", "alexnet", "resnet18", "mobilenet_v3_small"}
"""Checked in every run; the other reference models only with ``-m slow`` (make test-all)."""


def _model(name: str) -> torch.nn.Module:
    try:
        with torch.device("meta"):
            return torchvision.models.get_model(name).eval()
    except NotImplementedError:  # regnet computes with tensors in its constructor
        model = torchvision.models.get_model(name).eval()
        return model.to("meta")


@pytest.fixture(scope="module")
def reports() -> dict[str, flopcalc.Report]:
    return {}


def _report(reports: dict[str, flopcalc.Report], name: str) -> flopcalc.Report:
    if name not in reports:
        reports[name] = flopcalc.analyze(_model(name), tuple(DATA["models"][name]["input"]))
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
