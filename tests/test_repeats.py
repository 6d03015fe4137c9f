"""The op counter's memo of repeated shape-only ops: every run still reaches the counter and is counted, a
replayed output has exactly the metadata the kernel gives, and only ops whose output the memo can describe
exactly (fresh tensors or the in-place argument, on plain meta tensors or fake tensors without a constant
value, symbolic sizes included) are replayed."""

from __future__ import annotations

import sympy as sp
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.multiprocessing.reductions import StorageWeakRef

import flopcalc
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
        assert repeats.key(aten.view.default, (f, [6]), {}) is not None  # a fake view is replayed as a view
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


def test_a_replayed_symbolic_view_aliases_its_argument_with_the_kernels_metadata():
    shapes, x = symbolic_input(2, "S", 12)
    views = {
        "view": lambda t: t.view(2, t.shape[1], 3, 4),
        "transpose": lambda t: t.transpose(1, 2),
        "expand": lambda t: t[:, :, :1].expand(2, t.shape[1], 5),
        "slice": lambda t: t[:, 1:, 4:],  # a storage offset of 16 (one row of 12, then 4 columns)
        "split": lambda t: t.split(5, dim=2),  # a list of three views: widths 5, 5, 2
    }
    for name, view in views.items():
        with shapes.fake_mode:
            expected = view(x)  # the kernels themselves, outside the counter
            seen, (first, second) = counted(lambda: (view(x), view(x)))
        ops = [op for op, _ in seen if op != "prim.device.default"]  # (torch asks a fake tensor's device)
        assert ops[: len(ops) // 2] == ops[len(ops) // 2:] and ops, name  # both calls reach the counter, op by op
        pairs = [(expected, first, second)] if torch.is_tensor(expected) else list(zip(expected, first, second))
        for kernel, *replays in pairs:
            for out in replays:
                assert type(out) is type(kernel) and out.dtype == kernel.dtype and out.device == kernel.device
                assert [shapes.to_expr(d) for d in out.shape] == [shapes.to_expr(d) for d in kernel.shape], name
                assert [shapes.to_expr(d) for d in out.stride()] == [shapes.to_expr(d) for d in kernel.stride()]
                assert shapes.to_expr(out.storage_offset()) == shapes.to_expr(kernel.storage_offset()), name
                assert StorageWeakRef(out.untyped_storage()) == StorageWeakRef(x.untyped_storage()), name
                assert out._base is x  # autograd, above the counter, still records the view


def test_in_place_ops_through_replayed_views_write_the_viewed_tensor_and_count_each_time():
    shapes, x = symbolic_input(2, "S", 12)
    s = shapes.hints["S"]
    with shapes.fake_mode:
        version = x._version
        seen, outs = counted(lambda: [x.view(2, x.shape[1], 3, 4).transpose(1, 2).mul_(2) for _ in range(3)])
    assert x._version == version + 3  # each write through a (replayed) view bumps the base's version
    muls = [macs for name, macs in seen if name == "aten.mul_.Tensor"]
    assert len(muls) == 3 and [name for name, _ in seen].count("aten.view.default") == 3
    point = {user_symbol("S"): s}
    for out in outs:
        assert StorageWeakRef(out.untyped_storage()) == StorageWeakRef(x.untyped_storage())
        assert [int(sp.sympify(shapes.to_expr(d)).xreplace(point)) for d in out.shape] == [2, 3, s, 4]


class InPlaceThroughViews(torch.nn.Module):
    """Heads split by views and written in place through them, twice over (the second block replays)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for linear in self.blocks:
            y = linear(x)
            heads = y.view(y.shape[0], y.shape[1], 2, 4).transpose(1, 2)
            heads.mul_(0.5)  # S·8 muls on y's storage
            y[:, 1:].add_(heads.transpose(1, 2).reshape(y.shape)[:, 1:])  # (S − 1)·8 adds
            x = y.relu()
        return x


def test_closed_form_with_in_place_ops_through_views_equals_the_concrete_count():
    model = InPlaceThroughViews()
    report = flopcalc.analyze(model, (1, "S", 8))
    for s in (3, 5, 16, 97):  # (S = 2 is outside its conditions: S − 1 = 1 broadcasts)
        concrete = flopcalc.analyze(model, (1, s, 8))
        point = report.evaluate(S=s)
        assert (point["macs"], point["flops"]) == (concrete.totals.macs, concrete.totals.flops), s
        # per block: 64·S MACs, 8·S bias adds, 8·S muls, 8·(S − 1) adds, 8·S compares (relu)
        assert point["macs"] == 2 * 64 * s
        assert point["flops"] == 2 * (2 * 64 * s + 8 * s + 8 * s + 8 * (s - 1) + 8 * s)
