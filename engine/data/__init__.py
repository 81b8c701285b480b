"""Datasets and loaders: the embedded default and the real formats that users bring."""

from __future__ import annotations

import torch

from engine.config import DataConfig
from engine.data.datasets import DataError, ImageSet, Splits, stratified_splits
from engine.data.loader import BatchLoader, random_crop_flip
from engine.data.sources import (
    check_source,
    read_cifar10,
    read_digits,
    read_image_folder,
    read_prefixed,
)

__all__ = [
    "BatchLoader",
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
