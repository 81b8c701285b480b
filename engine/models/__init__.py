"""The classifiers a classify run trains from scratch: `build_model(name, num_classes, **kw)`.
Names and descriptions are in engine.config.registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.config.registry import CLASSIFIERS
from engine.models.base import Classifier


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable[..., Classifier]
    description: str


def _small_cnn(num_classes: int, **kw) -> Classifier:
    from engine.models.small_cnn import SmallCNN

    return SmallCNN(num_classes, **kw)


def _resnet(depth_name: str) -> Callable[..., Classifier]:
    def build(num_classes: int, **kw) -> Classifier:
        from engine.models.resnet import ResNet32

        return ResNet32(depth_name, num_classes, **kw)

    return build


_BUILDERS: dict[str, Callable[..., Classifier]] = {
    "small_cnn": _small_cnn,
    **{name: _resnet(name) for name in CLASSIFIERS if name != "small_cnn"},
}
# Names and descriptions live in the torch-free registry (engine.config.registry).
_REGISTRY: dict[str, ModelEntry] = {
    name: ModelEntry(name, _BUILDERS[name], description)
    for name, description in CLASSIFIERS.items()
}


def list_models() -> list[str]:
    return list(_REGISTRY)


def model_description(name: str) -> str:
    return _REGISTRY[name].description


def build_model(name: str, num_classes: int, **kw) -> Classifier:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(_REGISTRY)}")
    entry = _REGISTRY[name]
    return entry.build(num_classes, **kw)
