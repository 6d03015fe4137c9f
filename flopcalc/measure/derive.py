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
from collections.abc import Iterator, Sequence
from typing import Any

import sympy as sp
import torch
from torch._ops import OpOverload
from torch._prims_common import make_contiguous_strides_for
from torch._subclasses.fake_tensor import FakeTensor, in_kernel_invocation_manager

from flopcalc.measure.derive_views import VIEWS
from flopcalc.measure.strides import (
    Truths, Undecided, broadcast, expanded_strides, expr_of, is_channels_last, is_contiguous, is_dense,
    physical_order, strides_in_order,
)

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


def _fresh(mode: Any, device: torch.device, sizes: Sequence[Any], strides: Sequence[Any],
           dtype: torch.dtype) -> FakeTensor:
    """A new fake tensor of this metadata over a new dense storage."""
    with in_kernel_invocation_manager(mode):
        flat = torch.empty((math.prod(sizes),), dtype=dtype, device="meta")
        elem = flat.as_strided(sizes, strides)
    return FakeTensor(mode, elem, device)


def _symbolic(tensors: Sequence[FakeTensor], args: Sequence[Any]) -> bool:
    """Whether torch's fake kernel sees symbolic sizes; without, it runs other (C++ meta) kernels, whose strides
    for size-1 dimensions can differ from the rules here, and which are fast anyway."""
    return any(t._has_symbolic_sizes_strides for t in tensors) or any(
        type(a) is torch.SymInt or type(a) in (list, tuple) and any(type(d) is torch.SymInt for d in a) for a in args
    )


def _unary_strides(truths: Truths, tensor: FakeTensor) -> Any:
    """torch's ``compute_elementwise_output_strides`` of one tensor: its own strides where it is dense, else
    dense strides in its dimensions' order (``empty_like``)."""
    shape, strides = [expr_of(d) for d in tensor.shape], [expr_of(d) for d in tensor.stride()]
    if is_dense(truths, shape, strides):
        return tensor.stride()
    return strides_in_order(tensor.shape, physical_order(truths, shape, [strides]))


_DTYPES: dict[Any, torch.dtype] = {}
"""Output dtype per op and argument dtypes, ranks and scalars (the same in every pass); bounded."""


class DerivedOutputs:
    """The derivations of one pass, with the static answers about its ShapeEnv memoised."""

    def __init__(self) -> None:
        self._truths: Truths | None = None

    def output(self, func: OpOverload, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        """``func``'s output, derived, or ``None`` when the op must run its kernel."""
        if func in _ELEMENTWISE:
            rule = self._elementwise
        elif func is aten._to_copy.default:
            rule = self._to_copy
        elif func in _SAME_SHAPE:
            rule = self._same_shape
        else:
            rule = VIEWS.get(func)
            if rule is None:
                return None
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if not tensors or any(type(t) is not FakeTensor for t in tensors):
            return None
        mode = tensors[0].fake_mode
        if mode.shape_env is None or any(t.fake_mode is not mode for t in tensors) or not _symbolic(tensors, args):
            return None
        truths = self._truths
        if truths is None or truths.shape_env is not mode.shape_env:
            truths = self._truths = Truths(mode.shape_env)
        try:
            return rule(truths, func, args, kwargs)
        except Undecided:
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
                    raise Undecided from None
            if not isinstance(out, torch.Tensor):
                raise Undecided
            if len(_DTYPES) >= 4096:
                _DTYPES.clear()
            dtype = _DTYPES[key] = out.dtype
        return dtype

    def _elementwise(self, truths: Truths, func: OpOverload, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        if kwargs or any(not isinstance(a, torch.Tensor) and type(a) not in _SCALARS for a in args):
            raise Undecided
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        device = tensors[0].fake_device
        if any(t.fake_device != device for t in tensors) or device.type == "cpu":
            raise Undecided  # cpu scalar tensors are exempt from torch's stride rule: not handled here
        dtype = self._dtype(func, args, kwargs)
        shapes = [tuple(expr_of(d) for d in t.shape) for t in tensors]
        all_strides = [tuple(expr_of(d) for d in t.stride()) for t in tensors]
        out_sizes = broadcast(truths, shapes, [t.shape for t in tensors])
        out_shape = [expr_of(d) for d in out_sizes]
        if func in _FAST_BINARY and any(
            len(shape) == len(out_shape) and all(map(truths.eq, shape, out_shape)) for shape in shapes
        ):  # fake tensors' fast path, taken where one operand has the output's shape
            if all(is_contiguous(truths, shape, s) for shape, s in zip(shapes, all_strides)):
                return _fresh(tensors[0].fake_mode, device, out_sizes, make_contiguous_strides_for(out_sizes), dtype)
            if all(is_channels_last(truths, shape, s) for shape, s in zip(shapes, all_strides)):
                raise Undecided
        if len(tensors) == 1:
            return _fresh(tensors[0].fake_mode, device, out_sizes, _unary_strides(truths, tensors[0]), dtype)
        expanded = [expanded_strides(truths, shape, out_shape, s) for shape, s in zip(shapes, all_strides)]
        order = physical_order(truths, out_shape, expanded)
        return _fresh(tensors[0].fake_mode, device, out_sizes, strides_in_order(out_sizes, order), dtype)

    def _to_copy(self, truths: Truths, func: OpOverload, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        dtype = kwargs.get("dtype")
        if len(args) != 1 or set(kwargs) != {"dtype"} or not isinstance(dtype, torch.dtype):
            raise Undecided
        (tensor,) = args
        if dtype == tensor.dtype or dtype.is_complex or tensor.dtype.is_complex:
            raise Undecided
        return _fresh(tensor.fake_mode, tensor.fake_device, tensor.shape, _unary_strides(truths, tensor), dtype)

    def _same_shape(self, truths: Truths, func: OpOverload, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        tensor = args[0]
        if kwargs or any(type(a) not in _SCALARS and a is not None for a in args[1:]):
            raise Undecided
        if func in (aten._softmax.default,) and (len(args) < 3 or args[2]):
            raise Undecided  # half_to_float changes the dtype
        if func is aten._safe_softmax.default and len(args) > 2 and args[2] is not None:
            raise Undecided
        if func in (aten._safe_softmax.default, aten._softmax.default) and not tensor.dtype.is_floating_point:
            raise Undecided
        shape, strides = [expr_of(d) for d in tensor.shape], [expr_of(d) for d in tensor.stride()]
        if len(shape) < 2 or not all(
            truths.eq(s, e) for s, e in zip(strides, (expr_of(d) for d in make_contiguous_strides_for(tensor.shape)))
        ):
            raise Undecided  # only the plainly contiguous layout
        return _fresh(tensor.fake_mode, tensor.fake_device, tensor.shape, tensor.stride(), tensor.dtype)


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
    nbytes = sp.expand(sp.sympify(expr_of(out.untyped_storage().nbytes())))
    return (type(out), tuple(expr_of(d) for d in out.shape), tuple(expr_of(d) for d in out.stride()),
            expr_of(out.storage_offset()), out.dtype, out.device, nbytes)


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
