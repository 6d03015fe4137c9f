"""Ops that move, view or create data without arithmetic: declared free, each with its reason."""

from __future__ import annotations

import torch

from flopcalc.measure.core import zero_cost

aten = torch.ops.aten
prims = torch.ops.prim

zero_cost(
    "view or metadata change: no data is touched",
    [aten.view, aten._unsafe_view, aten.reshape, aten.permute, aten.transpose, aten.t, aten.expand, aten.squeeze,
     aten.unsqueeze, aten.select, aten.slice, aten.as_strided, aten.split, aten.split_with_sizes,
     aten.unsafe_split, aten.unbind, aten.chunk, aten.alias, aten.detach, aten.lift_fresh, aten.unfold,
     aten.diagonal, aten.narrow, aten.view_as_real, aten.view_as_complex, prims.device, aten.sym_size,
     aten.sym_stride, aten.sym_numel, aten.sym_storage_offset, aten.t_, aten.transpose_, aten.squeeze_,
     aten.unsqueeze_, aten.resize_, aten.as_strided_],
)
zero_cost(
    "data movement: copies, concatenation, padding and layout changes do no arithmetic",
    [aten.clone, aten.contiguous, aten.copy_, aten._to_copy, aten.cat, aten.stack, aten.constant_pad_nd,
     aten.reflection_pad1d, aten.reflection_pad2d, aten.reflection_pad3d, aten.replication_pad1d,
     aten.replication_pad2d, aten.replication_pad3d, aten._pad_circular, aten.repeat, aten.roll, aten.flip,
     aten.index, aten.index_select, aten.gather, aten.channel_shuffle, aten.pixel_shuffle,
     aten.pixel_unshuffle, aten.native_channel_shuffle, aten._reshape_alias, aten.masked_fill,
     aten.masked_fill_, aten.where, aten.tril, aten.triu, aten.fill_],
)
zero_cost(
    "tensor creation: no arithmetic on the model's data",
    [aten.empty, aten.empty_like, aten.empty_strided, aten.zeros, aten.zeros_like, aten.ones, aten.ones_like,
     aten.full, aten.full_like, aten.arange, aten.new_empty, aten.new_zeros, aten.new_ones, aten.new_full,
     aten.scalar_tensor, aten.zero_, aten.rand, aten.randn, aten.rand_like, aten.randn_like,
     aten.new_empty_strided, aten._local_scalar_dense, aten.eye, aten.linspace],
)
zero_cost(
    "profiler annotation (record_function, emitted by DataParallel): marks a region, no arithmetic",
    [torch.ops.profiler._record_function_enter, torch.ops.profiler._record_function_enter_new,
     torch.ops.profiler._record_function_exit],
)
zero_cost("inference dropout: identity (training-mode dropout counts its mask multiply)", [aten.dropout])
