"""Resolving MODEL names: torchvision without weights, files and modules, errors with the closest names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flopcalc import UnknownModelError
from flopcalc.models import load_model


@pytest.fixture
def no_downloads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("flopcalc tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.mark.parametrize("name", ["alexnet", "AlexNet", "fasterrcnn_mobilenet_v3_large_320_fpn"],
                         ids=["alexnet", "case-insensitive", "detection-backbone"])
def test_torchvision_without_weights(no_downloads, name):
    model = load_model(name)
    assert isinstance(model, nn.Module)
    assert next(model.parameters()).device.type == "meta"  # built without allocating weights


def test_cpu_build_has_real_weights(no_downloads):
    assert next(load_model("alexnet", device="cpu").parameters()).device.type == "cpu"


def test_module_factory_and_class():
    assert isinstance(load_model("torch.nn:Flatten"), nn.Flatten)
    assert type(load_model("torchvision.models:resnet18")).__name__ == "ResNet"


def test_file_factory_can_import_its_siblings(tmp_path):
    (tmp_path / "blocks.py").write_text("from torch import nn\nWIDTH = 6\n")
    (tmp_path / "net.py").write_text(
        "from torch import nn\nimport blocks\n\n\ndef make():\n    return nn.Linear(blocks.WIDTH, 2)\n"
    )
    model = load_model(f"{tmp_path / 'net.py'}:make")
    assert model.in_features == 6


def test_factory_needing_real_tensors_falls_back_to_cpu(tmp_path):
    (tmp_path / "net.py").write_text(
        "import torch\nfrom torch import nn\n\n\ndef make():\n"
        "    width = int(torch.tensor(3).item())  # reads a value: impossible on the meta device\n"
        "    return nn.Linear(width, 2)\n"
    )
    assert next(load_model(f"{tmp_path / 'net.py'}:make").parameters()).device.type == "cpu"


@pytest.mark.parametrize(("spec", "message"), [
    ("resnet", "did you mean resnet"),
    ("net.py", "name the factory in net.py"),
    ("torch.nn:", "names no factory"),
], ids=["close-matches", "file-without-factory", "empty-factory"])
def test_errors(spec, message):
    with pytest.raises(UnknownModelError, match=message):
        load_model(spec)
