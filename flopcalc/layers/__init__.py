"""Layer families, one module each; importing this package registers every formula in ``REGISTRY``."""

from flopcalc.layers import (
    activation, attention, conv, embedding, linear, moe, norm, pooling, quantized, recurrent, se, shuffle,
)

__all__ = [
    "activation", "attention", "conv", "embedding", "linear", "moe", "norm", "pooling", "quantized", "recurrent",
    "se", "shuffle",
]
