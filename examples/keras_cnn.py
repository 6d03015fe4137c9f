"""Seed report 001: the Keras CNN for 48x48 grey faces (7 classes), translated to PyTorch.

The report lists the Keras code and ``model.summary()``: total 4,746,471 = trainable 4,741,415 +
non-trainable 5,056. ``filt_size`` is not shown; 3x3 is the size that reproduces the totals. Keras' 'same'
padding is ``padding=1`` for a 3x3 kernel. Keras counts BatchNorm's moving mean and variance as
non-trainable parameters; PyTorch keeps them as buffers, which flopcalc's ``non_trainable_params`` adds back
(2 x (32 + 64 + 128 + 256 + 1024 + 1024) = 5,056). Dropout and softmax are kept so that the layer list reads
like the Keras one; at inference Dropout is free.

Run ``python examples/keras_cnn.py`` or ``flopcalc examples/keras_cnn.py:keras_cnn --input 1x48x48``.
"""

from torch import nn

from flopcalc import analyze

INPUT = (1, 1, 48, 48)
PUBLISHED_TRAINABLE = 4_741_415
PUBLISHED_NON_TRAINABLE = 5_056
PUBLISHED_TOTAL = 4_746_471


def _conv_stage(in_channels: int, widths: list[int]) -> list[nn.Module]:
    """3x3 'same' convolutions with ReLU, then BatchNorm, 2x2 max pooling and dropout, as in the Keras code."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU()]
        in_channels = width
    return [*layers, nn.BatchNorm2d(in_channels), nn.MaxPool2d(2), nn.Dropout(0.5)]


def keras_cnn(num_classes: int = 7) -> nn.Module:
    """Four conv stages (48 -> 24 -> 12 -> 6 -> 3 pixels) and three dense layers, 256·3·3 = 2304 features."""
    return nn.Sequential(
        *_conv_stage(1, [32, 32]),
        *_conv_stage(32, [64, 64]),
        *_conv_stage(64, [128, 128, 128]),
        *_conv_stage(128, [256, 256]),
        nn.Flatten(),
        nn.Linear(256 * 3 * 3, 1024), nn.ReLU(), nn.BatchNorm1d(1024), nn.Dropout(0.5),
        nn.Linear(1024, 1024), nn.ReLU(), nn.BatchNorm1d(1024), nn.Dropout(0.5),
        nn.Linear(1024, num_classes),
        nn.Softmax(dim=1),
    )


if __name__ == "__main__":
    totals = analyze(keras_cnn(), INPUT).totals
    print(f"trainable params     {totals.trainable_params:,} (published {PUBLISHED_TRAINABLE:,})")
    print(f"non-trainable params {totals.non_trainable_params:,} (published {PUBLISHED_NON_TRAINABLE:,})")
    print(f"Keras total          {totals.keras_total_params:,} (published {PUBLISHED_TOTAL:,})")
    print(f"MACs {totals.macs:,}, FLOPs {totals.flops:,} (not published)")
