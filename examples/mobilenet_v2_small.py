"""Seed reports 004 and 000: slim MobileNetV2s (inverted residuals, linear bottlenecks) for small datasets.

Seed 004 takes torchvision's MobileNetV2 for Food-11 (11 classes), cuts the inverted residuals to six with
out-channels 16, 32, 32, 64, 64, 128 and expand ratio 1 in the last one, and reports 152,075 parameters.
That is all the report gives: the expand ratios of the middle blocks, the strides, the width of the first
and of the final 1x1 convolution and the input size are not stated, and dozens of choices give exactly
152,075 (e.g. first conv 32, expand ratios 1, 6, 6, 2, 1, 1 and a final 768-wide conv). So this file builds
what the text says on torchvision's defaults (first conv 32, expand ratio 6, final conv 1280) and does not
claim 152,075: it has 287,563 parameters, most of them in the final 128 -> 1280 conv (128·1280 + 2·1280).

Seed 000's MobileNetV2 (48x48 grey images, 7 classes, 365,272 parameters) lists only the inverted residual
block, which is torchvision's (1x1 expand, 3x3 depthwise, 1x1 linear projection, each with BatchNorm), so
its count cannot be reproduced either.

Run ``python examples/mobilenet_v2_small.py`` or
``flopcalc examples/mobilenet_v2_small.py:mobilenet_v2_small --input 3x224x224``.
"""

from torch import nn
from torchvision.models import MobileNetV2

from flopcalc import analyze

INPUT = (1, 3, 224, 224)

INVERTED_RESIDUALS = [
    # expand ratio t, out channels c, repeats n, stride s (torchvision's inverted_residual_setting)
    [1, 16, 1, 1],
    [6, 32, 1, 2],
    [6, 32, 1, 2],
    [6, 64, 1, 2],
    [6, 64, 1, 1],
    [1, 128, 1, 1],
]


def mobilenet_v2_small(num_classes: int = 11) -> nn.Module:
    """torchvision's MobileNetV2 with seed 004's six inverted residuals."""
    return MobileNetV2(num_classes=num_classes, inverted_residual_setting=INVERTED_RESIDUALS)


if __name__ == "__main__":
    totals = analyze(mobilenet_v2_small(), INPUT).totals
    print(f"params {totals.params:,} (seed 004's slimmer variant has 152,075; see the module docstring)")
    print(f"MACs {totals.macs:,}, FLOPs {totals.flops:,} at {'x'.join(map(str, INPUT))}")
