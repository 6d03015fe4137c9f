"""Norm layers: hand-derived counts, formula == measured on cpu and meta, training mode and every batch-norm op."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from support import buffer_count, formula_and_measured, param_count
from torch import nn

from flopcalc.measure import measure
from flopcalc.registry import REGISTRY

aten = torch.ops.aten


def _nonzero(ops: Mapping[str, int]) -> dict[str, int]:
    return {str(kind): n for kind, n in ops.items() if n}


def assert_agrees(module: nn.Module, shape: tuple[int, ...]) -> Any:
    """Formula == measured on cpu and meta (eval mode); params, buffers and output shape match torch."""
    module.eval()
    for device in ("cpu", "meta"):
        x = torch.randn(shape, device=device)
        evaluation, measured, out = formula_and_measured(copy.deepcopy(module).to(device), x)
        assert evaluation.macs == measured.macs == 0, device
        assert _nonzero(evaluation.ops) == _nonzero(measured.ops), device
        assert evaluation.output_shape == tuple(out.shape), device
    assert evaluation.params == param_count(module)
    assert evaluation.buffers == buffer_count(module)
    return evaluation


def stats_ops(groups: int, size: int, scale: int, shift: int) -> dict[str, int]:
    """Hand count for statistics computed at run time over ``groups`` groups of ``size`` elements.

    mean: size − 1 adds, 1 div; mean of squared centred values: size muls, size − 1 adds, 1 div; rstd: 1 add,
    1 sqrt, 1 div; per element: centre 1 add, normalise 1 mul, scale 1 mul, shift 1 add.
    """
    e = groups * size
    return {
        "add": groups * (size - 1) * 2 + groups + e + shift * e,
        "mul": e + e + scale * e,
        "div": 3 * groups,
        "sqrt": groups,
    }


def running_ops(channels: int, elements: int, affine: int) -> dict[str, int]:
    """Hand count with running statistics: rstd per channel (1 add, 1 sqrt, 1 div), then per element as above."""
    return {"add": channels + elements + affine * elements, "mul": elements + affine * elements, "div": channels,
            "sqrt": channels}


def _drop_zero(ops: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in ops.items() if v}


CASES = [
    # (id, module, input shape, params, buffers, ops)
    ("bn2d-eval", nn.BatchNorm2d(64), (2, 64, 5, 5), 2 * 64, 2 * 64 + 1, running_ops(64, 2 * 64 * 5 * 5, 1)),
    ("bn1d-2d-input", nn.BatchNorm1d(3), (4, 3), 2 * 3, 2 * 3 + 1, running_ops(3, 4 * 3, 1)),
    ("bn1d-3d-input", nn.BatchNorm1d(3), (2, 3, 7), 2 * 3, 2 * 3 + 1, running_ops(3, 2 * 3 * 7, 1)),
    ("bn3d-no-affine", nn.BatchNorm3d(3, affine=False), (2, 3, 2, 4, 5), 0, 2 * 3 + 1,
     running_ops(3, 2 * 3 * 2 * 4 * 5, 0)),
    ("bn2d-untracked", nn.BatchNorm2d(3, track_running_stats=False), (2, 3, 4, 5), 2 * 3, 0,
     stats_ops(3, 2 * 4 * 5, 1, 1)),
    ("layer-norm-2d", nn.LayerNorm([4, 5]), (2, 3, 4, 5), 2 * 4 * 5, 0, stats_ops(2 * 3, 4 * 5, 1, 1)),
    ("layer-norm-no-bias", nn.LayerNorm(5, bias=False), (2, 3, 4, 5), 5, 0, stats_ops(2 * 3 * 4, 5, 1, 0)),
    ("layer-norm-plain-1row", nn.LayerNorm(5, elementwise_affine=False), (5,), 0, 0, stats_ops(1, 5, 0, 0)),
    ("group-norm", nn.GroupNorm(2, 4), (2, 4, 3, 3), 2 * 4, 0, stats_ops(2 * 2, 4 // 2 * 3 * 3, 1, 1)),
    ("group-norm-1d", nn.GroupNorm(2, 4, affine=False), (2, 4, 3), 0, 0, stats_ops(2 * 2, 4 // 2 * 3, 0, 0)),
    ("group-norm-4d", nn.GroupNorm(2, 4), (2, 4, 2, 2, 2, 2), 2 * 4, 0, stats_ops(2 * 2, 2 * 16, 1, 1)),
    ("instance-norm", nn.InstanceNorm2d(3), (2, 3, 4, 5), 0, 0, stats_ops(2 * 3, 4 * 5, 0, 0)),
    ("instance-norm-unbatched", nn.InstanceNorm1d(3, affine=True), (3, 5), 2 * 3, 0, stats_ops(3, 5, 1, 1)),
    ("instance-norm-running", nn.InstanceNorm2d(3, affine=True, track_running_stats=True), (2, 3, 4, 5), 2 * 3,
     2 * 3 + 1, running_ops(2 * 3, 2 * 3 * 4 * 5, 1)),
    # per row of D: squares D mul, mean D − 1 add + 1 div, ε 1 add, rsqrt 1 sqrt + 1 div, normalise D mul, scale
    ("rms-norm", nn.RMSNorm(5), (2, 3, 5), 5, 0,
     {"mul": 6 * 5 * 3, "add": 6 * (5 - 1) + 6, "div": 2 * 6, "sqrt": 6}),
    ("rms-norm-plain-2d", nn.RMSNorm([3, 5], eps=1e-5, elementwise_affine=False), (2, 3, 5), 0, 0,
     {"mul": 2 * 15 * 2, "add": 2 * (15 - 1) + 2, "div": 2 * 2, "sqrt": 2}),
    ("sync-bn-eval", nn.SyncBatchNorm(3), (2, 3, 4), 2 * 3, 2 * 3 + 1, running_ops(3, 2 * 3 * 4, 1)),
]


@pytest.mark.parametrize("module, shape, params, buffers, ops", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_counts(module: nn.Module, shape: tuple[int, ...], params: int, buffers: int, ops: dict[str, int]) -> None:
    evaluation = assert_agrees(module, shape)
    assert (evaluation.params, evaluation.buffers) == (params, buffers)
    assert _nonzero(evaluation.ops) == _drop_zero(ops)
    assert evaluation.output_shape == shape


@pytest.mark.parametrize("channels", [1, 3, 64], ids=["C1", "C3", "C64"])
def test_batch_norm_eval_params_and_buffers(channels: int) -> None:
    module = nn.BatchNorm2d(channels).eval()
    evaluation = REGISTRY.binder_for(module)(module, (torch.empty(1, channels, 2, 2, device="meta"),), {}).evaluate()
    assert (evaluation.params, evaluation.buffers) == (2 * channels, 2 * channels + 1)


TRAINING = [
    # running mean and var blended a·old + b·new (2 mul + 1 add each, per channel); BN: num_batches_tracked += 1
    ("bn-tracked", nn.BatchNorm2d(3), (2, 3, 4, 5),
     {"add": stats_ops(3, 40, 1, 1)["add"] + 2 * 3 + 1, "mul": stats_ops(3, 40, 1, 1)["mul"] + 4 * 3}),
    ("bn-untracked", nn.BatchNorm2d(3, track_running_stats=False), (2, 3, 4, 5), {}),
    # the per-instance stats (N·C) are blended, then averaged over the batch: N − 1 adds, 1 div per channel, twice
    ("in-tracked", nn.InstanceNorm1d(3, affine=True, track_running_stats=True), (2, 3, 5),
     {"add": stats_ops(6, 5, 1, 1)["add"] + 2 * 6 + 2 * 3 * (2 - 1), "mul": stats_ops(6, 5, 1, 1)["mul"] + 4 * 6,
      "div": stats_ops(6, 5, 1, 1)["div"] + 2 * 3}),
    ("in-untracked", nn.InstanceNorm2d(3), (2, 3, 4, 5), {}),
]


@pytest.mark.parametrize("module, shape, override", [c[1:] for c in TRAINING], ids=[c[0] for c in TRAINING])
def test_training_mode(module: nn.Module, shape: tuple[int, ...], override: dict[str, int]) -> None:
    """In training mode statistics come from the batch; tracked layers also update their running statistics."""
    module.train()
    channels = shape[1]
    groups = channels if isinstance(module, nn.BatchNorm2d) else shape[0] * channels
    affine = int(module.affine)
    expected = {**stats_ops(groups, torch.Size(shape).numel() // groups, affine, affine), **override}
    for device in ("cpu", "meta"):
        layer = copy.deepcopy(module).to(device)
        x = torch.randn(shape, device=device)
        evaluation = REGISTRY.binder_for(layer)(layer, (x,), {}).evaluate()
        tally = measure(lambda: layer(x))
        assert not tally.uncounted
        assert _nonzero(evaluation.ops) == _nonzero(tally.count.ops) == _drop_zero(expected), device


def _bn_args(device: str) -> tuple[torch.Tensor, ...]:
    x = torch.randn(2, 3, 4, device=device)
    return x, torch.ones(3, device=device), torch.zeros(3, device=device), torch.zeros(3, device=device), \
        torch.ones(3, device=device)


EVAL_OPS = running_ops(3, 24, 1)
UPDATE_OPS = {**stats_ops(3, 8, 1, 1), "add": stats_ops(3, 8, 1, 1)["add"] + 2 * 3,
              "mul": stats_ops(3, 8, 1, 1)["mul"] + 4 * 3}
BN_OPS = [
    # batch-norm entry points that export, compile and other backends reach instead of native_batch_norm
    ("native-eval", lambda x, w, b, m, v: aten.native_batch_norm(x, w, b, m, v, False, 0.1, 1e-5), EVAL_OPS),
    ("legit-no-training", lambda x, w, b, m, v: aten._native_batch_norm_legit_no_training(x, w, b, m, v, 0.1, 1e-5),
     EVAL_OPS),
    ("no-update", lambda x, w, b, m, v: aten._batch_norm_no_update(x, w, b, m, v, 0.1, 1e-5), EVAL_OPS),
    ("native-train", lambda x, w, b, m, v: aten.native_batch_norm(x, w, b, m, v, True, 0.1, 1e-5), UPDATE_OPS),
    ("legit-train", lambda x, w, b, m, v: aten._native_batch_norm_legit(x, w, b, m, v, True, 0.1, 1e-5), UPDATE_OPS),
    ("legit-functional",
     lambda x, w, b, m, v: aten._native_batch_norm_legit_functional(x, w, b, m, v, True, 0.1, 1e-5), UPDATE_OPS),
    ("with-update", lambda x, w, b, m, v: aten._batch_norm_with_update(x, w, b, m, v, 0.1, 1e-5), UPDATE_OPS),
    ("legit-no-stats", lambda x, w, b, m, v: aten._native_batch_norm_legit(x, w, b, True, 0.1, 1e-5),
     stats_ops(3, 8, 1, 1)),
]


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("call, ops", [c[1:] for c in BN_OPS], ids=[c[0] for c in BN_OPS])
def test_batch_norm_ops(call: Callable[..., Any], ops: dict[str, int], device: str) -> None:
    args = _bn_args(device)
    tally = measure(lambda: call(*args))
    assert not tally.uncounted
    assert _nonzero(tally.count.ops) == ops


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_fused_rms_norm_counts_like_its_decomposition(device: str) -> None:
    x, weight = torch.randn(2, 3, 5, device=device), torch.randn(5, device=device)
    fused = measure(lambda: aten._fused_rms_norm(x, [5], weight, 1e-5)).count
    decomposed = measure(lambda: nn.functional.rms_norm(x, [5], weight, 1e-5)).count
    assert _nonzero(fused.ops) == _nonzero(decomposed.ops) == {"mul": 6 * 5 * 3, "add": 6 * 5, "div": 2 * 6,
                                                               "sqrt": 6}


SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)
sizes = st.lists(st.integers(1, 4), min_size=0, max_size=3)


@SETTINGS
@given(channels=st.integers(1, 6), batch=st.integers(1, 3), spatial=st.integers(0, 3), data=st.data(),
       affine=st.booleans(), tracked=st.booleans())
def test_batch_norm_matches_measurement(channels: int, batch: int, spatial: int, data: st.DataObject, affine: bool,
                                        tracked: bool) -> None:
    kind = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[spatial]
    dims = data.draw(st.lists(st.integers(1, 4), min_size=spatial, max_size=spatial))
    assume(tracked or batch * torch.Size(dims).numel() > 1)  # torch refuses batch statistics of one value
    assert_agrees(kind(channels, affine=affine, track_running_stats=tracked), (batch, channels, *dims))


@SETTINGS
@given(channels=st.integers(1, 5), batch=st.integers(1, 3), spatial=st.integers(1, 3), data=st.data(),
       affine=st.booleans(), tracked=st.booleans(), batched=st.booleans())
def test_instance_norm_matches_measurement(channels: int, batch: int, spatial: int, data: st.DataObject,
                                           affine: bool, tracked: bool, batched: bool) -> None:
    kind = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[spatial]
    dims = data.draw(st.lists(st.integers(2, 4), min_size=spatial, max_size=spatial))
    shape = (batch, channels, *dims) if batched else (channels, *dims)
    assert_agrees(kind(channels, affine=affine, track_running_stats=tracked), shape)


@SETTINGS
@given(groups=st.integers(1, 3), per_group=st.integers(1, 3), batch=st.integers(1, 3), dims=sizes,
       affine=st.booleans())
def test_group_norm_matches_measurement(groups: int, per_group: int, batch: int, dims: list[int],
                                        affine: bool) -> None:
    channels = groups * per_group
    assume(batch * per_group * torch.Size(dims).numel() > 1)  # torch refuses groups that hold one value overall
    assert_agrees(nn.GroupNorm(groups, channels, affine=affine), (batch, channels, *dims))


@SETTINGS
@given(leading=sizes, normalised=st.lists(st.integers(1, 4), min_size=1, max_size=2), affine=st.booleans(),
       bias=st.booleans(), rms=st.booleans())
def test_layer_and_rms_norm_match_measurement(leading: list[int], normalised: list[int], affine: bool, bias: bool,
                                               rms: bool) -> None:
    if rms:
        module: nn.Module = nn.RMSNorm(normalised, elementwise_affine=affine)
    else:
        module = nn.LayerNorm(normalised, elementwise_affine=affine, bias=bias)
    assert_agrees(module, (*leading, *normalised))
