"""A small, fast CNN for live demos: trains to high accuracy on the digits in seconds on a CPU."""

from __future__ import annotations

import torch
from torch import nn

from engine.models.base import Classifier


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class SmallCNN(Classifier):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _block(in_channels, width),  # (B, w, H/2, W/2)
            _block(width, 2 * width),  # (B, 2w, H/4, W/4)
            _block(2 * width, 4 * width),  # (B, 4w, H/8, W/8)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = 4 * width
        self.fc = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)  # (B, 4w)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)


def build_small_cnn(name: str, num_classes: int, **kw) -> SmallCNN:
    """The registry's builder (engine.config.registry.CLASSIFIERS)."""
    return SmallCNN(num_classes, **kw)
