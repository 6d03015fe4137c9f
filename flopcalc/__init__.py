"""flopcalc: analytical FLOPs/MACs and parameter counts for PyTorch models, checked against measurement."""

from flopcalc.analyze import analyze
from flopcalc.errors import FlopcalcError, ForwardError, InputError, UncountedOpsError, UnknownModelError
from flopcalc.formula import LayerFormula, OpKind, ratio
from flopcalc.inputs import InputSpec, ModelInputs
from flopcalc.registry import REGISTRY, Bound
from flopcalc.report import LayerRow, Report, Status, Totals

__all__ = [
    "REGISTRY", "Bound", "FlopcalcError", "ForwardError", "InputError", "InputSpec", "LayerFormula", "LayerRow",
    "ModelInputs", "OpKind", "Report", "Status", "Totals", "UncountedOpsError", "UnknownModelError", "analyze",
    "ratio",
]
