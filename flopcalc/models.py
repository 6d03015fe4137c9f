"""Turn the CLI's MODEL argument into an ``nn.Module``. No weights are ever downloaded.

Accepted forms:

- a torchvision model name (``alexnet``, ``resnet50``, ``vit_b_16``), built with ``weights=None`` (and
  ``weights_backbone=None`` for detection models, whose backbones would otherwise be downloaded);
- ``timm:NAME`` when timm is installed, built with ``pretrained=False``;
- ``package.module:factory`` or ``path/to/file.py:factory``, where ``factory`` is a callable returning an
  ``nn.Module``, an ``nn.Module`` class (called without arguments) or a module instance.

For ``device="meta"`` the model is built under ``torch.device("meta")``, so even a billion-parameter model
allocates nothing; a factory that cannot be built there (one that reads tensor values while constructing) is
built on the CPU instead, which analysis on the meta device handles as well.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import inspect
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from flopcalc.errors import UnknownModelError

LISTED = 12
"""How many candidate factories an error message names."""
FORMS = "a torchvision model name (alexnet), timm:NAME, package.module:factory or path/to/file.py:factory"


def _closest(name: str, candidates: Iterable[str]) -> str:
    matches = difflib.get_close_matches(name, list(candidates), n=5, cutoff=0.5)
    return f"; did you mean {', '.join(matches)}?" if matches else ""


def _torchvision_factory(name: str) -> Callable[[], nn.Module]:
    try:
        import torchvision.models
    except ImportError:
        raise UnknownModelError(
            f"cannot build {name!r}: torchvision is not installed (pip install 'flopcalc[vision]'); "
            f"or pass {FORMS}"
        ) from None
    names = torchvision.models.list_models()
    if name.lower() not in names:
        raise UnknownModelError(f"unknown model {name!r}{_closest(name.lower(), names)} (MODEL is {FORMS})")
    builder = torchvision.models.get_model_builder(name.lower())
    no_download = {"weights": None}
    if "weights_backbone" in inspect.signature(builder).parameters:
        no_download["weights_backbone"] = None

    def build() -> nn.Module:
        # Random weights are what flopcalc wants: silence torchvision's notice that their default init changes.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The default weight initialization", FutureWarning)
            return builder(**no_download)

    return build


def _timm_factory(name: str) -> Callable[[], nn.Module]:
    try:
        import timm
    except ImportError:
        raise UnknownModelError(f"timm:{name} needs timm, which is not installed (pip install timm)") from None
    names = timm.list_models()
    if name not in names:
        raise UnknownModelError(f"unknown timm model {name!r}{_closest(name, names)}")
    return lambda: timm.create_model(name, pretrained=False)


@contextlib.contextmanager
def _on_path(folder: Path) -> Iterator[None]:
    """Let a user's file import its sibling modules, as ``python file.py`` would."""
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))


def _call_beside(path: Path, factory: Callable[[], Any]) -> Any:
    """Call a factory from a user's file with the file's folder importable (it may import lazily)."""
    with _on_path(path.parent.resolve()):
        return factory()


def _load_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise UnknownModelError(f"no such file: {path} (MODEL is {FORMS})")
    module_name = f"_flopcalc_user_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UnknownModelError(f"cannot load {path} as Python; pass a .py file as path/to/file.py:factory")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # so dataclasses and pickling inside the file can find it
    try:
        with _on_path(path.parent.resolve()):
            spec.loader.exec_module(module)
    except Exception as exc:
        raise UnknownModelError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def _import(module_name: str) -> ModuleType:
    """Import ``module_name`` as ``python -m`` would: the current directory first."""
    try:
        with _on_path(Path.cwd()):
            return importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownModelError(
            f"cannot import {module_name!r} ({exc}); is it installed or on PYTHONPATH? (MODEL is {FORMS})"
        ) from exc


def _candidates(module: ModuleType) -> list[str]:
    """Public names that could be factories: nn.Module classes and functions defined in ``module`` or its
    submodules (not the ones it merely imports)."""
    found = []
    for attr, value in vars(module).items():
        if attr.startswith("_"):
            continue
        is_factory = (isinstance(value, type) and issubclass(value, nn.Module)) or inspect.isfunction(value)
        if is_factory and value.__module__.startswith(module.__name__):
            found.append(attr)
    return sorted(found)


def _factory_from(module: ModuleType, where: str, attr: str) -> Callable[[], Any]:
    if not hasattr(module, attr):
        candidates = _candidates(module)
        shown = ", ".join(candidates[:LISTED]) + (", ..." if len(candidates) > LISTED else "")
        listed = f"; it defines {shown}" if candidates else ""
        raise UnknownModelError(f"{where} has no factory {attr!r}{_closest(attr, candidates)}{listed}")
    factory = getattr(module, attr)
    if isinstance(factory, nn.Module):
        return lambda: factory
    if not callable(factory):
        raise UnknownModelError(f"{where}:{attr} is a {type(factory).__name__}, not a callable returning an nn.Module")
    return factory


def _is_file_reference(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


def _factory(spec: str) -> Callable[[], Any]:
    if spec.startswith("timm:"):
        return _timm_factory(spec.removeprefix("timm:"))
    if ":" not in spec:
        if _is_file_reference(spec):
            raise UnknownModelError(f"name the factory in {spec}: {spec}:FACTORY (a function or nn.Module class)")
        return _torchvision_factory(spec)
    target, attr = spec.rsplit(":", 1)
    if not attr:
        raise UnknownModelError(f"{spec!r} names no factory after ':'; write {target}:FACTORY")
    if _is_file_reference(target):
        path = Path(target)
        factory = _factory_from(_load_file(path), target, attr)
        return lambda: _call_beside(path, factory)
    return _factory_from(_import(target), target, attr)


def _build(spec: str, factory: Callable[[], Any]) -> nn.Module:
    try:
        model = factory()
    except Exception as exc:
        raise UnknownModelError(
            f"building {spec} failed: {type(exc).__name__}: {exc} (the factory is called without arguments)"
        ) from exc
    if not isinstance(model, nn.Module):
        raise UnknownModelError(f"{spec} returned a {type(model).__name__}, not an nn.Module")
    return model


def load_model(spec: str, device: str = "meta") -> nn.Module:
    """Build the model that ``spec`` names, without weights (see the module docstring for the forms).

    Args:
        spec: the CLI's MODEL argument.
        device: ``"meta"`` builds on the meta device where the factory allows it; ``"cpu"`` builds real weights.

    Raises:
        UnknownModelError: the name is unknown (with the closest matches), the file does not exist or has no
            such factory, or the factory raised or returned something other than an ``nn.Module``.
    """
    factory = _factory(spec)
    if device == "meta":
        try:
            with torch.device("meta"):
                return _build(spec, factory)
        except UnknownModelError:
            pass  # the factory needs real tensors while constructing: build it on the CPU below
    return _build(spec, factory)
