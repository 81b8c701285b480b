"""Small data files the hostile-data tests write (tests/unit/hostile): PNGs, an image folder,
CIFAR-10 batches and few-shot lists."""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from engine.config import DataConfig, FewShotConfig


def png(path: Path, colour=(0, 0, 0), size=(8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def image_folder(root: Path, per_class: int = 3) -> Path:
    for c, name in enumerate(["cat", "dog"]):
        for i in range(per_class):
            png(root / name / f"{i}.png", (100 * c, i, 0))
    return root


def good_batch(n: int = 4) -> dict:
    return {b"data": np.zeros((n, 3072), np.uint8), b"labels": [i % 10 for i in range(n)]}


def write_cifar(root: Path, bad: dict | object, name: str = "data_batch_2") -> Path:
    """Six batches, all good but `name`, which holds `bad`."""
    root.mkdir(parents=True, exist_ok=True)
    for batch in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        with open(root / batch, "wb") as f:
            # protocol 4: in protocol 2 an empty array's bytes need a builtin the reader refuses
            pickle.dump(bad if batch == name else good_batch(), f, protocol=4)
    return root / name


TRAIN, TEST = ["n01", "n02", "n03"], ["n11", "n12"]


def write_lists(root: Path, per_class: int = 4) -> Path:
    """root/train.csv + root/train/*.png, root/val.csv + root/val/*.png."""
    for split, classes in (("train", TRAIN), ("val", TEST)):
        rows = [["id", "filename", "label"]]
        for c, name in enumerate(classes):
            for i in range(per_class):
                png(root / split / f"{name}_{i}.png", (40 * c, 10 * i, 0), size=(12, 12))
                rows.append([str(len(rows)), f"{name}_{i}.png", name])
        with open(root / f"{split}.csv", "w", newline="") as f:
            csv.writer(f).writerows(rows)
    return root


def fewshot_cfg(root: Path) -> FewShotConfig:
    return FewShotConfig(data=DataConfig(name="folder", path=str(root), image_size=12))
