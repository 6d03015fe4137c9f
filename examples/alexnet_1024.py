"""Seed report 002: AlexNet whose classifier is 9216-4096-1024-1000, counted by hand and with thop.

The report's hand count gives 45,442,856 parameters (its conv1 line has a typo: 3·11·11·64 + 64 is 23,296,
not 23,796) and thop prints "FLOPS: 698,533,568", which are in fact the multiply-accumulates of the five
convolutions and three linear layers without their biases, i.e. flopcalc's MACs.

Run ``python examples/alexnet_1024.py`` or ``flopcalc examples/alexnet_1024.py:alexnet_1024 --input 3x224x224``.
"""

from torch import nn

from flopcalc import analyze

INPUT = (1, 3, 224, 224)
PUBLISHED_PARAMS = 45_442_856
PUBLISHED_MACS = 698_533_568


def alexnet_1024(num_classes: int = 1000) -> nn.Module:
    """torchvision's AlexNet layout with the second fully connected layer narrowed from 4096 to 1024."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.AdaptiveAvgPool2d((6, 6)),
        nn.Flatten(),
        nn.Dropout(), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
        nn.Dropout(), nn.Linear(4096, 1024), nn.ReLU(inplace=True),
        nn.Linear(1024, num_classes),
    )


if __name__ == "__main__":
    totals = analyze(alexnet_1024(), INPUT).totals
    print(f"params {totals.params:,} (published {PUBLISHED_PARAMS:,})")
    print(f"MACs   {totals.macs:,} (published as thop's 'FLOPS' {PUBLISHED_MACS:,})")
    print(f"FLOPs  {totals.flops:,} (2 x MACs + {totals.other_ops:,} bias adds, ReLU and pooling ops)")
