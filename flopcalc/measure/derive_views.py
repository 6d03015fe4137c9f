"""Output metadata of view ops on symbolic fake tensors, derived as torch's kernels derive it.

Each rule mirrors torch's (``transpose``, ``unsqueeze``, ``expand``, ``slice``, and ``view``/``_unsafe_view``
through ``_reshape_view_helper``: ``-1`` inferred, then dimensions skipped, split and merged left to right),
with every question about the sizes answered statically (:mod:`flopcalc.measure.strides`). The output is
``as_strided`` of the argument, so it shares its storage as the kernel's output does.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import torch
from torch._ops import OpOverload
from torch._subclasses.fake_tensor import FakeTensor, in_kernel_invocation_manager

from flopcalc.measure.strides import Truths, Undecided, expr_of, is_contiguous

aten = torch.ops.aten


def view_of(base: FakeTensor, sizes: Sequence[Any], strides: Sequence[Any], offset: Any) -> FakeTensor:
    """A fake tensor of this metadata over ``base``'s storage."""
    with in_kernel_invocation_manager(base.fake_mode):
        elem = torch.as_strided(base, sizes, strides, offset)
    return FakeTensor(base.fake_mode, elem, base.fake_device)


def normalized_dim(dim: Any, ndim: int) -> int:
    """``dim`` counted from the front, for an int in range (torch's ``wrap_dim``)."""
    if type(dim) is not int or not -max(ndim, 1) <= dim < max(ndim, 1):
        raise Undecided
    return dim + ndim if dim < 0 else dim


def _transpose(truths: Truths, func: OpOverload, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    tensor, first, second = args
    ndim = tensor.dim()
    if kwargs or ndim == 0:
        raise Undecided
    first, second = normalized_dim(first, ndim), normalized_dim(second, ndim)
    sizes, strides = list(tensor.shape), list(tensor.stride())
    sizes[first], sizes[second] = sizes[second], sizes[first]
    strides[first], strides[second] = strides[second], strides[first]
    return view_of(tensor, sizes, strides, tensor.storage_offset())


def _unsqueeze(truths: Truths, func: OpOverload, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    tensor, dim = args
    ndim = tensor.dim()
    if kwargs or type(dim) is not int or not -ndim - 1 <= dim <= ndim:
        raise Undecided
    dim = dim + ndim + 1 if dim < 0 else dim
    sizes, strides = list(tensor.shape), list(tensor.stride())
    stride = 1 if dim >= ndim else sizes[dim] * strides[dim]
    sizes.insert(dim, 1)
    strides.insert(dim, stride)
    return view_of(tensor, sizes, strides, tensor.storage_offset())


def _expand(truths: Truths, func: OpOverload, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    tensor, target = args[0], args[1]
    if kwargs or len(args) > 2 and args[2] or len(target) < tensor.dim():
        raise Undecided
    lead = len(target) - tensor.dim()
    sizes: list[Any] = []
    strides: list[Any] = []
    for dim, size in enumerate(target):
        if type(size) not in (int, torch.SymInt):
            raise Undecided
        if dim < lead:
            if type(size) is int and size < 0:
                raise Undecided
            sizes.append(size)
            strides.append(0)
            continue
        own, stride = tensor.shape[dim - lead], tensor.stride()[dim - lead]
        if type(size) is int and size == -1 or truths.eq(expr_of(size), expr_of(own)):
            sizes.append(own)
            strides.append(stride)
        elif truths.eq(expr_of(own), 1):
            sizes.append(size)
            strides.append(0)
        else:
            raise Undecided
    return view_of(tensor, sizes, strides, tensor.storage_offset())


def _slice(truths: Truths, func: OpOverload, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    tensor = args[0]
    dim, start, end, step = (list(args[1:]) + [0, None, None, 1][len(args) - 1:])[:4]
    if kwargs or type(step) is not int or step != 1 or tensor.dim() == 0:
        raise Undecided  # (a SymInt is never compared here: that would add a guard)
    if any(value is not None and type(value) is not int for value in (start, end)):
        raise Undecided
    dim = normalized_dim(dim, tensor.dim())
    size = tensor.shape[dim]
    if not start and (end is None or end == sys.maxsize):
        return view_of(tensor, tensor.shape, tensor.stride(), tensor.storage_offset())
    if type(size) is not int:
        raise Undecided
    first, last, _ = slice(start, end).indices(size)
    length = max(last - first, 0)
    sizes = list(tensor.shape)
    sizes[dim] = length
    offset = tensor.storage_offset() + first * tensor.stride()[dim] if first else tensor.storage_offset()
    return view_of(tensor, sizes, tensor.stride(), offset)


def _product(values: Sequence[Any]) -> Any:
    result: Any = 1
    for value in values:
        result = result * value
    return result


def _reshape(truths: Truths, func: OpOverload, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """``view``/``_unsafe_view``: torch's ``_reshape_view_helper`` over sizes whose every question is static
    (``-1`` inferred, the shape checked, dimensions skipped, split and merged left to right)."""
    tensor, target = args
    if kwargs or not target or tensor.dim() == 0 or any(type(d) not in (int, torch.SymInt) for d in target):
        raise Undecided
    numel = tensor.numel()
    if truths.eq(expr_of(numel), 0):
        raise Undecided
    sizes = list(target)
    unknown = [i for i, d in enumerate(sizes) if type(d) is int and d == -1]
    if len(unknown) > 1 or any(type(d) is int and d < -1 for d in sizes):
        raise Undecided
    known = _product([d for i, d in enumerate(sizes) if i not in unknown])
    if unknown:
        if truths.eq(expr_of(known), 0) or not truths.divides(expr_of(known), expr_of(numel)):
            raise Undecided
        sizes[unknown[0]] = numel // known
    elif not truths.eq(expr_of(numel), expr_of(known)):
        raise Undecided
    shape, strides = list(tensor.shape), list(tensor.stride())
    if is_contiguous(truths, [expr_of(d) for d in shape], [expr_of(d) for d in strides]):
        if len(sizes) == 1 and len(shape) > 1:
            return view_of(tensor, [numel], [1], tensor.storage_offset())
        if len(sizes) == 2 and len(shape) == 1:
            return view_of(tensor, sizes, [sizes[1], 1], tensor.storage_offset())
    changed = False
    index = 0
    for length in sizes:
        if index >= len(shape):  # a trailing unsqueeze: split the last dimension into (itself, 1)
            if not truths.eq(expr_of(length), 1):
                raise Undecided
            last = len(shape) - 1
            shape, strides = _split(shape, strides, last, shape[last])
            changed, index = True, index + 1
            continue
        if truths.eq(expr_of(length), expr_of(shape[index])):
            index += 1
            continue
        accumulated, end = shape[index], index
        while not truths.divides(expr_of(length), expr_of(accumulated)):
            end += 1
            if end >= len(shape):
                raise Undecided
            accumulated = accumulated * shape[end]
        if end != index:
            shape, strides = _collapse(truths, shape, strides, index, end)
            changed = True
        if not truths.eq(expr_of(accumulated), expr_of(length)):
            shape, strides = _split(shape, strides, index, length)
            changed = True
        index += 1
    while index < len(shape):  # a trailing squeeze
        if not truths.eq(expr_of(shape[index]), 1):
            raise Undecided
        del shape[index], strides[index]
        changed = True
    if not changed:
        return view_of(tensor, tensor.shape, tensor.stride(), tensor.storage_offset())
    return view_of(tensor, shape, strides, tensor.storage_offset())


def _split(shape: list[Any], strides: list[Any], dim: int, outer: Any) -> tuple[list[Any], list[Any]]:
    """torch's ``prims.split_dim``: dimension ``dim`` as (``outer``, the rest)."""
    inner = shape[dim] // outer
    return ([*shape[:dim], outer, inner, *shape[dim + 1:]],
            [*strides[:dim], strides[dim] * inner, strides[dim], *strides[dim + 1:]])


def _collapse(truths: Truths, shape: list[Any], strides: list[Any], start: int,
              end: int) -> tuple[list[Any], list[Any]]:
    """torch's ``prims.collapse_view`` of dimensions ``start..end`` where it is a view (else the reshape
    copies, which is not derived here)."""
    for index in range(end - 1, start - 1, -1):
        if not (truths.eq(expr_of(shape[index]), 1) or truths.eq(expr_of(shape[index + 1]), 1)
                or truths.eq(expr_of(strides[index]), expr_of(strides[index + 1] * shape[index + 1]))):
            raise Undecided
    stride = strides[end]
    for index in range(end - 1, start - 1, -1):
        if not truths.eq(expr_of(shape[index]), 1) and not truths.ge(expr_of(strides[index]), expr_of(stride)):
            stride = strides[index]
    length = shape[end]
    for index in range(end - 1, start - 1, -1):
        length = length * shape[index]
    return [*shape[:start], length, *shape[end + 1:]], [*strides[:start], stride, *strides[end + 1:]]


VIEWS = {
    aten.transpose.int: _transpose, aten.unsqueeze.default: _unsqueeze, aten.expand.default: _expand,
    aten.slice.Tensor: _slice, aten.view.default: _reshape, aten._unsafe_view.default: _reshape,
}
