"""Turn the CLI's MODEL argument into an ``nn.Module``. No weights are ever downloaded.

Accepted forms:

- a torchvision model name (``alexnet``, ``resnet50``, ``vit_b_16``), built with ``weights=None`` (and
  ``weights_backbone=None`` for detection models, whose backbones would otherwise be downloaded);
- ``timm:NAME`` when timm is installed, built with ``pretrained=False``;
- ``package.module:factory`` or ``path/to/file.py:factory``, where ``factory`` is a callable returning an
  ``nn.Module``, an ``nn.Module`` class (called without arguments) or a module instance.

Constructor arguments (``--arg num_classes=11``) are passed to the builder, ``timm.create_model`` or the factory
as keyword arguments.

For ``device="meta"`` the model is built under ``torch.device("meta")``, so even a billion-parameter model
allocates nothing. A factory that fails there *because* of the meta device (it reads tensor values while
constructing) is called a second time, on the CPU, which analysis on the meta device handles as well; any other
failure is reported after the first call.

Model files and modules are executed as code, exactly as ``python file.py`` or ``import module`` would: load only
code you trust. A file sees its own folder first on ``sys.path`` while it is imported and its factory runs, and
the sibling modules it imported are forgotten afterwards, so two files that both ``import layers`` (``v1/`` and
``v2/``) each get their own. ``package.module:factory`` is imported with the current directory *last* on
``sys.path``, so a ``torchvision.py`` lying in the current directory cannot shadow the installed package.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
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


Factory = Callable[..., Any]
"""Called with the user's constructor arguments as keyword arguments."""


def _torchvision_factory(name: str) -> Factory:
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

    def build(**arguments: Any) -> nn.Module:
        # Random weights are what flopcalc wants: silence torchvision's notice that their default init changes.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The default weight initialization", FutureWarning)
            return builder(**arguments, **no_download)

    return build


def _timm_factory(name: str) -> Factory:
    try:
        import timm
    except ImportError:
        raise UnknownModelError(f"timm:{name} needs timm, which is not installed (pip install timm)") from None
    names = timm.list_models()
    if name not in names:
        raise UnknownModelError(f"unknown timm model {name!r}{_closest(name, names)}")
    return lambda **arguments: timm.create_model(name, pretrained=False, **arguments)


def _describe(exc: BaseException) -> str:
    """``SystemExit: 3`` or ``ValueError: bad width``: one line, whatever the exception carries."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _inside(module: ModuleType, folder: Path) -> bool:
    location = getattr(module, "__file__", None)
    return location is not None and Path(location).resolve().is_relative_to(folder)


@contextlib.contextmanager
def _beside(folder: Path) -> Iterator[None]:
    """Run a user's file with its folder first on ``sys.path`` (its sibling modules importable, as ``python
    file.py`` would), then forget the siblings it imported so that the next file sees its own."""
    before = set(sys.modules)
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))
        for name in set(sys.modules) - before:
            module = sys.modules.get(name)
            if module is not None and _inside(module, folder) and not name.startswith(_USER_PREFIX):
                del sys.modules[name]


_USER_PREFIX = "_flopcalc_user_"


def _load_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise UnknownModelError(f"no such file: {path} (MODEL is {FORMS})")
    resolved = path.resolve()
    # One module per file: two files with the same name in different folders are different modules.
    module_name = f"{_USER_PREFIX}{path.stem}_{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UnknownModelError(f"cannot load {path} as Python; pass a .py file as path/to/file.py:factory")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # so dataclasses and pickling inside the file can find it
    try:
        with _beside(resolved.parent):
            spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[module_name]
        raise UnknownModelError(f"importing {path} failed: {_describe(exc)}") from exc
    return module


def _import(module_name: str) -> ModuleType:
    """Import ``module_name`` from the installed packages, PYTHONPATH, or else the current directory."""
    cwd = str(Path.cwd())
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.append(cwd)
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownModelError(
            f"cannot import {module_name!r} ({exc}); is it installed or on PYTHONPATH? (MODEL is {FORMS})"
        ) from exc
    except (Exception, SystemExit) as exc:
        raise UnknownModelError(f"importing {module_name} failed: {_describe(exc)}") from exc
    finally:
        if added:
            sys.path.remove(cwd)


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


def _factory_from(module: ModuleType, where: str, attr: str) -> Factory:
    if not hasattr(module, attr):
        candidates = _candidates(module)
        shown = ", ".join(candidates[:LISTED]) + (", ..." if len(candidates) > LISTED else "")
        listed = f"; it defines {shown}" if candidates else ""
        raise UnknownModelError(f"{where} has no factory {attr!r}{_closest(attr, candidates)}{listed}")
    factory = getattr(module, attr)
    if isinstance(factory, nn.Module):
        return lambda **arguments: _instance(factory, where, attr, arguments)
    if not callable(factory):
        raise UnknownModelError(f"{where}:{attr} is a {type(factory).__name__}, not a callable returning an nn.Module")
    return factory


def _is_file_reference(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


def _instance(model: nn.Module, where: str, attr: str, arguments: Mapping[str, Any]) -> nn.Module:
    if arguments:
        raise UnknownModelError(f"{where}:{attr} is a module instance, not a factory: it takes no --arg")
    return model


def _factory(spec: str) -> Factory:
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
        folder = path.resolve().parent

        def call_beside(**arguments: Any) -> Any:  # the factory may import its siblings lazily
            with _beside(folder):
                return factory(**arguments)

        return call_beside
    return _factory_from(_import(target), target, attr)


def _meta_specific(exc: BaseException) -> bool:
    """Whether constructing failed because of the meta device (reading a value of a tensor that has none)."""
    text = f"{type(exc).__name__} {exc}".lower()
    return "meta" in text or "data-dependent" in text or "datadependent" in text


class _BuildFailed(Exception):
    def __init__(self, cause: BaseException):
        super().__init__(str(cause))
        self.cause = cause


def _call(factory: Factory, arguments: Mapping[str, Any]) -> Any:
    try:
        return factory(**arguments)
    except UnknownModelError:
        raise
    except (Exception, SystemExit) as exc:
        raise _BuildFailed(exc) from exc


def _built(spec: str, model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise UnknownModelError(f"{spec} returned a {type(model).__name__}, not an nn.Module")
    return model


def load_model(spec: str, device: str = "meta", arguments: Mapping[str, Any] | None = None) -> nn.Module:
    """Build the model that ``spec`` names, without weights (see the module docstring for the forms).

    Args:
        spec: the CLI's MODEL argument.
        device: ``"meta"`` builds on the meta device where the factory allows it; ``"cpu"`` builds real weights.
        arguments: keyword arguments for the constructor (``{"num_classes": 11}``).

    Raises:
        UnknownModelError: the name is unknown (with the closest matches), the file does not exist or has no
            such factory, importing it failed, or the factory raised (or exited) or returned something other
            than an ``nn.Module``.
    """
    factory = _factory(spec)
    arguments = dict(arguments or {})
    try:
        if device == "meta":
            try:
                with torch.device("meta"):
                    return _built(spec, _call(factory, arguments))
            except _BuildFailed as failed:
                if not _meta_specific(failed.cause):
                    raise
        return _built(spec, _call(factory, arguments))  # on the CPU: real weights
    except _BuildFailed as failed:
        given = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
        if given:
            called = f" (called with {given})"
        elif isinstance(failed.cause, TypeError):  # most likely a required constructor argument
            called = " (called without arguments; pass some with --arg NAME=VALUE)"
        else:
            called = ""
        raise UnknownModelError(f"building {spec} failed: {_describe(failed.cause)}{called}") from failed.cause
