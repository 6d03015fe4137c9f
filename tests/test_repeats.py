"""The op counter's memo of repeated meta ops: every run still reaches the counter and is counted, a replayed
output has exactly the metadata the kernel gives, and only ops whose output the memo can describe exactly
(fresh tensors or the in-place argument, on plain meta tensors) are replayed."""

from __future__ import annotations

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from flopcalc.measure import OpCounter
from flopcalc.measure.repeats import RepeatedOps

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
        assert repeats.key(aten.add.Tensor, (f, f), {}) is None


def test_the_key_tells_apart_what_the_output_depends_on():
    repeats = RepeatedOps()
    x = meta(2, 3)
    key = repeats.key(aten.add.Tensor, (x, x), {})
    assert repeats.key(aten.add.Tensor, (meta(2, 3), meta(2, 3)), {}) == key  # same metadata, other tensors
    assert repeats.key(aten.add.Tensor, (meta(3, 2), meta(3, 2)), {}) != key
    assert repeats.key(aten.add.Tensor, (x, x.t().contiguous().t()), {}) != key  # other strides
    assert repeats.key(aten.add.Tensor, (x, x), {"alpha": 2}) != key
    assert repeats.key(aten.add.Tensor, (x, True), {}) != repeats.key(aten.add.Tensor, (x, 1), {})
