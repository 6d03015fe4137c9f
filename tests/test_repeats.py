"""The op counter's memo of repeated shape-only ops: every run still reaches the counter and is counted, a
replayed output has exactly the metadata the kernel gives, and only ops whose output the memo can describe
exactly (fresh tensors or the in-place argument, on plain meta tensors or fake tensors without a constant
value, symbolic sizes included) are replayed."""

from __future__ import annotations

import sympy as sp
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from flopcalc.measure import OpCounter
from flopcalc.measure.repeats import RepeatedOps
from flopcalc.symbolic import SymbolicShapes, user_symbol

aten = torch.ops.aten


def meta(*shape: int) -> torch.Tensor:
    return torch.empty(shape, device="meta")


def counted(fn):
    """Every (op name, MACs) the counter reports while ``fn()`` runs, and what ``fn`` returned."""
    seen: list[tuple[str, int]] = []
    with OpCounter(lambda func, count: seen.append((str(func), count.macs if count is not None else -1))):
        result = fn()
    return seen, result


def test_a_repeated_convolution_is_counted_every_time():
    x, weight = meta(2, 3, 8, 8), meta(4, 3, 3, 3)
    seen, outs = counted(lambda: [torch.nn.functional.conv2d(x, weight) for _ in range(3)])
    # 2·4·6·6 outputs, each a 3·3·3 window: 2·4·6·6·27 = 7,776 MACs per call, three calls
    assert seen == [("aten.convolution.default", 7_776)] * 3
    assert [o.shape for o in outs] == [torch.Size([2, 4, 6, 6])] * 3
    assert len({id(o) for o in outs}) == 3  # a fresh tensor each time


def test_replayed_output_has_the_kernels_strides_and_dtype():
    x = meta(2, 3, 8, 8).to(memory_format=torch.channels_last)
    expected = torch.relu(x)  # outside the counter: the kernel itself
    _, (first, second) = counted(lambda: (torch.relu(x), torch.relu(x)))
    for out in (first, second):
        assert (out.shape, out.stride(), out.dtype) == (expected.shape, expected.stride(), expected.dtype)
    half = meta(4, 5).half()
    _, (a, b) = counted(lambda: (half + 1.5, half + 1.5))
    assert a.dtype == b.dtype == torch.float16


def test_in_place_replay_returns_the_argument():
    x = meta(3, 4)
    seen, (first, second) = counted(lambda: (x.relu_(), x.relu_()))
    assert first is x and second is x
    assert [name for name, _ in seen] == ["aten.relu_.default"] * 2


def test_only_exactly_describable_runs_are_keyed():
    repeats = RepeatedOps()
    x = meta(2, 3)
    assert repeats.key(aten.add.Tensor, (x, x), {}) is not None
    assert repeats.key(aten.relu_.default, (x,), {}) is not None
    assert repeats.key(aten.view.default, (x, [6]), {}) is None  # returns an alias
    assert repeats.key(aten.squeeze_.dim, (x, 0), {}) is None  # changes its argument's metadata
    assert repeats.key(aten.nonzero.default, (x,), {}) is None  # output shape depends on data
    assert repeats.key(aten.add.Tensor, (meta(2, 3).to(torch.complex64),) * 2, {}) is None
    assert repeats.key(aten.add.Tensor, (torch.empty(2, 3),) * 2, {}) is None  # real tensors run their kernel
    with FakeTensorMode() as fake:
        f = fake.from_tensor(torch.empty(2, 3))
        assert repeats.key(aten.add.Tensor, (f, f), {}) is not None
        constant = torch.tensor(2.0)  # a one-element tensor made inside the mode carries its value
        assert constant.constant is not None
        assert repeats.key(aten.add.Tensor, (constant, constant), {}) is None


def symbolic_input(*channels_and_names):
    """A fake input ``1 x C x H x W`` with H and W symbolic, and its fake mode."""
    shapes = SymbolicShapes()
    sizes = [shapes.symint(d) if isinstance(d, str) else d for d in channels_and_names]
    with shapes.fake_mode:
        return shapes, torch.empty(sizes)


def test_a_repeated_symbolic_convolution_is_counted_every_time_with_the_kernels_metadata():
    shapes, x = symbolic_input(1, 3, "H", "W")
    with shapes.fake_mode:
        weight = torch.empty(4, 3, 3, 3)
        expected = torch.nn.functional.conv2d(x, weight, stride=2)  # the kernel itself, outside the counter
        seen, outs = counted(lambda: [torch.nn.functional.conv2d(x, weight, stride=2) for _ in range(3)])
    assert [name for name, _ in seen] == ["aten.convolution.default"] * 3
    # 1·4 output channels, each position a 3·3·3 = 27-MAC window: 108·(floor((H-3)/2)+1)·(floor((W-3)/2)+1)
    h, w = shapes.hints["H"], shapes.hints["W"]
    point = {user_symbol("H"): h, user_symbol("W"): w}
    for _, macs in seen:
        assert int(sp.sympify(shapes.to_expr(macs)).xreplace(point)) == 108 * ((h - 3) // 2 + 1) * ((w - 3) // 2 + 1)
    for out in outs:
        assert type(out) is type(expected) and out.device == expected.device and out.dtype == expected.dtype
        assert [shapes.to_expr(d) for d in out.shape] == [shapes.to_expr(d) for d in expected.shape]
        assert [shapes.to_expr(d) for d in out.stride()] == [shapes.to_expr(d) for d in expected.stride()]
    assert len({id(o) for o in outs}) == 3


def test_symbolic_sizes_are_keyed_by_their_expression():
    repeats = RepeatedOps()
    shapes, x = symbolic_input(1, 3, "H", "W")
    with shapes.fake_mode:
        same, other = torch.empty(x.shape), torch.empty(1, 3, x.shape[3], x.shape[2])
    key = repeats.key(aten.relu.default, (x,), {})
    assert key is not None
    assert repeats.key(aten.relu.default, (same,), {}) == key  # the same expressions: the same sizes
    assert repeats.key(aten.relu.default, (other,), {}) != key  # W x H is not H x W


def test_the_key_tells_apart_what_the_output_depends_on():
    repeats = RepeatedOps()
    x = meta(2, 3)
    key = repeats.key(aten.add.Tensor, (x, x), {})
    assert repeats.key(aten.add.Tensor, (meta(2, 3), meta(2, 3)), {}) == key  # same metadata, other tensors
    assert repeats.key(aten.add.Tensor, (meta(3, 2), meta(3, 2)), {}) != key
    assert repeats.key(aten.add.Tensor, (x, x.t().contiguous().t()), {}) != key  # other strides
    assert repeats.key(aten.add.Tensor, (x, x), {"alpha": 2}) != key
    assert repeats.key(aten.add.Tensor, (x, True), {}) != repeats.key(aten.add.Tensor, (x, 1), {})
