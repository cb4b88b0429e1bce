"""The CNNs for 1×64×64 grayscale signs.

`small` (the CPU default, ~0.3 M parameters, ~0.02 GFLOPs per image): compact's layout after a 4×4, stride-4
stem, the fastest to the gate on two CPU cores (bench/train.py).
`compact` (~0.3 M parameters, ~0.09 GFLOPs per image): a stride-2 stem so every stage runs at
32×32 or less, three VGG-style stages, global average pooling.
`wide` (~2.4 M parameters, ~0.9 GFLOPs): a ResNet-9-style net at full resolution with residual
blocks, for GPUs, where the extra width costs little time.

All are built by name from `build_model`, which the predictor also uses with the name stored in the
package's config.json.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def conv_bn(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class CompactCNN(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 1, dropout: float = 0.3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(in_channels, 24, stride=2),  # 64 → 32
            conv_bn(24, 32),
            conv_bn(32, 32),
            nn.MaxPool2d(2),  # → 16
            conv_bn(32, 64),
            conv_bn(64, 64),
            nn.MaxPool2d(2),  # → 8
            conv_bn(64, 128),
            conv_bn(128, 128),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(128, num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


class SmallCNN(nn.Module):
    """compact's stages at a quarter of the resolution: a 4×4, stride-4 stem (every pixel seen once), then 16×16,
    8×8 and 4×4. About a sixth of compact's multiply-adds, so three times the images per CPU-second in training,
    and it reaches the gate on the demo set in 7 epochs (bench/train.py)."""

    def __init__(self, num_classes: int, in_channels: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 24, 4, stride=4, bias=False),  # 64 → 16
            nn.BatchNorm2d(24),
            nn.ReLU(inplace=True),
            conv_bn(24, 32),
            conv_bn(32, 32),
            nn.MaxPool2d(2),  # → 8
            conv_bn(32, 64),
            conv_bn(64, 64),
            nn.MaxPool2d(2),  # → 4
            conv_bn(64, 128),
            conv_bn(128, 128),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(128, num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels), conv_bn(channels, channels))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features + self.body(features)


class WideCNN(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 1, dropout: float = 0.2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(in_channels, 32),  # 64×64
            conv_bn(32, 64),
            nn.MaxPool2d(2),
            Residual(64),  # → 32
            conv_bn(64, 128),
            nn.MaxPool2d(2),
            Residual(128),  # → 16
            conv_bn(128, 256),
            nn.MaxPool2d(2),
            Residual(256),  # → 8
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(256, num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


ARCHITECTURES: dict[str, Callable[[int], nn.Module]] = {
    "compact": lambda num_classes: CompactCNN(num_classes),
    "small": lambda num_classes: SmallCNN(num_classes),
    "wide": lambda num_classes: WideCNN(num_classes),
}


def build_model(name: str, num_classes: int) -> nn.Module:
    """A freshly initialised model; raises ValueError naming the known architectures."""
    try:
        factory = ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(sorted(ARCHITECTURES))}") from None
    return factory(num_classes)


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
