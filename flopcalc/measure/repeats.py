"""Repeated ops of one shape-only pass: the second run of an op on the same input metadata is counted without
recomputing its output shape.

On the meta device (and on fake tensors) an op computes nothing; its kernel only derives the output's size,
strides and dtype from the inputs', in Python for many ops (convolution, batch norm, broadcasting), and that
is most of the cost of a meta forward pass. With symbolic sizes every such derivation is sympy arithmetic and
guard checks: a batch norm's decomposition costs tens of milliseconds there. A network repeats the same op on
the same shapes dozens of times (every block of a ResNet stage, every layer of a ViT). :class:`RepeatedOps`
remembers, per op and *input metadata* (every tensor's size, strides, dtype and storage offset, every other
argument's type and value, the default dtype), the output metadata the kernel produced and the count the op's
rule gave; a later run of the same op on the same metadata gets a fresh output tensor of that metadata and
that count.

On plain meta tensors the output metadata is also kept across passes, in a table the process shares (bounded):
a meta kernel's output depends on nothing but the key, so a model analysed again, or another model with the
same layers on the same shapes, runs no kernel for an op an earlier meta pass ran. The count is not shared:
the op's rule counts it again in each pass.

What is still measured: every op the forward pass executes reaches the op counter as before, in order, and is
charged to the module call that runs it; only the repeated derivation of an identical output shape is
skipped. It is the memo torch's own ``FakeTensorMode`` keeps for fake tensors, applied where it is exact:

- only plain (not subclassed) tensors on the meta device and fake tensors without a constant value (torch
  propagates the values of small constant tensors through fake ops), strided and non-complex, whose kernels
  read nothing but metadata; real tensors always run their kernel. A symbolic size is keyed by its expression:
  equal expressions are equal sizes, and the guards the first run added to the ``ShapeEnv`` hold for the
  repeats too (the same expressions give the same guards);
- only ops that neither mutate an argument nor return an alias of one (their output is always a fresh tensor),
  in-place ops that leave their argument's metadata as it is (the output is the argument), and, on fake
  tensors, view ops (below); never an op whose output shape depends on data;
- only outputs made of fresh tensors (storage offset 0), views of the viewed argument, and plain values
  (numbers, devices, ``None``).

A fake view (``view``, ``transpose``, ``expand``, ``split``, ...) is replayed as ``as_strided`` of the same
argument with the sizes, strides and storage offset its kernel gave: the output shares that argument's storage
as the kernel's does, so an in-place op through it writes the same tensor; torch's autograd layer above the
counter still records it as a view. With symbolic sizes a fake view kernel is sympy arithmetic over every size
(``view`` solves for the dimensions it merges and splits), by far the most expensive op of a transformer's
pass, while ``as_strided`` on the meta level checks nothing symbolic. A fresh fake output is rebuilt the same
way over a new one-dimensional storage of the first output's length, which costs one symbolic product instead
of the stride arithmetic ``empty_strided`` repeats for every dimension.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import torch
from torch import nn
from torch._ops import OpOverload
from torch._subclasses.fake_tensor import FakeTensor, in_kernel_invocation_manager

_PLAIN_TENSORS = (torch.Tensor, nn.Parameter)
_SYMBOLIC = (torch.SymInt, torch.SymFloat, torch.SymBool)
_PLAIN_VALUES = frozenset({int, float, bool, str, type(None), torch.dtype, torch.device, torch.layout,
                           torch.memory_format})
def _tags(*names: str) -> frozenset[Any]:
    """The op tags of these names that this torch has (older releases lack some, e.g. ``inplace``)."""
    return frozenset(getattr(torch.Tag, name) for name in names if hasattr(torch.Tag, name))


_DATA_DEPENDENT = _tags("dynamic_output_shape", "data_dependent_output")
_METADATA_WRITERS = _tags("inplace_view", "nondeterministic_seeded")
_IN_PLACE = _tags("inplace")
"""Empty on a torch without the tag: in-place ops then always run their kernel."""
_SELF = object()
"""The output of an in-place op: its first argument, returned as it is."""


class _TensorSpec(tuple):
    """``(size, stride, dtype)`` of a fresh meta tensor."""


class _FakeSpec:
    """A fresh fake tensor's sizes (maybe ``SymInt``), strides, dtype, device and mode, and its storage's
    length in elements, worked out at its first replay: a symbolic division costs about as much as a replay,
    and most first runs in a closed form never repeat."""

    __slots__ = ("size", "stride", "dtype", "device", "fake_mode", "nbytes", "_length")

    def __init__(self, out: FakeTensor) -> None:
        self.size, self.stride, self.dtype = out.shape, out.stride(), out.dtype
        self.device, self.fake_mode, self.nbytes = out.fake_device, out.fake_mode, out.untyped_storage().nbytes()
        self._length: Any = None

    def length(self) -> Any:
        if self._length is None:
            self._length = self.nbytes // self.dtype.itemsize
        return self._length


class _FakeViewSpec(tuple):
    """``(argument index, size, stride, storage offset)`` of a fake tensor that views that argument."""


class _Plain(tuple):
    """``(value,)``: a number, a device or ``None`` returned as it is."""


OutputSpec = Any
"""How to rebuild an output: a :class:`_TensorSpec`, a :class:`_FakeSpec`, a :class:`_FakeViewSpec`, a
:class:`_Plain`, or a tuple or list of specs."""


class _Unrepeatable(Exception):
    """An argument or output the memo cannot describe exactly: the op runs its kernel."""


def _expressions(sizes: Any) -> tuple[Any, ...]:
    """Sizes with each symbolic one as its expression: hashable, and read without adding a guard."""
    return tuple(d.node.expr if type(d) is torch.SymInt else d for d in sizes)


def _tensor_key(tensor: torch.Tensor) -> Hashable:
    kind = type(tensor)
    if kind is FakeTensor:
        if tensor.constant is not None or tensor.layout is not torch.strided or tensor.dtype.is_complex:
            raise _Unrepeatable
        offset = tensor.storage_offset()
        return (tensor.fake_mode, tensor.fake_device, _expressions(tensor.shape), _expressions(tensor.stride()),
                tensor.dtype, offset.node.expr if type(offset) is torch.SymInt else offset)
    if kind not in _PLAIN_TENSORS or not tensor.is_meta or tensor.layout is not torch.strided:
        raise _Unrepeatable
    dtype = tensor.dtype
    if dtype.is_complex:  # conjugate and negative views are flags outside the metadata keyed here
        raise _Unrepeatable
    return (tensor.shape, tensor.stride(), dtype, tensor.storage_offset())


def _value_key(value: Any) -> Hashable:
    kind = type(value)
    if kind in _PLAIN_TENSORS or isinstance(value, torch.Tensor):
        return _tensor_key(value)
    if kind in _PLAIN_VALUES:
        return (kind, value)
    if kind in _SYMBOLIC:
        return (kind, value.node.expr)
    if kind is list or kind is tuple or kind is torch.Size:
        return (kind, tuple(_value_key(v) for v in value))
    raise _Unrepeatable


def _output_spec(out: Any) -> OutputSpec:
    kind = type(out)
    if kind is torch.Tensor:
        if not out.is_meta or out.layout is not torch.strided or out.storage_offset() != 0:
            raise _Unrepeatable
        return _TensorSpec((out.shape, out.stride(), out.dtype))
    if kind is FakeTensor:
        offset = out.storage_offset()  # a fresh tensor's is the int 0 (never compare a SymInt: that is a guard)
        if out.constant is not None or out.layout is not torch.strided or type(offset) is not int or offset != 0:
            raise _Unrepeatable
        return _FakeSpec(out)
    if kind is tuple or kind is list:
        return kind(_output_spec(v) for v in out)
    if kind in (int, float, bool, type(None), torch.device):  # a device: torch asks a fake tensor's (prim.device)
        return _Plain((out,))
    raise _Unrepeatable


def _view_spec(out: Any, index: int, viewed: Any) -> OutputSpec:
    """How to rebuild the output of a view op whose argument ``index`` is ``viewed``: only new fake tensors
    (not ``viewed`` itself) of the viewed tensor's storage, dtype and device, without the conjugate or negative
    bit."""
    kind = type(out)
    if kind is tuple or kind is list:
        return kind(_view_spec(v, index, viewed) for v in out)
    if (
        kind is not FakeTensor or type(viewed) is not FakeTensor or out is viewed or out.constant is not None
        or out.layout is not torch.strided or out.dtype != viewed.dtype or out.fake_device != viewed.fake_device
        or out.fake_mode is not viewed.fake_mode or out.is_conj() or out.is_neg()
        or out.untyped_storage()._cdata != viewed.untyped_storage()._cdata
    ):
        raise _Unrepeatable
    return _FakeViewSpec((index, out.shape, out.stride(), out.storage_offset()))


def _rebuild(spec: OutputSpec, args: tuple[Any, ...]) -> Any:
    kind = type(spec)
    if kind is _TensorSpec:
        return torch.empty_strided(spec[0], spec[1], dtype=spec[2], device="meta")
    if kind is _FakeSpec:
        with in_kernel_invocation_manager(spec.fake_mode):  # meta tensors made directly, not through the mode
            flat = torch.empty((spec.length(),), dtype=spec.dtype, device="meta")
            elem = flat.as_strided(spec.size, spec.stride)
        return FakeTensor(spec.fake_mode, elem, spec.device)
    if kind is _FakeViewSpec:
        index, size, stride, offset = spec
        viewed = args[index]
        with in_kernel_invocation_manager(viewed.fake_mode):
            elem = torch.as_strided(viewed, size, stride, offset)
        return FakeTensor(viewed.fake_mode, elem, viewed.fake_device)
    if kind is _Plain:
        return spec[0]
    return kind(_rebuild(s, args) for s in spec)


def _is_functional(func: OpOverload) -> bool:
    """No argument mutated, no output aliasing an argument, no output shape that depends on data."""
    schema = func._schema
    return (
        not schema.is_mutable
        and all(ret.alias_info is None for ret in schema.returns)
        and not _DATA_DEPENDENT.intersection(func.tags)
    )


def _is_in_place(func: OpOverload) -> bool:
    """An in-place op that writes its first argument's values and returns it, leaving its metadata as it is
    (``relu_``, ``add_``, ``hardswish_``; not ``resize_``, ``squeeze_`` or ``set_``, which change it)."""
    schema = func._schema
    if not _IN_PLACE.intersection(func.tags) or _METADATA_WRITERS.intersection(func.tags):
        return False
    written = [arg for arg in schema.arguments if arg.alias_info is not None and arg.alias_info.is_write]
    returns = schema.returns
    return (
        len(written) == 1 and bool(schema.arguments) and written[0] is schema.arguments[0]
        and len(returns) == 1 and returns[0].alias_info is not None
        and returns[0].alias_info.before_set == written[0].alias_info.before_set
    )


def _viewed_argument(func: OpOverload) -> int | None:
    """The index of the one argument a view op's outputs alias (``view``, ``transpose``, ``split``), or
    ``None`` for any other op."""
    schema = func._schema
    aliased = [i for i, arg in enumerate(schema.arguments) if arg.alias_info is not None]
    if (
        not func.is_view or len(aliased) != 1 or _DATA_DEPENDENT.intersection(func.tags)
        or not isinstance(schema.arguments[aliased[0]].type, torch.TensorType)
    ):
        return None
    return aliased[0]


_FRESH = -1
"""The kind of an op whose output is a fresh tensor or its in-place argument (else: the viewed argument's
index, or ``None`` when the op always runs its kernel)."""


SHARED_LIMIT = 8192
"""The most keys the table shared by the passes of a process holds; it starts afresh when full."""

_shared: dict[Hashable, OutputSpec] = {}
"""Output metadata of ops on plain meta tensors, by key, for every pass of the process (see RepeatedOps)."""

Counter = Callable[[OpOverload, tuple[Any, ...], dict[str, Any], Any], Any]
"""``count(func, args, kwargs, out)``: what the op's rule counts for one run."""


def _meta_only(spec: OutputSpec) -> bool:
    """The spec rebuilds plain meta tensors, the op's argument or plain values: nothing of one fake pass."""
    kind = type(spec)
    if kind is tuple or kind is list:
        return all(_meta_only(s) for s in spec)
    return spec is _SELF or kind is _TensorSpec or kind is _Plain


class RepeatedOps:
    """The memo of one pass: output metadata and count per (op, input metadata).

    With ``count`` (the op counter's rule lookup) and no fake mode active, the pass is on plain meta tensors,
    whose kernels derive the same output from the same key in any pass: their output metadata goes into a table
    shared by every such pass of the process, so that analysing a model again, or another model with the same
    layers, replays the ops of the earlier passes. Counts are not shared: an op replayed from the shared table
    is counted by its rule once in each pass (a rule registered or replaced since applies), then memoised with
    its output in the pass's own memo. Fake passes keep everything in their own memo (their keys and outputs
    hold their fake mode).
    """

    def __init__(self, count: Counter | None = None) -> None:
        self._entries: dict[Hashable, tuple[OutputSpec, Any]] = {}
        self._kinds: dict[OpOverload, int | None] = {}
        fake = torch._C._get_dispatch_mode(torch._C._TorchDispatchModeKey.FAKE)
        self._count = count if fake is None else None

    def _kind(self, func: OpOverload) -> int | None:
        if func in self._kinds:
            return self._kinds[func]
        kind = self._kinds[func] = _FRESH if _is_functional(func) or _is_in_place(func) else _viewed_argument(func)
        return kind

    def key(self, func: OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable | None:
        """The memo key of this run, or ``None`` when it must run its kernel (see the module docstring)."""
        kind = self._kind(func)
        if kind is None or (kind != _FRESH and (kind >= len(args) or type(args[kind]) is not FakeTensor)):
            return None
        try:
            key = (func, torch.get_default_dtype(), tuple(_value_key(a) for a in args),
                   tuple((name, _value_key(v)) for name, v in kwargs.items()))
            hash(key)
        except (_Unrepeatable, TypeError):
            return None
        return key

    def replay(self, key: Hashable, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any] | None:
        """The output and the count of an earlier run with this key (in this pass, or in an earlier meta pass),
        or ``None`` for a first run."""
        entry = self._entries.get(key)
        if entry is None:
            spec = None if self._count is None else _shared.get(key)
            if spec is None:
                return None
            out = args[0] if spec is _SELF else _rebuild(spec, args)
            count = self._count(key[0], args, kwargs, out)  # type: ignore[index]
            self._entries[key] = (spec, count)
            return out, count
        spec, count = entry
        return (args[0] if spec is _SELF else _rebuild(spec, args)), count

    def remember(self, key: Hashable, args: tuple[Any, ...], out: Any, count: Any) -> None:
        kind = self._kinds[key[0]]
        try:
            if kind == _FRESH:
                spec = _SELF if args and out is args[0] else _output_spec(out)
            else:
                spec = _view_spec(out, kind, args[kind] if kind < len(args) else None)
        except _Unrepeatable:
            return
        self._entries[key] = (spec, count)
        if self._count is not None and _meta_only(spec):
            if len(_shared) >= SHARED_LIMIT:
                _shared.clear()
            _shared[key] = spec
