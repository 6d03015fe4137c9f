"""Operator-level measurement; importing this package registers every op rule."""

from flopcalc.measure import (
    ops_attention,
    ops_data,
    ops_elementwise,
    ops_embedding,
    ops_indexed,
    ops_linalg,
    ops_norm,
    ops_pool,
    ops_quantized,
    ops_recurrent,
)
from flopcalc.measure.core import Count, OpCounter, Tally, measure

__all__ = [
    "Count", "OpCounter", "Tally", "measure", "ops_attention", "ops_data", "ops_elementwise", "ops_embedding",
    "ops_indexed", "ops_linalg", "ops_norm", "ops_pool", "ops_quantized", "ops_recurrent",
]
