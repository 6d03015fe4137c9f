"""Seed report 004: the teacher net of a knowledge-distillation homework, torchvision's ResNet18 for Food-11.

The report gives 11,182,155 parameters for ``resnet18(num_classes=11)``: ResNet18's 11,689,512 with the
1000-way classifier (512·1000 + 1000) replaced by an 11-way one (512·11 + 11). The report does not give the
input size; 224x224 (torchvision's) is used here, so MACs are flopcalc's, not the report's.

Run ``python examples/resnet18_food11.py`` or
``flopcalc examples/resnet18_food11.py:resnet18_food11 --input 3x224x224``.
"""

from torch import nn
from torchvision.models import resnet18

from flopcalc import analyze

INPUT = (1, 3, 224, 224)
PUBLISHED_PARAMS = 11_182_155


def resnet18_food11(num_classes: int = 11) -> nn.Module:
    """torchvision's ResNet18, randomly initialised, with an ``num_classes``-way classifier."""
    return resnet18(num_classes=num_classes)


if __name__ == "__main__":
    totals = analyze(resnet18_food11(), INPUT).totals
    print(f"params {totals.params:,} (published {PUBLISHED_PARAMS:,})")
    print(f"MACs {totals.macs:,}, FLOPs {totals.flops:,} at {'x'.join(map(str, INPUT))} (not published)")
