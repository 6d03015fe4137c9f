"""flopcalc: analytical FLOPs/MACs and parameter counts for PyTorch models, checked against measurement."""

from flopcalc import layers as _layers  # noqa: F401  (registers the formulas)
from flopcalc.formula import LayerFormula, OpKind, ratio
from flopcalc.registry import REGISTRY

__all__ = ["REGISTRY", "LayerFormula", "OpKind", "ratio"]
