"""Output metadata of common ops on symbolic fake tensors, derived without running torch's fake kernels.

Over symbolic sizes torch's fake kernels are Python (its references and prims) doing sympy arithmetic and
static checks on every size and stride: an op's first run in a closed form costs 1–30 ms where its meta kernel
costs 0.1 ms, and in a small language model most ops are first runs (only the later layers replay the first,
:mod:`flopcalc.measure.repeats`). For a few op families the output's sizes, strides and dtype follow from the
inputs' by a short rule, the rule torch's own kernel applies:

- elementwise ops (a fixed list: arithmetic, comparisons, activations, ``where``, ``_to_copy`` to another
  dtype): the broadcast shape; strides as torch's ``compute_elementwise_output_strides`` (or the contiguous
  fast path fake tensors take for ``add``/``sub``/``mul``/``div``); the dtype from running the op on one-element
  meta tensors of the same dtypes and ranks (exact type promotion, whatever the op's promotion kind);
- ``tril``/``triu`` and softmax over a contiguous input: a contiguous output of the same shape;
- views (``view``, ``_unsafe_view``, ``expand``, ``transpose``, ``unsqueeze``, a full or static ``slice``): the
  arguments' sizes with strides that only permute, repeat or multiply the input's.

Every question torch's kernel asks about the sizes (is this stride 0, is this size 1, is this stride at least
that one) is answered here by the ShapeEnv's static evaluation, which is what torch does first; where that
cannot decide, torch would evaluate the hint and add a guard, so the op runs its kernel instead. Anything
outside a rule's narrow conditions (kwargs it does not know, real or constant tensors, mixed devices, a
broadcast it cannot prove) also runs the kernel. :func:`checking` (or ``FLOPCALC_CHECK_DERIVED=1``) runs the
kernel as well and asserts that the metadata and the ShapeEnv's guards, ranges and replacements are the same;
the tests run the language models' closed forms and a sweep of layouts that way.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import sympy as sp
import torch
from torch._ops import OpOverload
from torch._prims_common import make_contiguous_strides_for
from torch._subclasses.fake_tensor import FakeTensor, in_kernel_invocation_manager
from torch.utils._sympy import functions as torch_sympy

aten = torch.ops.aten

_FAST_BINARY = frozenset({aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.div.Tensor})
"""The ops fake tensors give a contiguous output directly when every operand is contiguous (torch's
``fast_binary_impl``); other elementwise ops always take the reference's stride rule."""

_ELEMENTWISE = frozenset({
    *_FAST_BINARY, aten.add.Scalar, aten.sub.Scalar, aten.mul.Scalar, aten.div.Scalar, aten.neg.default,
    aten.rsqrt.default, aten.sqrt.default, aten.exp.default, aten.log.default, aten.sin.default,
    aten.cos.default, aten.tanh.default, aten.sigmoid.default, aten.silu.default, aten.relu.default,
    aten.abs.default, aten.reciprocal.default, aten.pow.Tensor_Scalar, aten.pow.Tensor_Tensor,
    aten.where.self, aten.eq.Scalar, aten.ne.Scalar, aten.eq.Tensor, aten.ne.Tensor, aten.lt.Scalar,
    aten.gt.Scalar, aten.maximum.default, aten.minimum.default,
})
_SAME_SHAPE = frozenset({aten.tril.default, aten.triu.default, aten._safe_softmax.default,
                         aten._softmax.default})
_SCALARS = (int, float, bool)


class _Undecided(Exception):
    """The rule does not apply, or a question about the sizes is not statically known: run the kernel."""


def _expr(value: Any) -> Any:
    return value.node.expr if type(value) is torch.SymInt else value


class _Truths:
    """Static answers about one ShapeEnv's sizes: what ``guard_or_false`` gets without adding a guard."""

    def __init__(self, shape_env: Any) -> None:
        self.shape_env = shape_env
        self._known: dict[Any, bool] = {}
        self._equal: dict[tuple[Any, Any], bool] = {}

    def holds(self, relation: Any) -> bool:
        """``relation`` (a Python or sympy truth) when it is statically known; :class:`_Undecided` else."""
        if type(relation) is bool:
            return relation
        if relation is sp.true or relation is sp.false:
            return bool(relation)
        known = self._known.get(relation)
        if known is None:
            answer = self.shape_env._maybe_evaluate_static(relation)
            if answer is None:
                raise _Undecided
            known = self._known[relation] = bool(answer)
        return known

    def eq(self, a: Any, b: Any) -> bool:
        if type(a) is int and type(b) is int:
            return a == b
        if a is b:
            return True
        known = self._equal.get((a, b))
        if known is None:
            known = self._equal[(a, b)] = self.holds(sp.Eq(a, b))
        return known

    def divides(self, divisor: Any, value: Any) -> bool:
        """``value % divisor == 0``."""
        if type(value) is int and type(divisor) is int:
            return value % divisor == 0
        return self.holds(sp.Eq(torch_sympy.PythonMod(value, divisor), 0))

    def ge(self, a: Any, b: Any) -> bool:
        if type(a) is int and type(b) is int:
            return a >= b
        return self.holds(sp.Ge(a, b))


def _is_contiguous(truths: _Truths, sizes: Sequence[Any], strides: Sequence[Any]) -> bool:
    """torch's ``is_contiguous`` (``check_contiguous_sizes_strides``) over size and stride expressions."""
    numel = math.prod(sizes)
    if truths.holds(numel < 2 if type(numel) is int else sp.Lt(numel, 2)):
        return True
    expected: Any = 1
    for size, stride in zip(reversed(sizes), reversed(strides)):
        if truths.eq(size, 1):
            continue
        if not truths.eq(stride, expected):
            return False
        expected = expected * size
    return True


def _is_channels_last(truths: _Truths, sizes: Sequence[Any], strides: Sequence[Any]) -> bool:
    if len(sizes) != 4:
        if len(sizes) == 5:
            raise _Undecided  # channels_last_3d: not needed so far
        return False
    expected: Any = 1
    for index in (1, 3, 2, 0):
        if truths.eq(sizes[index], 1):
            continue
        if not truths.eq(strides[index], expected):
            return False
        expected = expected * sizes[index]
    return True


def _physical_order(truths: _Truths, shape: Sequence[Any], strides: Sequence[Sequence[Any]]) -> list[int]:
    """torch's ``compute_elementwise_output_logical_to_physical_perm`` for tensors already broadcast to
    ``shape`` (``strides``: each tensor's)."""
    ndim = len(shape)
    if ndim == 0:
        return []
    if ndim == 1:
        return [0]
    contiguous = all(_is_contiguous(truths, shape, s) for s in strides)
    channels_last = all(_is_channels_last(truths, shape, s) for s in strides)
    if contiguous and not channels_last:
        return list(range(ndim))
    if channels_last and not contiguous:
        return [0, *range(2, ndim), 1]

    def ge(a: Any, b: Any) -> bool:
        if truths.eq(b, 0):
            return True
        if truths.eq(a, 0):
            return False
        return truths.ge(a, b) or truths.divides(b, a)

    def should_swap(a: int, b: int) -> int:
        for tensor_strides in strides:
            stride_a, stride_b = tensor_strides[a], tensor_strides[b]
            if truths.eq(stride_a, 0) or truths.eq(stride_b, 0):
                continue
            if truths.eq(stride_a, stride_b):
                if ge(shape[b], shape[a]):
                    continue
                return 1
            if ge(stride_b, stride_a):
                return -1
            if ge(stride_a, stride_b):
                return 1
        return 0

    perm = list(reversed(range(ndim)))
    for i in range(1, ndim):
        dim1 = i
        for dim0 in reversed(range(i)):
            comparison = should_swap(perm[dim0], perm[dim1])
            if comparison > 0:
                perm[dim0], perm[dim1] = perm[dim1], perm[dim0]
                dim1 = dim0
            elif comparison < 0:
                break
    return list(reversed(perm))


def _strides_in_order(sizes: Sequence[Any], order: Sequence[int]) -> tuple[Any, ...]:
    """Contiguous strides of ``sizes`` laid out in ``order`` (outermost first), as torch computes them."""
    physical = make_contiguous_strides_for([sizes[i] for i in order])
    strides: list[Any] = [0] * len(sizes)
    for position, dim in enumerate(order):
        strides[dim] = physical[position]
    return tuple(strides)


def _is_dense(truths: _Truths, sizes: Sequence[Any], strides: Sequence[Any]) -> bool:
    """Non-overlapping and dense: some permutation of the dimensions is contiguous."""
    if len(sizes) == 1:
        return truths.eq(strides[0], 1)
    kept = [d for d in range(len(sizes)) if not truths.eq(sizes[d], 1)]
    expected: Any = 1
    for dim in sorted(kept, key=lambda d: _Sortable(truths, strides[d])):
        if not truths.eq(strides[dim], expected):
            return False
        expected = expected * sizes[dim]
    return True


class _Sortable:
    """A stride ordered by static comparison."""

    __slots__ = ("truths", "value")

    def __init__(self, truths: _Truths, value: Any) -> None:
        self.truths, self.value = truths, value

    def __lt__(self, other: _Sortable) -> bool:
        return not self.truths.ge(self.value, other.value)


def _broadcast(truths: _Truths, shapes: Sequence[Sequence[Any]], sizes: Sequence[Sequence[Any]]) -> list[Any]:
    """The broadcast shape as the inputs' own size objects (``sizes``, ints or SymInts; ``shapes`` their
    expressions), where every non-1 size of a dimension is one expression and provably not 1."""
    ndim = max(len(shape) for shape in shapes)
    out: list[Any] = []
    for dim in range(ndim):
        chosen: Any = None
        chosen_expr: Any = None
        for shape, size in zip(shapes, sizes):
            offset = dim - (ndim - len(shape))
            if offset < 0:
                continue
            expr = shape[offset]
            if truths.eq(expr, 1):
                if chosen is None:
                    chosen, chosen_expr = size[offset], expr
                continue
            if chosen_expr is not None and not truths.eq(chosen_expr, 1):
                if expr != chosen_expr:
                    raise _Undecided
                continue
            chosen, chosen_expr = size[offset], expr
        out.append(chosen)
    return out


def _expanded_strides(truths: _Truths, shape: Sequence[Any], out_shape: Sequence[Any],
                      strides: Sequence[Any]) -> tuple[Any, ...]:
    """A tensor's strides once expanded to ``out_shape``: 0 for new and broadcast dimensions."""
    lead = len(out_shape) - len(shape)
    expanded: list[Any] = [0] * lead
    for offset, (size, stride) in enumerate(zip(shape, strides)):
        target = out_shape[lead + offset]
        expanded.append(0 if truths.eq(size, 1) and not truths.eq(target, 1) else stride)
    return tuple(expanded)


def _fresh(mode: Any, device: torch.device, sizes: Sequence[Any], strides: Sequence[Any],
           dtype: torch.dtype) -> FakeTensor:
    """A new fake tensor of this metadata over a new dense storage."""
    with in_kernel_invocation_manager(mode):
        flat = torch.empty((math.prod(sizes),), dtype=dtype, device="meta")
        elem = flat.as_strided(sizes, strides)
    return FakeTensor(mode, elem, device)


def _view(base: FakeTensor, sizes: Sequence[Any], strides: Sequence[Any], offset: Any) -> FakeTensor:
    with in_kernel_invocation_manager(base.fake_mode):
        elem = torch.as_strided(base, sizes, strides, offset)
    return FakeTensor(base.fake_mode, elem, base.fake_device)


def _symbolic(tensors: Sequence[FakeTensor], args: Sequence[Any]) -> bool:
    """Whether torch's fake kernel sees symbolic sizes; without, it runs other (C++ meta) kernels, whose strides
    for size-1 dimensions can differ from the rules here, and which are fast anyway."""
    return any(t._has_symbolic_sizes_strides for t in tensors) or any(
        type(a) is torch.SymInt or type(a) in (list, tuple) and any(type(d) is torch.SymInt for d in a) for a in args
    )


def _normalized_dim(dim: Any, ndim: int) -> int:
    if type(dim) is not int or not -max(ndim, 1) <= dim < max(ndim, 1):
        raise _Undecided
    return dim + ndim if dim < 0 else dim


_DTYPES: dict[Any, torch.dtype] = {}
"""Output dtype per op and argument dtypes, ranks and scalars (the same in every pass); bounded."""


class DerivedOutputs:
    """The derivations of one pass, with their static answers memoised per ShapeEnv."""

    def __init__(self) -> None:
        self._truths: dict[int, _Truths] = {}

    def output(self, func: OpOverload, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        """``func``'s output, derived, or ``None`` when the op must run its kernel."""
        if func in _ELEMENTWISE:
            rule = self._elementwise
        elif func is aten._to_copy.default:
            rule = self._to_copy
        elif func in _SAME_SHAPE:
            rule = self._same_shape
        else:
            rule = _VIEWS.get(func)
            if rule is None:
                return None
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if not tensors or any(type(t) is not FakeTensor for t in tensors):
            return None
        mode = tensors[0].fake_mode
        if mode.shape_env is None or any(t.fake_mode is not mode for t in tensors) or not _symbolic(tensors, args):
            return None
        truths = self._truths.get(id(mode.shape_env))
        if truths is None or truths.shape_env is not mode.shape_env:
            truths = self._truths[id(mode.shape_env)] = _Truths(mode.shape_env)
        try:
            return rule(truths, func, args, kwargs)
        except _Undecided:
            return None

    def _dtype(self, func: OpOverload, args: Sequence[Any], kwargs: dict[str, Any]) -> torch.dtype:
        """The output dtype, from the op run on one-element meta tensors of the same dtypes and ranks."""
        key = (func, tuple((a.dtype, a.dim()) if isinstance(a, torch.Tensor) else (type(a), a) for a in args),
               tuple(kwargs.items()))
        dtype = _DTYPES.get(key)
        if dtype is None:
            mode = next(a for a in args if isinstance(a, FakeTensor)).fake_mode
            with in_kernel_invocation_manager(mode):  # plain meta tensors, not through the fake mode
                small = [torch.empty((1,) * a.dim(), dtype=a.dtype, device="meta") if isinstance(a, torch.Tensor)
                         else a for a in args]
                try:
                    out = func(*small, **kwargs)
                except Exception:  # noqa: BLE001  (the real kernel will raise its own error)
                    raise _Undecided from None
            if not isinstance(out, torch.Tensor):
                raise _Undecided
            if len(_DTYPES) >= 4096:
                _DTYPES.clear()
            dtype = _DTYPES[key] = out.dtype
        return dtype

    def _elementwise(self, truths: _Truths, func: OpOverload, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        if kwargs or any(not isinstance(a, torch.Tensor) and type(a) not in _SCALARS for a in args):
            raise _Undecided
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        device = tensors[0].fake_device
        if any(t.fake_device != device for t in tensors) or device.type == "cpu":
            raise _Undecided  # cpu scalar tensors are exempt from torch's stride rule: not handled here
        dtype = self._dtype(func, args, kwargs)
        shapes = [tuple(_expr(d) for d in t.shape) for t in tensors]
        all_strides = [tuple(_expr(d) for d in t.stride()) for t in tensors]
        out_sizes = _broadcast(truths, shapes, [t.shape for t in tensors])
        out_shape = [_expr(d) for d in out_sizes]
        if func in _FAST_BINARY:
            if not any(len(shape) == len(out_shape) and all(map(truths.eq, shape, out_shape)) for shape in shapes):
                strides = None  # both operands broadcast: the reference's rule below
            elif all(_is_contiguous(truths, shape, s) for shape, s in zip(shapes, all_strides)):
                return _fresh(tensors[0].fake_mode, device, out_sizes, make_contiguous_strides_for(out_sizes), dtype)
            elif all(_is_channels_last(truths, shape, s) for shape, s in zip(shapes, all_strides)):
                raise _Undecided
        if len(tensors) == 1:
            shape, strides = shapes[0], all_strides[0]
            if _is_dense(truths, shape, strides):
                return _fresh(tensors[0].fake_mode, device, out_sizes, tensors[0].stride(), dtype)
        expanded = [_expanded_strides(truths, shape, out_shape, s) for shape, s in zip(shapes, all_strides)]
        order = _physical_order(truths, out_shape, expanded)
        return _fresh(tensors[0].fake_mode, device, out_sizes, _strides_in_order(out_sizes, order), dtype)

    def _to_copy(self, truths: _Truths, func: OpOverload, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        dtype = kwargs.get("dtype")
        if len(args) != 1 or set(kwargs) != {"dtype"} or not isinstance(dtype, torch.dtype):
            raise _Undecided
        (tensor,) = args
        if dtype == tensor.dtype or dtype.is_complex or tensor.dtype.is_complex:
            raise _Undecided
        shape, strides = [_expr(d) for d in tensor.shape], [_expr(d) for d in tensor.stride()]
        if len(shape) > 1 and not _is_dense(truths, shape, strides):
            raise _Undecided
        if len(shape) == 1 and not truths.eq(strides[0], 1):
            raise _Undecided
        return _fresh(tensor.fake_mode, tensor.fake_device, tensor.shape, tensor.stride(), dtype)

    def _same_shape(self, truths: _Truths, func: OpOverload, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        tensor = args[0]
        if kwargs or any(type(a) not in _SCALARS and a is not None for a in args[1:]):
            raise _Undecided
        if func in (aten._softmax.default,) and (len(args) < 3 or args[2]):
            raise _Undecided  # half_to_float changes the dtype
        if func is aten._safe_softmax.default and len(args) > 2 and args[2] is not None:
            raise _Undecided
        if func in (aten._safe_softmax.default, aten._softmax.default) and not tensor.dtype.is_floating_point:
            raise _Undecided
        shape, strides = [_expr(d) for d in tensor.shape], [_expr(d) for d in tensor.stride()]
        if len(shape) < 2 or not all(
            truths.eq(s, e) for s, e in zip(strides, (_expr(d) for d in make_contiguous_strides_for(tensor.shape)))
        ):
            raise _Undecided  # only the plainly contiguous layout
        return _fresh(tensor.fake_mode, tensor.fake_device, tensor.shape, tensor.stride(), tensor.dtype)


def _transpose(truths: _Truths, func: OpOverload, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    tensor, first, second = args
    ndim = tensor.dim()
    if kwargs or ndim == 0:
        raise _Undecided
    first, second = _normalized_dim(first, ndim), _normalized_dim(second, ndim)
    sizes, strides = list(tensor.shape), list(tensor.stride())
    sizes[first], sizes[second] = sizes[second], sizes[first]
    strides[first], strides[second] = strides[second], strides[first]
    return _view(tensor, sizes, strides, tensor.storage_offset())


def _unsqueeze(truths: _Truths, func: OpOverload, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    tensor, dim = args
    ndim = tensor.dim()
    if kwargs or type(dim) is not int or not -ndim - 1 <= dim <= ndim:
        raise _Undecided
    dim = dim + ndim + 1 if dim < 0 else dim
    sizes, strides = list(tensor.shape), list(tensor.stride())
    stride = 1 if dim >= ndim else sizes[dim] * strides[dim]
    sizes.insert(dim, 1)
    strides.insert(dim, stride)
    return _view(tensor, sizes, strides, tensor.storage_offset())


def _expand(truths: _Truths, func: OpOverload, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    tensor, target = args[0], args[1]
    if kwargs or len(args) > 2 and args[2] or len(target) < tensor.dim():
        raise _Undecided
    lead = len(target) - tensor.dim()
    sizes: list[Any] = []
    strides: list[Any] = []
    for dim, size in enumerate(target):
        if type(size) not in (int, torch.SymInt):
            raise _Undecided
        if dim < lead:
            if type(size) is int and size < 0:
                raise _Undecided
            sizes.append(size)
            strides.append(0)
            continue
        own, stride = tensor.shape[dim - lead], tensor.stride()[dim - lead]
        if type(size) is int and size == -1 or truths.eq(_expr(size), _expr(own)):
            sizes.append(own)
            strides.append(stride)
        elif truths.eq(_expr(own), 1):
            sizes.append(size)
            strides.append(0)
        else:
            raise _Undecided
    return _view(tensor, sizes, strides, tensor.storage_offset())


def _slice(truths: _Truths, func: OpOverload, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    tensor = args[0]
    dim, start, end, step = (list(args[1:]) + [0, None, None, 1][len(args) - 1:])[:4]
    if kwargs or step != 1 or tensor.dim() == 0:
        raise _Undecided
    dim = _normalized_dim(dim, tensor.dim())
    size = tensor.shape[dim]
    if start in (None, 0) and (end is None or end == sys.maxsize):
        return _view(tensor, tensor.shape, tensor.stride(), tensor.storage_offset())
    if type(size) is not int or type(start or 0) is not int or type(end if end is not None else 0) is not int:
        raise _Undecided
    first, last, _ = slice(start, end).indices(size)
    length = max(last - first, 0)
    sizes = list(tensor.shape)
    sizes[dim] = length
    offset = tensor.storage_offset() + first * tensor.stride()[dim] if first else tensor.storage_offset()
    return _view(tensor, sizes, tensor.stride(), offset)


def _product(values: Sequence[Any]) -> Any:
    result: Any = 1
    for value in values:
        result = result * value
    return result


def _reshape(truths: _Truths, func: OpOverload, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """``view``/``_unsafe_view``: torch's ``_reshape_view_helper`` over sizes whose every question is static
    (``-1`` inferred, the shape checked, dimensions skipped, split and merged left to right)."""
    tensor, target = args
    if kwargs or not target or tensor.dim() == 0 or any(type(d) not in (int, torch.SymInt) for d in target):
        raise _Undecided
    numel = tensor.numel()
    if truths.eq(_expr(numel), 0):
        raise _Undecided
    sizes = list(target)
    unknown = [i for i, d in enumerate(sizes) if type(d) is int and d == -1]
    if len(unknown) > 1 or any(type(d) is int and d < -1 for d in sizes):
        raise _Undecided
    known = _product([d for i, d in enumerate(sizes) if i not in unknown])
    if unknown:
        if truths.eq(_expr(known), 0) or not truths.divides(_expr(known), _expr(numel)):
            raise _Undecided
        sizes[unknown[0]] = numel // known
    elif not truths.eq(_expr(numel), _expr(known)):
        raise _Undecided
    shape, strides = list(tensor.shape), list(tensor.stride())
    if _is_contiguous(truths, [_expr(d) for d in shape], [_expr(d) for d in strides]):
        if len(sizes) == 1 and len(shape) > 1:
            return _view(tensor, [numel], [1], tensor.storage_offset())
        if len(sizes) == 2 and len(shape) == 1:
            return _view(tensor, sizes, [sizes[1], 1], tensor.storage_offset())
    changed = False
    index = 0
    for length in sizes:
        if index >= len(shape):  # a trailing unsqueeze: split the last dimension into (itself, 1)
            if not truths.eq(_expr(length), 1):
                raise _Undecided
            last = len(shape) - 1
            shape, strides = _split(shape, strides, last, shape[last])
            changed, index = True, index + 1
            continue
        if truths.eq(_expr(length), _expr(shape[index])):
            index += 1
            continue
        accumulated, end = shape[index], index
        while not truths.divides(_expr(length), _expr(accumulated)):
            end += 1
            if end >= len(shape):
                raise _Undecided
            accumulated = accumulated * shape[end]
        if end != index:
            shape, strides = _collapse(truths, shape, strides, index, end)
            changed = True
        if not truths.eq(_expr(accumulated), _expr(length)):
            shape, strides = _split(shape, strides, index, length)
            changed = True
        index += 1
    while index < len(shape):  # a trailing squeeze
        if not truths.eq(_expr(shape[index]), 1):
            raise _Undecided
        del shape[index], strides[index]
        changed = True
    if not changed:
        return _view(tensor, tensor.shape, tensor.stride(), tensor.storage_offset())
    return _view(tensor, shape, strides, tensor.storage_offset())


def _split(shape: list[Any], strides: list[Any], dim: int, outer: Any) -> tuple[list[Any], list[Any]]:
    """torch's ``prims.split_dim``: dimension ``dim`` as (``outer``, the rest)."""
    inner = shape[dim] // outer
    return ([*shape[:dim], outer, inner, *shape[dim + 1:]],
            [*strides[:dim], strides[dim] * inner, strides[dim], *strides[dim + 1:]])


def _collapse(truths: _Truths, shape: list[Any], strides: list[Any], start: int,
              end: int) -> tuple[list[Any], list[Any]]:
    """torch's ``prims.collapse_view`` of dimensions ``start..end`` where it is a view (else the reshape
    copies, which is not derived here)."""
    for index in range(end - 1, start - 1, -1):
        if not (truths.eq(_expr(shape[index]), 1) or truths.eq(_expr(shape[index + 1]), 1)
                or truths.eq(_expr(strides[index]), _expr(strides[index + 1] * shape[index + 1]))):
            raise _Undecided
    stride = strides[end]
    for index in range(end - 1, start - 1, -1):
        if not truths.eq(_expr(shape[index]), 1) and not truths.ge(_expr(strides[index]), _expr(stride)):
            stride = strides[index]
    length = shape[end]
    for index in range(end - 1, start - 1, -1):
        length = length * shape[index]
    return [*shape[:start], length, *shape[end + 1:]], [*strides[:start], stride, *strides[end + 1:]]


_VIEWS = {
    aten.transpose.int: _transpose, aten.unsqueeze.default: _unsqueeze, aten.expand.default: _expand,
    aten.slice.Tensor: _slice, aten.view.default: _reshape, aten._unsafe_view.default: _reshape,
}


_CHECKING = [os.environ.get("FLOPCALC_CHECK_DERIVED") == "1"]


@contextlib.contextmanager
def checking() -> Iterator[None]:
    """Within: every derived output is compared with the kernel's (see the module docstring)."""
    before = _CHECKING[0]
    _CHECKING[0] = True
    try:
        yield
    finally:
        _CHECKING[0] = before


def is_checking() -> bool:
    return _CHECKING[0]


def _metadata(out: Any) -> Any:
    if isinstance(out, (tuple, list)):
        return [_metadata(o) for o in out]
    if not isinstance(out, torch.Tensor):
        return out
    return (type(out), tuple(_expr(d) for d in out.shape), tuple(_expr(d) for d in out.stride()),
            _expr(out.storage_offset()), out.dtype, out.device, sp.expand(sp.sympify(_expr(out.untyped_storage().nbytes()))))


def _shape_env_state(shape_env: Any) -> Any:
    return (tuple(g.expr for g in shape_env.guards), dict(shape_env.var_to_range), dict(shape_env.replacements),
            sum(len(v) for v in shape_env.deferred_runtime_asserts.values()), len(shape_env.axioms))


def checked(func: OpOverload, args: Sequence[Any], kwargs: dict[str, Any], derived: Any) -> Any:
    """The kernel's output, after asserting that ``derived`` has its metadata and that running the kernel
    changed nothing in the ShapeEnv."""
    shape_env = next(a for a in args if isinstance(a, FakeTensor)).fake_mode.shape_env
    before = _shape_env_state(shape_env)
    out = func(*args, **kwargs)
    after = _shape_env_state(shape_env)
    mine, theirs = _metadata(derived), _metadata(out)
    if mine != theirs or before != after:
        raise AssertionError(f"derived output of {func} differs from its kernel's: {mine} != {theirs}"
                             + ("" if before == after else f"; the kernel changed the ShapeEnv: {before} -> {after}"))
    return out
