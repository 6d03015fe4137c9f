"""PixelShuffle, PixelUnshuffle and ChannelShuffle: no arithmetic forward or backward, torch's output shapes,
and the bytes their copy moves."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import flopcalc
from flopcalc import Status

LAYERS = [
    (nn.PixelShuffle(2), (2, 8, 3, 5), (2, 2, 6, 10)),  # C·r² = 8 → C = 2; H·r, W·r
    (nn.PixelShuffle(3), (9, 2, 2), (1, 6, 6)),  # unbatched
    (nn.PixelUnshuffle(2), (2, 3, 4, 6), (2, 12, 2, 3)),  # C·r² = 3·4 = 12; H/r, W/r
    (nn.PixelUnshuffle(2), (2, 1, 2, 4, 4), (2, 1, 8, 2, 2)),  # two leading dimensions
    (nn.ChannelShuffle(2), (2, 4, 3, 3), (2, 4, 3, 3)),
]


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("layer, shape, out_shape", LAYERS)
def test_rearrangements_cost_nothing_forward_and_backward(layer, shape, out_shape, device):
    with torch.device(device):
        model = nn.Sequential(nn.Conv2d(shape[-3], shape[-3], 1) if len(shape) == 4 else nn.Identity(), layer)
        x = torch.randn(shape, requires_grad=True)
    report = flopcalc.analyze(model, x, device=device, backward=True)
    row = report.row("1")
    assert row.bound is not None and row.status is Status.MATCH
    assert tuple(row.output_shapes[0]) == out_shape
    assert (row.macs, dict(row.ops), row.params) == (0, {}, 0)
    b = row.backward
    assert b.status is Status.MATCH
    assert (b.grad_input.macs, dict(b.grad_input.ops), b.grad_weight.macs, dict(b.grad_weight.ops)) == (0, {}, 0, {})
    assert (b.measured.macs, dict(b.measured.ops)) == (0, {})


def test_pixel_shuffle_moves_every_element_once():
    """The roofline charges the copy: 1·8·4·4 float32 read (512 B) and written (512 B)."""
    report = flopcalc.analyze(nn.Sequential(nn.PixelShuffle(2)), (1, 8, 4, 4), hardware="h100-sxm")
    assert report.row("0").roofline.bytes == 1 * 8 * 4 * 4 * 4 * 2  # 1,024
