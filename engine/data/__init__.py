"""Datasets and loaders: the embedded default and the real formats that users bring."""

from __future__ import annotations

import numpy as np
import torch

from engine.config import DataConfig
from engine.data.datasets import DataError, ImageSet, Splits, _split, stratified_splits
from engine.data.loader import BatchLoader, FeatureLoader, random_crop_flip
from engine.data.sources import (
    check_source,
    presplit_folders,
    read_cifar10,
    read_digits,
    read_image_folder,
    read_prefixed,
)

__all__ = [
    "BatchLoader",
    "FeatureLoader",
    "DataError",
    "check_source",
    "ImageSet",
    "Splits",
    "load_dataset",
    "random_crop_flip",
]


def load_dataset(cfg: DataConfig) -> Splits:
    """Read the dataset that `cfg` names and split it (fixed, stratified, seeded)."""
    size, fractions = cfg.image_size, (cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    if cfg.name == "digits":
        x, y, classes = read_digits(size)
        return stratified_splits(x, y, classes, "digits (scikit-learn)", *fractions)
    if cfg.name == "folder" and (folders := presplit_folders(cfg.path)) is not None:
        return _presplit(folders, size, fractions)
    if cfg.name == "folder":
        x, y, classes = read_image_folder(cfg.path, size)
        return stratified_splits(x, y, classes, f"image folder {cfg.path}", *fractions)
    if cfg.name == "prefixed":
        x, y, classes = read_prefixed(cfg.path, size)
        return stratified_splits(x, y, classes, f"labelled files in {cfg.path}", *fractions)
    if cfg.name == "cifar10":
        x, y, tx, ty, classes = read_cifar10(cfg.path, size)
        test = ImageSet(tx, ty, torch.arange(len(y), len(y) + len(ty)))
        return stratified_splits(x, y, classes, f"CIFAR-10 {cfg.path}", *fractions, test=test)
    raise DataError(f"unknown dataset {cfg.name!r}")


def _presplit(folders: dict, size: int, fractions: tuple[float, float, int]) -> Splits:
    """train/ and val/ as given; test/ when present, else a stratified part of train/."""
    x, y, classes = read_image_folder(folders["train"], size)
    vx, vy, _ = read_image_folder(folders["val"], size, classes)
    n, nv = len(y), len(vy)
    val = ImageSet(vx, vy, torch.arange(n, n + nv))
    source = f"image folders {folders['train'].parent} (train/, val/"
    if "test" in folders:
        tx, ty, _ = read_image_folder(folders["test"], size, classes)
        test = ImageSet(tx, ty, torch.arange(n + nv, n + nv + len(ty)))
        train = ImageSet(x, y, torch.arange(n))
        return Splits(train, val, test, classes, source + ", test/)")
    # No test/: a stratified part of train/ becomes the test set.
    full = ImageSet(x, y, torch.arange(n))
    rest, test_ids = _split(np.arange(n), y.numpy(), fractions[1], fractions[2])
    return Splits(
        full.subset(rest),
        val,
        full.subset(test_ids),
        classes,
        source + "; test carved from train/)",
    )
