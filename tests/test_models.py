"""Resolving MODEL names: torchvision without weights, files and modules, errors with the closest names."""

from __future__ import annotations

import sys
import types

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


def _versioned(root, version: str, width: int):
    """``root/version/model.py`` importing its sibling ``layers.py``, whose block is Linear(width, width)."""
    folder = root / version
    folder.mkdir()
    (folder / "layers.py").write_text(f"from torch import nn\n\n\ndef block():\n    return nn.Linear({width}, {width})\n")
    (folder / "model.py").write_text("from layers import block\n\n\ndef net():\n    return block()\n")
    return f"{folder / 'model.py'}:net"


def test_each_file_sees_its_own_siblings(tmp_path):
    v1, v2 = _versioned(tmp_path, "v1", 64), _versioned(tmp_path, "v2", 128)
    params = [sum(p.numel() for p in load_model(spec).parameters()) for spec in (v1, v2, v1)]
    assert params == [64 * 64 + 64, 128 * 128 + 128, 64 * 64 + 64]  # 4,160 and 16,512: v2 gets its own layers


def test_the_current_directory_cannot_shadow_an_installed_package(tmp_path, monkeypatch):
    (tmp_path / "shadowed_for_test.py").write_text("raise RuntimeError('the copy in the current directory')\n")
    site = tmp_path / "site"
    site.mkdir()
    (site / "shadowed_for_test.py").write_text("from torch import nn\n\n\ndef net():\n    return nn.Linear(2, 2)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(site))
    assert isinstance(load_model("shadowed_for_test:net"), nn.Linear)


def test_a_module_from_the_current_directory_still_loads(tmp_path, monkeypatch):
    (tmp_path / "local_models_for_test.py").write_text("from torch import nn\n\n\ndef net():\n    return nn.ReLU()\n")
    monkeypatch.chdir(tmp_path)
    assert isinstance(load_model("local_models_for_test:net"), nn.ReLU)


def test_a_failing_factory_is_called_once(tmp_path):
    calls = tmp_path / "calls.txt"
    (tmp_path / "net.py").write_text(
        f"from pathlib import Path\n\n\ndef make():\n    with Path({str(calls)!r}).open('a') as f:\n"
        "        f.write('call\\n')\n    raise ValueError('no such width')\n"
    )
    with pytest.raises(UnknownModelError, match="ValueError: no such width"):
        load_model(f"{tmp_path / 'net.py'}:make")
    assert calls.read_text().splitlines() == ["call"]


def test_constructor_arguments():
    model = load_model("torchvision.models:resnet18", arguments={"num_classes": 11})
    assert model.fc.out_features == 11
    assert load_model("resnet18", arguments={"num_classes": 7}).fc.out_features == 7


def test_a_module_instance_takes_no_arguments(monkeypatch):
    module = types.ModuleType("instance_module_for_test")
    module.net = nn.Linear(2, 2)
    monkeypatch.setitem(sys.modules, "instance_module_for_test", module)
    assert load_model("instance_module_for_test:net") is module.net
    with pytest.raises(UnknownModelError, match="takes no --arg"):
        load_model("instance_module_for_test:net", arguments={"width": 3})
