"""Model registry: `build_model(name, num_classes, pretrained=False, **kw) -> Classifier`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.models.base import Classifier


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable[..., Classifier]
    description: str
    pretrained_available: bool = False


def _small_cnn(num_classes: int, **kw) -> Classifier:
    from engine.models.small_cnn import SmallCNN

    return SmallCNN(num_classes, **kw)


def _resnet(depth_name: str) -> Callable[..., Classifier]:
    def build(num_classes: int, **kw) -> Classifier:
        from engine.models.resnet import ResNet32

        return ResNet32(depth_name, num_classes, **kw)

    return build


_REGISTRY: dict[str, ModelEntry] = {
    e.name: e
    for e in [
        ModelEntry("small_cnn", _small_cnn, "3-block CNN, 16-32-64 filters; the fast demo model"),
        ModelEntry("resnet18", _resnet("resnet18"), "ResNet-18 for 32x32 (3x3 stem, no max-pool)"),
        ModelEntry("resnet34", _resnet("resnet34"), "ResNet-34 for 32x32 (3x3 stem, no max-pool)"),
        ModelEntry("resnet50", _resnet("resnet50"), "ResNet-50 for 32x32 (3x3 stem, no max-pool)"),
        ModelEntry(
            "resnext18",
            _resnet("resnext18"),
            "ResNeXt-18 for 32x32: BasicBlocks with grouped 3x3 convs (32 groups x 4)",
        ),
        ModelEntry("resnext50", _resnet("resnext50"), "ResNeXt-50 32x4d (torchvision's) for 32x32"),
        ModelEntry(
            "dlresnet18",
            _resnet("dlresnet18"),
            "seed 004's dual-path ResNet-18: a 3x3 and a 5x5 path per block, added",
        ),
        ModelEntry(
            "dlresnet18_cat",
            _resnet("dlresnet18_cat"),
            "dual-path ResNet-18, the paths concatenated and projected by a 1x1 conv",
        ),
        ModelEntry(
            "dlresnet18_dilated",
            _resnet("dlresnet18_dilated"),
            "dual-path ResNet-18, the second path a dilated 3x3 (5x5 field, fewer weights)",
        ),
    ]
}


def list_models() -> list[str]:
    return list(_REGISTRY)


def model_description(name: str) -> str:
    return _REGISTRY[name].description


def build_model(name: str, num_classes: int, pretrained: bool = False, **kw) -> Classifier:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(_REGISTRY)}")
    entry = _REGISTRY[name]
    if pretrained and not entry.pretrained_available:
        raise ValueError(f"no pretrained weights are available for {name!r}; train it from scratch")
    return entry.build(num_classes, **kw)
