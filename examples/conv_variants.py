"""Seed report 004, question 4: a plain CNN vs depthwise & pointwise vs group convolution at about equal size.

The report trains three Food-11 (11 classes) CNNs of about 1 MB: plain convs (264,075 parameters, 4 conv
layers), depthwise & pointwise (270,639; 4 + 4 layers) and group conv (258,955; 5 layers), but does not give
their layers. The three nets here follow the same recipe, four 3x3 stages with BatchNorm, ReLU and 2x2 max
pooling, then global average pooling and a linear classifier, and are widened until their parameter counts
are about equal (242,955 / 254,377 / 246,283): at the same size, depthwise-separable and group convs afford
wider layers. The input size, 128x128, is an assumption.

For one layer the saving is a formula, not a measurement: depthwise + pointwise over a standard K×K conv
with M output channels costs 1/M + 1/K² (seed 003), and a G-group conv 1/G
(``flopcalc.layers.conv.depthwise_separable_ratio`` and ``group_ratio``).

Run ``python examples/conv_variants.py`` or e.g.
``flopcalc examples/conv_variants.py:group_cnn --input 3x128x128``.
"""

from collections.abc import Callable

from torch import nn

from flopcalc import analyze
from flopcalc.layers.conv import depthwise_separable_ratio, group_ratio
from flopcalc.printing import to_text

INPUT = (1, 3, 128, 128)
NUM_CLASSES = 11
GROUPS = 4


def _stage(conv: list[nn.Module], out_channels: int) -> list[nn.Module]:
    return [*conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True), nn.MaxPool2d(2)]


def _head(in_channels: int) -> list[nn.Module]:
    return [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, NUM_CLASSES)]


def plain_cnn(widths: tuple[int, ...] = (32, 64, 128, 128)) -> nn.Module:
    """Standard 3x3 convs."""
    layers: list[nn.Module] = []
    in_channels = 3
    for width in widths:
        layers += _stage([nn.Conv2d(in_channels, width, 3, padding=1)], width)
        in_channels = width
    return nn.Sequential(*layers, *_head(in_channels))


def depthwise_separable_cnn(widths: tuple[int, ...] = (64, 128, 256, 768)) -> nn.Module:
    """Each 3x3 conv split into a 3x3 depthwise conv (groups = in channels) and a 1x1 pointwise conv."""
    layers: list[nn.Module] = []
    in_channels = 3
    for width in widths:
        depthwise = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels)
        layers += _stage([depthwise, nn.Conv2d(in_channels, width, 1)], width)
        in_channels = width
    return nn.Sequential(*layers, *_head(in_channels))


def group_cnn(widths: tuple[int, ...] = (64, 128, 256, 256), groups: int = GROUPS) -> nn.Module:
    """3x3 group convs; the first stays standard because 3 input channels do not split into groups."""
    layers: list[nn.Module] = []
    in_channels = 3
    for index, width in enumerate(widths):
        conv = nn.Conv2d(in_channels, width, 3, padding=1, groups=1 if index == 0 else groups)
        layers += _stage([conv], width)
        in_channels = width
    return nn.Sequential(*layers, *_head(in_channels))


VARIANTS: dict[str, Callable[[], nn.Module]] = {
    "plain": plain_cnn, "depthwise & pointwise": depthwise_separable_cnn, "group": group_cnn,
}


if __name__ == "__main__":
    print(f"{'model':<22}{'params':>10}{'MACs':>15}{'FLOPs':>15}")
    for label, factory in VARIANTS.items():
        totals = analyze(factory(), INPUT).totals
        print(f"{label:<22}{totals.params:>10,}{totals.macs:>15,}{totals.flops:>15,}")
    print(f"per layer: depthwise & pointwise / standard = {to_text(depthwise_separable_ratio())}, "
          f"group / standard = {to_text(group_ratio())}")
