"""flopcalc: analytical FLOPs/MACs and parameter counts for PyTorch models, checked against measurement.

The public names are imported on first use (PEP 562), so ``import flopcalc`` and the commands that only print
formulas (``flopcalc formula``, ``flopcalc ratio``, ``--help``) never pay for importing torch.
"""

from __future__ import annotations

import importlib
import sys
import types

from flopcalc.errors import FlopcalcError, ForwardError, InputError, UncountedOpsError, UnknownModelError

__version__ = "0.1.0"
"""The package's version, read by ``pyproject.toml`` (so it is written once) and printed by ``--version``."""

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (3 ms of the commands that start at once)
if TYPE_CHECKING:
    from typing import Any

    from flopcalc.analyze import analyze
    from flopcalc.formula import LayerFormula, OpKind, ratio
    from flopcalc.inputs import InputSpec, ModelInputs
    from flopcalc.registry import REGISTRY, Bound
    from flopcalc.report import LayerRow, Report, Status, Totals

_LAZY = {
    "analyze": "flopcalc.analyze",
    "LayerFormula": "flopcalc.formula", "OpKind": "flopcalc.formula", "ratio": "flopcalc.formula",
    "InputSpec": "flopcalc.inputs", "ModelInputs": "flopcalc.inputs",
    "REGISTRY": "flopcalc.registry", "Bound": "flopcalc.registry",
    "LayerRow": "flopcalc.report", "Report": "flopcalc.report", "Status": "flopcalc.report",
    "Totals": "flopcalc.report",
}

__all__ = [
    "REGISTRY", "Bound", "FlopcalcError", "ForwardError", "InputError", "InputSpec", "LayerFormula", "LayerRow",
    "ModelInputs", "OpKind", "Report", "Status", "Totals", "UncountedOpsError", "UnknownModelError", "analyze",
    "ratio",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'flopcalc' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """``flopcalc.analyze`` stays the function when the submodule of the same name is imported later (the import
    system would set the package attribute to the submodule, as it does for every first import)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "analyze" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
