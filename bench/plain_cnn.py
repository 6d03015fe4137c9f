"""A small CNN that is not from torchvision, for the start-up of ``flopcalc FILE:FACTORY`` (bench/startup.py):
this file imports torch alone, so that a fresh process building it pays for nothing else."""

from torch import nn


def plain_cnn(num_classes: int = 10) -> nn.Module:
    """Two conv-batchnorm-relu-pool stages and a linear head, for 3×64×64 inputs."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(64, num_classes),
    )
