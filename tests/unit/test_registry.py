"""The torch-free registry (engine.config.registry) and what engine.models builds: the same
names, and the weight files the registry names are torchvision's own."""

from __future__ import annotations

import pytest

from engine.config import registry
from engine.models.backbones import BACKBONES
from engine.models.protonet import DISTANCES

ROWS = [*registry.CLASSIFIERS.values(), *registry.BACKBONES.values(),
        *registry.SEGMENTATION.values()]  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{type(r).__name__}:{r.name}")
def test_every_registered_network_names_a_builder_that_exists(row):
    assert callable(registry.load_builder(row.builder))


def test_a_builder_that_does_not_exist_fails_on_build_not_on_import():
    row = registry.Network("x", "a typo", "engine.models.resnet:NoSuchNet")
    with pytest.raises(AttributeError, match="NoSuchNet"):
        row.build(3)


def test_the_torch_side_of_a_backbone_is_its_registry_row():
    assert list(BACKBONES) == list(registry.BACKBONES)
    for name, row in registry.BACKBONES.items():
        assert vars(BACKBONES[name]) == vars(row)
    assert DISTANCES == registry.DISTANCES
    for row in registry.SEGMENTATION.values():
        assert row.backbone is None or row.backbone in registry.BACKBONES


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


@pytest.mark.parametrize("name", ["small_cnn", "resnet18"])
def test_a_registered_classifier_builds(name):
    from engine.models import build_model

    assert build_model(name, 3)(__import__("torch").zeros(1, 3, 32, 32)).shape == (1, 3)


def test_the_registry_imports_without_torch():
    import subprocess
    import sys

    code = "import sys, engine.config.registry; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
