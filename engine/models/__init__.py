"""The classifiers a classify run trains from scratch: `build_model(name, num_classes, **kw)`.
Names, descriptions and builders are rows of engine.config.registry.CLASSIFIERS."""

from __future__ import annotations

from engine.config.registry import CLASSIFIERS
from engine.models.base import Classifier


def list_models() -> list[str]:
    return list(CLASSIFIERS)


def model_description(name: str) -> str:
    return CLASSIFIERS[name].description


def build_model(name: str, num_classes: int, **kw) -> Classifier:
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(CLASSIFIERS)}")
    return CLASSIFIERS[name].build(num_classes, **kw)
