"""Seed report 003: a MobileNetV3-style net for CIFAR-100 (32x32): SE blocks, hard-swish, inverted residuals.

The report lists each block's input and output shapes (batch 8): a 3x3 stem to 16 channels, eight inverted
residuals 16 -> 16 -> 24 -> 24 -> 40 -> 40 -> 80 -> 112 -> 160 with stride 2 in blocks 2, 4, 6 and 8, ReLU
and no SE in blocks 1-3, SE and hard-swish from block 4 on, a 1x1 conv to 960, global pooling and a 960 -> 100
classifier. It gives the expanded widths of blocks 2-4 only (64, 96, 96, i.e. expand ratio 4; block 4's SE
line, 96 -> 18 -> 72, contradicts itself) and neither kernel sizes nor the SE reduction. Its published
976,484 parameters (3814.391 kB of float32) and "flops = 11,776,320" therefore cannot be reproduced, and are
not claimed: this file fills the gaps with expand ratio 4 everywhere, 3x3 depthwise kernels and
torchvision's SqueezeExcitation with reduction 4, and reproduces the report's block output shapes.

The report also derives the saving of depthwise + pointwise over a standard conv, HWN(K² + M) / HWNK²M =
1/M + 1/K²; flopcalc derives the same from its formulas (``flopcalc.layers.conv.depthwise_separable_ratio``).

Run ``python examples/mobilenet_v3_style.py`` or
``flopcalc examples/mobilenet_v3_style.py:mobilenet_v3_style --input 3x32x32 --batch 8``.
"""

import torch
from torch import nn
from torchvision.ops import SqueezeExcitation

from flopcalc import analyze

INPUT = (8, 3, 32, 32)

BLOCKS = [
    # expanded width, out channels, stride, SE, activation: the report's blocks 1-8
    (16, 16, 1, False, nn.ReLU),
    (64, 24, 2, False, nn.ReLU),
    (96, 24, 1, False, nn.ReLU),
    (96, 40, 2, True, nn.Hardswish),
    (160, 40, 1, True, nn.Hardswish),
    (160, 80, 2, True, nn.Hardswish),
    (320, 112, 1, True, nn.Hardswish),
    (448, 160, 2, True, nn.Hardswish),
]


class InvertedResidual(nn.Module):
    """1x1 expand (skipped when the width stays), 3x3 depthwise, optional SE, linear 1x1 projection."""

    def __init__(
        self, in_channels: int, hidden: int, out_channels: int, stride: int, use_se: bool,
        activation: type[nn.Module],
    ):
        super().__init__()
        layers: list[nn.Module] = []
        if hidden != in_channels:
            layers += [nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), activation()]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            activation(),
            SqueezeExcitation(hidden, hidden // 4) if use_se else nn.Identity(),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.block = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_res_connect else out


def mobilenet_v3_style(num_classes: int = 100) -> nn.Module:
    """The report's CIFAR-100 network with the gaps filled as the module docstring says."""
    layers: list[nn.Module] = [
        nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(16), nn.Hardswish(),
    ]
    in_channels = 16
    for hidden, out_channels, stride, use_se, activation in BLOCKS:
        layers.append(InvertedResidual(in_channels, hidden, out_channels, stride, use_se, activation))
        in_channels = out_channels
    layers += [
        nn.Conv2d(in_channels, 960, 1, bias=False), nn.BatchNorm2d(960), nn.Hardswish(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(960, num_classes),
    ]
    return nn.Sequential(*layers)


if __name__ == "__main__":
    report = analyze(mobilenet_v3_style(), INPUT)
    blocks = [row for row in report.rows if row.type == "InvertedResidual"]
    for number, row in enumerate(blocks, start=1):
        print(f"block {number}: {'x'.join(map(str, row.output_shapes[0]))}")
    totals = report.totals
    print(f"params {totals.params:,} ({totals.param_bytes / 1024:.3f} kB); the report's 976,484 is not reproduced")
    print(f"MACs {totals.macs:,}, FLOPs {totals.flops:,} for a batch of {INPUT[0]}")
