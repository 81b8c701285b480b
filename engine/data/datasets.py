"""Labelled image datasets, preloaded as uint8 tensors and split into train / val / test."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from engine.core.errors import WorkbenchError


class DataError(WorkbenchError, ValueError):
    """A dataset cannot be read; the message names the file or folder and the problem."""


@dataclass
class ImageSet:
    images: torch.Tensor  # (N, 3, H, W) uint8
    labels: torch.Tensor  # (N,) int64; for segmentation (N, H, W) uint8 masks
    ids: torch.Tensor  # (N,) int64, index of each image in its source, stable across runs

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray | torch.Tensor) -> ImageSet:
        index = torch.as_tensor(index, dtype=torch.long)
        return ImageSet(self.images[index], self.labels[index], self.ids[index])


@dataclass
class Splits:
    train: ImageSet
    val: ImageSet
    test: ImageSet
    classes: list[str]
    source: str  # what was loaded, for the run's log and the dashboard
    names: list[str] | None = None  # per sample id, where files have names (segmentation)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return self.train.images.shape[-1]

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training images, on the [0, 1] scale."""
        x = self.train.images.float().div_(255)
        mean = x.mean(dim=(0, 2, 3))
        std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
        return mean.tolist(), std.tolist()

    def keep_classes(self, names: list[str]) -> Splits:
        """Only the images of the classes `names`, relabelled 0..len(names)-1 in the dataset's
        class order; sample ids are unchanged (e.g. pretrain on digits 0-4, transfer to 5-9)."""
        unknown = [n for n in names if n not in self.classes]
        if unknown:
            raise DataError(
                f"data.classes: {', '.join(map(repr, unknown))} not in {self.source} (its "
                f"classes: {', '.join(self.classes)})"
            )
        kept = [c for c in self.classes if c in names]
        if len(kept) < 2:
            raise DataError(f"data.classes must name at least 2 classes, got {kept}")
        relabel = torch.full((len(self.classes),), -1, dtype=torch.long)
        relabel[[self.classes.index(c) for c in kept]] = torch.arange(len(kept))

        def part(data: ImageSet) -> ImageSet:
            new = relabel[data.labels.long()]
            keep = (new >= 0).nonzero().flatten()
            return ImageSet(data.images[keep], new[keep].to(data.labels.dtype), data.ids[keep])

        source = f"{self.source}, classes {', '.join(kept)}"
        return replace(self, train=part(self.train), val=part(self.val), test=part(self.test),
                       classes=kept, source=source)  # fmt: skip

    def train_counts(self) -> list[int]:
        """Training images per class, in class order."""
        return torch.bincount(self.train.labels.long(), minlength=self.num_classes).tolist()

    def long_tailed(self, counts: list[int], seed: int, how: str = "") -> Splits:
        """The training split cut to `counts[j]` images of class j (a seeded choice); the
        validation and test splits unchanged, balanced as before."""
        have = self.train_counts()
        if len(counts) != self.num_classes:
            raise DataError(f"data.class_counts gives {len(counts)} counts for "
                            f"{self.num_classes} classes ({', '.join(self.classes)})")  # fmt: skip
        short = [f"{c} ({n} asked, {h} there)" for c, n, h in zip(self.classes, counts, have,
                 strict=True) if n > h]  # fmt: skip
        if short:
            raise DataError(f"not enough training images for class_counts: {', '.join(short)}")
        g = torch.Generator().manual_seed(seed)
        labels = self.train.labels.long()
        keep = torch.cat([
            (labels == c).nonzero().flatten()[torch.randperm(int(have[c]), generator=g)[:n]]
            for c, n in enumerate(counts)
        ]).sort().values  # fmt: skip
        source = (
            f"{self.source}, long-tailed training split ({how or 'class counts'}: "
            + ", ".join(str(n) for n in counts)
            + ")"
        )
        return replace(self, train=self.train.subset(keep), source=source)

    def images_by_id(self, ids) -> torch.Tensor:
        """(n, 3, H, W) uint8 images of the given sample ids, from whichever split holds them."""
        parts = (self.train, self.val, self.test)
        all_ids = torch.cat([p.ids for p in parts])
        order = torch.argsort(all_ids)
        ids = torch.as_tensor(np.asarray(ids), dtype=torch.long)
        pos = torch.searchsorted(all_ids[order], ids).clamp_max(len(order) - 1)
        if not torch.equal(all_ids[order][pos], ids):
            raise KeyError("some sample ids are not in this dataset")
        return torch.cat([p.images for p in parts])[order[pos]]

    def describe(self) -> str:
        return (
            f"{self.source}: {len(self.train)} train / {len(self.val)} val / "
            f"{len(self.test)} test images of {self.image_size}x{self.image_size}, "
            f"{self.num_classes} class{'es' if self.num_classes != 1 else ''}"
        )


def stratified_splits(
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: list[str],
    source: str,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    test: ImageSet | None = None,
) -> Splits:
    """Fixed, stratified train/val(/test) split; `test` given means it is not carved out here."""
    ids = np.arange(len(labels))
    y = labels.numpy()
    counts = np.bincount(y, minlength=len(classes))
    parts = 2 if test is not None else 3
    if counts.min() < parts:
        few = classes[int(counts.argmin())]
        raise DataError(
            f"{source}: class {few!r} has {counts.min()} image(s); "
            f"at least {parts} are needed to split into train/val/test"
        )
    full = ImageSet(images, labels, torch.as_tensor(ids))
    if test is None:
        rest, test_ids = _split(ids, y, test_fraction, seed)
        test = full.subset(test_ids)
        ids, y = rest, y[rest]
        val_fraction = val_fraction / (1 - test_fraction)
    train_ids, val_ids = _split(ids, y, val_fraction, seed + 1)
    return Splits(full.subset(train_ids), full.subset(val_ids), test, classes, source)


def carve_missing(
    train: ImageSet,
    given: dict[str, ImageSet],
    classes: list[str],
    source: str,
    fractions: tuple[float, float, int],
    train_name: str,
) -> Splits:
    """Splits from a training set and the validation / test sets a dataset gives; a missing
    one is a stratified, seeded part of the training set (`train_name` says so in the source)."""
    val_fraction, test_fraction, seed = fractions
    given = dict(given)
    for name, fraction, salt in (("test", test_fraction, 0), ("val", val_fraction, 1)):
        if name not in given:
            rest, taken = _split(np.arange(len(train)), train.labels.numpy(), fraction, seed + salt)
            given[name] = train.subset(taken)
            train = train.subset(rest)
            source += f"; {name} carved from {train_name}"
    return Splits(train, given["val"], given["test"], classes, source)


def _split(ids: np.ndarray, y: np.ndarray, fraction: float, seed: int):
    """Stratified: each class gives round(fraction * its count) samples (at least one) to
    the second part. Plain numpy; scikit-learn's version costs a second of import time."""
    rng = np.random.default_rng(seed)
    taken = []
    for c in np.unique(y):
        members = ids[y == c]
        n = min(max(int(round(fraction * len(members))), 1), len(members) - 1)
        taken.append(rng.permutation(members)[:n])
    b = np.sort(np.concatenate(taken))
    a = np.setdiff1d(ids, b)
    return a, b


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) uint8 -> (N, C, size, size) uint8 by bilinear interpolation."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = []
    for chunk in images.split(1024):  # bounded memory for large sets
        x = torch.nn.functional.interpolate(
            chunk.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def long_tail_counts(counts: list[int], ratio: float) -> list[int]:
    """Cao et al.'s exponential profile: class j keeps n_max * ratio ** (-j / (C - 1)) images
    (at least 1, at most what it has), n_max the largest class; class 0 is the head."""
    n_max, last = max(counts), max(len(counts) - 1, 1)
    return [max(1, min(have, int(n_max * ratio ** (-j / last)))) for j, have in enumerate(counts)]
