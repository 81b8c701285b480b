"""Engine fixtures shared by the unit and integration tiers (their conftest.py imports them):
a private weight cache (created), a cached random ResNet-18 "ImageNet" file, a tiny two-class
folder and a transfer config on it."""

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from engine.config import DataConfig, ModelConfig, TransferConfig
from engine.models.backbones import get_backbone


@pytest.fixture
def cache(weight_cache):
    weight_cache.mkdir()
    return weight_cache


@pytest.fixture
def resnet18_cached(cache):
    torch.manual_seed(1)
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, cache / get_backbone("resnet18").weight_file().filename)


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    """2 classes x 12 noisy solid-colour 16x16 images."""
    root = tmp_path_factory.mktemp("pets")
    rng = np.random.default_rng(0)
    for c, name in enumerate(["cat", "dog"]):
        (root / name).mkdir()
        for i in range(12):
            pixels = rng.normal(80 + 100 * c, 30, (16, 16, 3)).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def base(pets) -> TransferConfig:
    return TransferConfig(
        model=ModelConfig(name="resnet18"),
        data=DataConfig(name="folder", path=str(pets), image_size=16),
        epochs=1, batch_size=8, device="cpu", snapshot_size=10, seed=3,
    ).validate()  # fmt: skip
