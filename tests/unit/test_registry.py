"""The torch-free registry (engine.config.registry) and what engine.models builds: the same
names, and the weight files the registry names are torchvision's own."""

from __future__ import annotations

import pytest

from engine.config import registry
from engine.models import build_model, list_models, model_description
from engine.models.backbones import BACKBONES
from engine.models.protonet import DISTANCES
from engine.models.segmentation import SEGMENTATION_MODELS


def test_every_registered_network_has_a_builder_and_no_builder_is_unregistered():
    assert list_models() == list(registry.CLASSIFIERS)
    assert list(BACKBONES) == list(registry.BACKBONES)
    assert list(SEGMENTATION_MODELS) == list(registry.SEGMENTATION)
    assert DISTANCES == registry.DISTANCES
    for name, description in registry.CLASSIFIERS.items():
        assert model_description(name) == description
    for name in registry.SEGMENTATION:
        assert SEGMENTATION_MODELS[name].backbone == registry.SEGMENTATION[name].backbone


@pytest.mark.parametrize("name", [n for n, b in registry.BACKBONES.items() if b.enum])
def test_a_backbone_s_weight_file_is_torchvision_s(name):
    b = registry.BACKBONES[name]
    wf = BACKBONES[name].weight_file()  # read from torchvision's enum
    assert (b.file, round(b.megabytes, 3)) == (wf.filename, round(wf.megabytes, 3))
    assert b.weights_path() == wf.path()


def test_weights_are_found_where_the_registry_says(weight_cache):
    b = registry.BACKBONES["resnet18"]
    assert not b.weights_available() and "resnet18-f37072fd.pth" in b.weights_whereabouts()
    weight_cache.mkdir(parents=True)
    (weight_cache / b.file).write_bytes(b"x")
    assert b.weights_available()  # the control: the same check sees a file that is there


def test_a_registered_classifier_builds():
    assert build_model("small_cnn", 3)(__import__("torch").zeros(1, 3, 32, 32)).shape == (1, 3)


def test_the_registry_imports_without_torch():
    import subprocess
    import sys

    code = "import sys, engine.config.registry; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
