"""Datasets and loaders: the embedded default and the real formats that users bring."""

from __future__ import annotations

from pathlib import Path

import torch

from engine.config import DataConfig
from engine.config.base import IDX_DATASETS
from engine.data.checks import check_source
from engine.data.datasets import (
    DataError,
    ImageSet,
    Splits,
    carve_missing,
    long_tail_counts,
    stratified_splits,
)
from engine.data.loader import BatchLoader, FeatureLoader, SegmentationLoader, random_crop_flip
from engine.data.sources import (
    presplit_folders,
    read_cifar10,
    read_digits,
    read_image_folder,
    read_prefixed,
)

__all__ = [
    "long_tail_counts",
    "BatchLoader",
    "FeatureLoader",
    "DataError",
    "check_source",
    "ImageSet",
    "Splits",
    "load_dataset",
    "random_crop_flip",
    "SegmentationLoader",
]


def load_dataset(cfg: DataConfig) -> Splits:
    """Read the dataset that `cfg` names and split it (fixed, stratified, seeded); with
    `cfg.classes`, only those classes (the split is the full dataset's, so a run on classes
    0-4 and one on 5-9 never share an image)."""
    splits = _load_all_classes(cfg)
    if cfg.classes:
        splits = splits.keep_classes(cfg.classes)
    if cfg.class_counts:
        splits = splits.long_tailed(cfg.class_counts, cfg.split_seed)
    elif cfg.imbalance_ratio != 1:
        counts = long_tail_counts(splits.train_counts(), cfg.imbalance_ratio)
        splits = splits.long_tailed(
            counts, cfg.split_seed, f"imbalance ratio {cfg.imbalance_ratio:g}"
        )
    return splits


def _load_all_classes(cfg: DataConfig) -> Splits:
    size, fractions = cfg.image_size, (cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    if cfg.name == "digits":
        x, y, classes = read_digits(size)
        return stratified_splits(x, y, classes, "digits (scikit-learn)", *fractions)
    if cfg.name == "folder" and (folders := presplit_folders(cfg.path)) is not None:
        if cfg.val_path:
            raise DataError(f"{cfg.path} has its own train/ and val/ or test/ folders: "
                            "give no separate validation folder (data.val_path)")  # fmt: skip
        return _presplit(folders, size, fractions)
    if cfg.name in ("folder", "prefixed") and cfg.val_path:
        return _with_val_folder(cfg, size, fractions)
    if cfg.name == "folder":
        x, y, classes = read_image_folder(cfg.path, size)
        return stratified_splits(x, y, classes, f"image folder {cfg.path}", *fractions)
    if cfg.name == "prefixed":
        x, y, classes = read_prefixed(cfg.path, size)
        return stratified_splits(x, y, classes, f"labelled files in {cfg.path}", *fractions)
    if cfg.name == "csv":
        from engine.data.image_lists import load_csv_dataset

        return load_csv_dataset(cfg.path, size, fractions)
    if cfg.name == "unlabelled":
        from engine.data.image_lists import load_unlabelled

        return load_unlabelled(cfg.path, size, fractions)
    if cfg.name == "cifar10":
        x, y, tx, ty, classes = read_cifar10(cfg.path, size)
        test = ImageSet(tx, ty, torch.arange(len(y), len(y) + len(ty)))
        return stratified_splits(x, y, classes, f"CIFAR-10 {cfg.path}", *fractions, test=test)
    if cfg.name in IDX_DATASETS:
        from engine.data.idx import IDX_DATASETS as SPECS
        from engine.data.idx import find_idx_files, read_idx_dataset

        x, y, tx, ty, classes = read_idx_dataset(cfg.name, cfg.path, size)
        test = ImageSet(tx, ty, torch.arange(len(y), len(y) + len(ty)))
        folder = find_idx_files(cfg.name, cfg.path)["train_images"].parent
        return stratified_splits(x, y, classes, f"{SPECS[cfg.name].title} {folder}", *fractions,
                                 test=test)  # fmt: skip
    if cfg.name in ("landcover", "deepglobe"):
        from engine.data.landcover import load_landcover, synthetic_landcover_dir

        if cfg.name == "landcover" and not cfg.path:
            root, source = synthetic_landcover_dir(), "synthetic land-cover scenes"
        else:
            root, source = Path(cfg.path), f"land-cover pairs in {cfg.path}"
        return load_landcover(root, size, *fractions, source=source)
    raise DataError(f"unknown dataset {cfg.name!r}")


def _with_val_folder(cfg: DataConfig, size: int, fractions: tuple[float, float, int]) -> Splits:
    """Training images from `path`, validation images from `val_path` (same layout, the same
    classes or fewer: train_50/ and val_50/); the test split is carved from `path`."""
    read = read_image_folder if cfg.name == "folder" else read_prefixed
    x, y, classes = read(cfg.path, size)
    vx, vy, val_classes = read(cfg.val_path, size)
    if extra := sorted(set(val_classes) - set(classes)):
        raise DataError(f"validation folder {cfg.val_path} has class(es) that {cfg.path} has "
                        f"not: {', '.join(extra[:5])}")  # fmt: skip
    index = torch.tensor([classes.index(c) for c in val_classes])
    train = ImageSet(x, y, torch.arange(len(y)))
    val = ImageSet(vx, index[vy], torch.arange(len(y), len(y) + len(vy)))
    source = f"{cfg.name} {cfg.path}, validation {cfg.val_path}"
    return carve_missing(train, {"val": val}, classes, source, fractions, Path(cfg.path).name)


def _presplit(folders: dict, size: int, fractions: tuple[float, float, int]) -> Splits:
    """The splits given as folders; a missing val/ or test/ is a stratified part of train/."""
    root = folders["train"].parent
    x, y, classes = read_image_folder(folders["train"], size, within=root)
    n = len(y)
    train = ImageSet(x, y, torch.arange(n))
    given = {}
    for name in ("val", "test"):
        if name in folders:
            gx, gy, _ = read_image_folder(folders[name], size, classes, within=root)
            given[name] = ImageSet(gx, gy, torch.arange(n, n + len(gy)))
            n += len(gy)
    source = f"image folders {root} ({', '.join(f'{k}/' for k in folders)})"
    return carve_missing(train, given, classes, source, fractions, "train/")
