"""nn.Embedding and nn.EmbeddingBag: hand-derived counts, and formula == measured on cpu and meta."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from support import Inputs, assert_agrees
from torch import nn

from flopcalc.layers.embedding import EMBEDDING
from flopcalc.measure.core import rule_for



def indices(rows: int, *shape: int) -> Inputs:
    return lambda device: (torch.randint(0, rows, shape, device=device),)


def bags(rows: int, lookups: int, offsets: list[int], weights: bool = False) -> Inputs:
    """1-d indices with bag offsets, optionally per-sample weights."""

    def make(device: str) -> tuple[Any, ...]:
        index = torch.randint(0, rows, (lookups,), device=device)
        starts = torch.tensor(offsets, device=device)
        return (index, starts, torch.randn(lookups, device=device)) if weights else (index, starts)

    return make


CASES = [
    # (id, module, inputs, params, ops, output shape)
    ("lookup-2x3", nn.Embedding(10, 4), indices(10, 2, 3), 10 * 4, {}, (2, 3, 4)),
    ("lookup-scalar", nn.Embedding(10, 4, padding_idx=0), indices(10), 10 * 4, {}, (4,)),
    # max_norm: 6 lookups ≤ 10 rows, each: 2-norm (4 mul, 3 add, 1 sqrt), rescale (1 compare, 1 add, 1 div, 4 mul)
    ("max-norm", nn.Embedding(10, 4, max_norm=1.0), indices(10, 2, 3), 10 * 4,
     {"add": 6 * (4 - 1) + 6, "mul": 6 * 4 + 6 * 4, "compare": 6, "div": 6, "sqrt": 6}, (2, 3, 4)),
    # 5 lookups but only 3 rows; 1-norm: |x| (compare) and the general power exp(p·log|x|) per element
    ("max-norm-p1", nn.Embedding(3, 4, max_norm=1.0, norm_type=1.0), indices(3, 5), 3 * 4,
     {"add": 3 * (4 - 1) + 3, "mul": 3 * (4 + 1) + 3 * 4, "compare": 3 * 4 + 3, "div": 3, "exp": 3 * (2 * 4 + 2)},
     (5, 4)),
    # 2 bags of 3: 2 adds per bag and column
    ("bag-sum", nn.EmbeddingBag(10, 4, mode="sum"), indices(10, 2, 3), 10 * 4, {"add": 2 * (3 - 1) * 4}, (2, 4)),
    ("bag-mean", nn.EmbeddingBag(10, 4, mode="mean"), indices(10, 2, 3), 10 * 4,
     {"add": 2 * (3 - 1) * 4, "div": 2 * 4}, (2, 4)),
    ("bag-max", nn.EmbeddingBag(10, 4, mode="max"), indices(10, 2, 3), 10 * 4, {"compare": 2 * (3 - 1) * 4}, (2, 4)),
    # bags of 2, 3 and 2 indices
    ("bag-offsets", nn.EmbeddingBag(10, 4, mode="sum"), bags(10, 7, [0, 2, 5]), 10 * 4,
     {"add": (1 + 2 + 1) * 4}, (3, 4)),
    ("bag-last-offset", nn.EmbeddingBag(10, 4, mode="mean", include_last_offset=True), bags(10, 7, [0, 2, 5, 7]),
     10 * 4, {"add": (1 + 2 + 1) * 4, "div": 3 * 4}, (3, 4)),
    ("bag-weights", nn.EmbeddingBag(10, 4, mode="sum"), bags(10, 6, [0, 3], weights=True), 10 * 4,
     {"add": 2 * (3 - 1) * 4, "mul": 6 * 4}, (2, 4)),
    ("bag-max-norm", nn.EmbeddingBag(10, 4, mode="max", max_norm=2.0), indices(10, 2, 3), 10 * 4,
     {"compare": 2 * (3 - 1) * 4 + 6, "add": 6 * (4 - 1) + 6, "mul": 6 * 4 + 6 * 4, "div": 6, "sqrt": 6}, (2, 4)),
]


@pytest.mark.parametrize("module, inputs, params, ops, out_shape", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_counts(module: nn.Module, inputs: Inputs, params: int, ops: dict[str, int],
                out_shape: tuple[int, ...]) -> None:
    evaluation = assert_agrees(module, inputs)
    assert (evaluation.params, evaluation.macs, dict(evaluation.ops), evaluation.output_shape) == (
        params, 0, ops, out_shape  # a lookup does no MACs
    )


def test_lookup_is_declared_free() -> None:
    assert EMBEDDING.ops == {} and EMBEDDING.macs == 0 and "no arithmetic" in EMBEDDING.description
    assert isinstance(rule_for(torch.ops.aten.embedding.default), str)


SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)


@SETTINGS
@given(rows=st.integers(1, 12), dim=st.integers(1, 6), shape=st.lists(st.integers(1, 4), max_size=3),
       max_norm=st.sampled_from([None, 1.0]), norm_type=st.sampled_from([2.0, 1.0, 3.0]))
def test_embedding_matches_measurement(rows: int, dim: int, shape: list[int], max_norm: float | None,
                                       norm_type: float) -> None:
    module = nn.Embedding(rows, dim, max_norm=max_norm, norm_type=norm_type)
    evaluation = assert_agrees(module, indices(rows, *shape))
    assert evaluation.output_shape == (*shape, dim)


@SETTINGS
@given(rows=st.integers(1, 12), dim=st.integers(1, 6), mode=st.sampled_from(["sum", "mean", "max"]),
       sizes=st.lists(st.integers(1, 4), min_size=1, max_size=4), two_d=st.booleans(), weights=st.booleans(),
       last_offset=st.booleans(), max_norm=st.sampled_from([None, 1.0]))
def test_embedding_bag_matches_measurement(rows: int, dim: int, mode: str, sizes: list[int], two_d: bool,
                                           weights: bool, last_offset: bool, max_norm: float | None) -> None:
    """Non-empty bags: 2-d input (all bags of ``sizes[0]``) or 1-d input with offsets."""
    weights = weights and mode == "sum"
    module = nn.EmbeddingBag(rows, dim, mode=mode, max_norm=max_norm, include_last_offset=last_offset and not two_d)
    if two_d:
        shape = (len(sizes), sizes[0])

        def make(device: str) -> tuple[Any, ...]:
            index = torch.randint(0, rows, shape, device=device)
            return (index, None, torch.randn(shape, device=device)) if weights else (index,)
    else:
        offsets = [sum(sizes[:i]) for i in range(len(sizes) + int(module.include_last_offset))]
        make = bags(rows, sum(sizes), offsets, weights)
    evaluation = assert_agrees(module, make)
    assert evaluation.output_shape == (len(sizes), dim)
