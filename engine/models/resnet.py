"""ResNet-18/34/50 adapted to 32x32 inputs (seed 001): first conv 3x3 stride 1, no max-pool.

Subclassing torchvision's ResNet keeps its module names (`layer1`..`layer4`, `fc`), so
ImageNet state dicts and layer pickers see the familiar structure.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from engine.models.base import Classifier

_LAYERS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
}


class ResNet32(ResNet, Classifier):
    def __init__(self, depth_name: str, num_classes: int = 10) -> None:
        block, layers = _LAYERS[depth_name]
        super().__init__(block, layers, num_classes=num_classes)
        # 32x32 images: a 7x7 stride-2 conv and a max-pool would leave 8x8 after the stem.
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.maxpool = nn.Identity()
        self.num_features = self.fc.in_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 64, 32, 32)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, C, 4, 4)
        return torch.flatten(self.avgpool(x), 1)  # (B, C)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
