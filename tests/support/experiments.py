"""What the experiment-kind tests of both tiers share (tests/unit/experiments and
tests/integration/experiments; their conftest.py imports the fixtures): the SSL tests' striped
folder, a DeepGlobe-style folder, and tiny few-shot and segmentation configs."""

import numpy as np
import pytest
import torch
from PIL import Image

from engine.config import DataConfig, FewShotConfig, ModelConfig, SegmentConfig
from engine.data import landcover
from engine.data.landcover import labels_to_rgb

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """4 classes x 14 noisy 16x16 images in random colours, told apart by their pattern only
    (horizontal, vertical or diagonal stripes, none): not trivial for a kNN on random
    features. Class d is left out by the runs."""
    root = tmp_path_factory.mktemp("ssl-data")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16]
    patterns = {"a": (yy // 2) % 2, "b": (xx // 2) % 2, "c": ((xx + yy) // 3) % 2,
                "d": np.zeros((16, 16))}  # fmt: skip
    for name, pattern in patterns.items():
        (root / name).mkdir()
        for i in range(14):
            fg, bg = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
            pixels = np.where(pattern[..., None] == 1, fg, bg) + rng.normal(0, 20, (16, 16, 3))
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def fewshot_config(**overrides) -> FewShotConfig:
    """Digits at 28x28 (Conv-4: 28 -> 14 -> 7 -> 3 -> 1), 2 epochs of 5 episodes: seconds."""
    cfg = FewShotConfig(
        data=DataConfig(name="digits", image_size=28),
        epochs=2,
        episodes_per_epoch=5,
        val_episodes=5,
        test_episodes=20,
        test_shots=[1, 5],
        seed=0,
        device="cpu",
        snapshot_size=50,
        log_every=1,
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg.validate()


def segment_config(**overrides) -> SegmentConfig:
    cfg = SegmentConfig(
        data=DataConfig(name="landcover", image_size=64),
        model=ModelConfig(name="unet_small"),
        epochs=2,
        batch_size=16,
        seed=0,
        device="cpu",
        log_every=1,
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg.validate()


def write_pairs(folder, indices, size=64):
    folder.mkdir(parents=True)
    for i in indices:
        image, labels = landcover.synthetic_scene(i, size)
        Image.fromarray(image).save(folder / f"{i:04d}_sat.jpg")
        Image.fromarray(labels_to_rgb(labels)).save(folder / f"{i:04d}_mask.png")


@pytest.fixture(scope="module")
def deepglobe(tmp_path_factory):
    """A DeepGlobe-style folder: train/ (8 pairs) and validation/ (3), no test/."""
    root = tmp_path_factory.mktemp("deepglobe")
    write_pairs(root / "train", range(8))
    write_pairs(root / "validation", range(8, 11))
    return root
