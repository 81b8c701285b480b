"""ResNet-18/34/50, ResNeXt-18/50 and the dual-path ResNet-18 of the Tsinghua DL HW2, for
32x32 inputs (DLCV HW1 problem 1): first conv 3x3 stride 1; the max-pool as the model asks (`max_pool`).

Subclassing torchvision's ResNet keeps its module names (`layer1`..`layer4`, `fc`), so
ImageNet state dicts and layer pickers see the familiar structure. The new blocks take
torchvision's block arguments, so its `_make_layer` builds them.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from engine.models.base import Classifier


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
             dilation: int = 1) -> list[nn.Module]:  # fmt: skip
    pad = dilation * (kernel - 1) // 2
    return [nn.Conv2d(cin, cout, kernel, stride, pad, dilation=dilation, groups=groups,
                      bias=False), nn.BatchNorm2d(cout)]  # fmt: skip


class GroupedBasicBlock(nn.Module):
    """A BasicBlock whose two 3x3 convolutions are both split into `groups` groups, the inner
    width `planes * base_width / 64 * groups` (`resnext18_basic`: this workbench's earlier
    "ResNeXt-18"). There is no 1x1 convolution: channel groups never exchange information
    inside a stage, so it is not ResNeXt's aggregated transform; `resnext18` is."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64,
                 dilation=1, norm_layer=None) -> None:  # fmt: skip
        super().__init__()
        width = int(planes * base_width / 64) * groups
        self.body = nn.Sequential(
            *_conv_bn(inplanes, width, 3, stride, groups), nn.ReLU(inplace=True),
            *_conv_bn(width, planes, 3, 1, groups),
        )  # fmt: skip
        self.downsample = downsample
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.body(x) + shortcut)


class DualPathBlock(nn.Module):
    """The Tsinghua DL HW2's DLResNet block: a BasicBlock (two 3x3 convolutions) beside a second path of
    two `second_kernel` convolutions (5x5, or "dilated": 3x3 with dilation 2, the same field
    of view for fewer weights). `merge`: "add" the two paths, or "concat" them and project
    back to `planes` with a 1x1 convolution. Same width as a 3x3 path would only add
    channels; another kernel sees another scale."""

    expansion = 1
    merge = "add"
    second_kernel = "5x5"

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64,
                 dilation=1, norm_layer=None) -> None:  # fmt: skip
        super().__init__()
        kernel, dil = (3, 2) if self.second_kernel == "dilated" else (5, 1)
        self.path3 = nn.Sequential(
            *_conv_bn(inplanes, planes, 3, stride), nn.ReLU(inplace=True),
            *_conv_bn(planes, planes, 3),
        )  # fmt: skip
        self.path2 = nn.Sequential(
            *_conv_bn(inplanes, planes, kernel, stride, dilation=dil), nn.ReLU(inplace=True),
            *_conv_bn(planes, planes, kernel, dilation=dil),
        )  # fmt: skip
        self.project = _conv_bn(2 * planes, planes, 1) if self.merge == "concat" else None
        if self.project is not None:
            self.project = nn.Sequential(*self.project)
        self.downsample = downsample
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        a, b = self.path3(x), self.path2(x)  # (B, planes, H', W') each
        out = a + b if self.project is None else self.project(torch.cat([a, b], 1))
        return self.relu(out + shortcut)


class DualPathConcatBlock(DualPathBlock):
    merge = "concat"


class DualPathDilatedBlock(DualPathBlock):
    second_kernel = "dilated"


# name -> (block, blocks per stage, torchvision's groups, width_per_group)
_LAYERS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2], 1, 64),
    "resnet34": (BasicBlock, [3, 4, 6, 3], 1, 64),
    "resnet50": (Bottleneck, [3, 4, 6, 3], 1, 64),
    # ResNeXt's bottleneck (1x1 reduce, grouped 3x3, 1x1 expand), 32x4d, two blocks a stage.
    "resnext18": (Bottleneck, [2, 2, 2, 2], 32, 4),
    "resnext18_basic": (GroupedBasicBlock, [2, 2, 2, 2], 32, 4),  # no 1x1 mixing
    "resnext50": (Bottleneck, [3, 4, 6, 3], 32, 4),  # torchvision's resnext50_32x4d
    "dlresnet18": (DualPathBlock, [2, 2, 2, 2], 1, 64),
    "dlresnet18_cat": (DualPathConcatBlock, [2, 2, 2, 2], 1, 64),
    "dlresnet18_dilated": (DualPathDilatedBlock, [2, 2, 2, 2], 1, 64),
}


class ResNet32(ResNet, Classifier):
    def __init__(
        self, depth_name: str, num_classes: int = 10, groups: int | None = None,
        width_per_group: int | None = None, max_pool: bool = False,
    ) -> None:  # fmt: skip
        block, layers, default_groups, default_width = _LAYERS[depth_name]
        super().__init__(
            block, layers, num_classes=num_classes, groups=groups or default_groups,
            width_per_group=width_per_group or default_width,
        )  # fmt: skip
        # 32x32 images: a 7x7 stride-2 conv and a max-pool would leave 8x8 after the stem. The
        # 3x3 stride-1 conv1 always; the max-pool kept when asked (DLCV HW1's ResNet-50 for
        # 32x32 changes conv1 only: 16x16 after the stem).
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        if not max_pool:
            self.maxpool = nn.Identity()
        self.num_features = self.fc.in_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, 32 or 16, ...)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, C, 4, 4)
        return torch.flatten(self.avgpool(x), 1)  # (B, C)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
