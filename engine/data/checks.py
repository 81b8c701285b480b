"""Checks before a run folder is made (the command line's `train` and `compare`, the
dashboard's Start buttons): whatever the run's reader would refuse is refused here, so a bad
dataset never leaves a failed run behind. Images are checked whole but not decoded to
pixels (`check_image`): a few thousand small files take well under a second."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from engine.config.base import IDX_DATASETS
from engine.data.cifar import CIFAR10_CLASSES, check_cifar10
from engine.data.datasets import DataError
from engine.data.images import check_image
from engine.data.sources import (
    _PREFIXED,
    _class_dirs,
    _existing_dir,
    _images_in,
    check_bounds,
    image_folder_files,
    prefixed_files,
    presplit_folders,
    read_many,
)

# stratified_splits carves test and val out of each class, leaving train at least one
SPLIT_PARTS = 3


def check_images(files: list[Path], dataset: Path) -> None:
    """Every file in bounds (DatasetBounds) and a whole image of at most MAX_IMAGE_MEGAPIXELS."""
    check_bounds(files, dataset)
    read_many(check_image, files)


def check_source(
    name: str, path: str | None, classes: list[str] | None = None,
    class_counts: list[int] | None = None, val_path: str | None = None,
) -> None:  # fmt: skip
    """The checks before a run starts (the run reads the pixels in its own process): the
    folder exists and holds what the format needs, every file is whole and in bounds,
    `classes` (data.classes) are among its classes, and `class_counts` gives one count per
    class. Raises DataError naming the problem; a wrong setting before any file is read."""
    root = _dataset_folder(name, path)
    if classes:
        known = _class_names(name, path)
        if unknown := [c for c in classes if c not in known]:
            raise DataError(f"data.classes: {', '.join(map(repr, unknown))} not among the "
                            f"classes of {path or name}: {', '.join(known)}")  # fmt: skip
    if class_counts:
        n = len(classes) if classes else len(_class_names(name, path))
        if len(class_counts) != n:
            raise DataError(f"data.class_counts gives {len(class_counts)} counts for {n} "
                            f"classes of {path or name}")  # fmt: skip
    if root is not None:
        _check_files(name, root)
    if val_path:
        _check_files(name, _existing_dir(val_path))


def _class_names(name: str, path: str | None) -> list[str]:
    if name == "digits":
        return [str(i) for i in range(10)]
    if name == "cifar10":
        return list(CIFAR10_CLASSES)
    if name in IDX_DATASETS:
        from engine.data.idx import IDX_DATASETS as SPECS

        return list(SPECS[name].classes)
    if name == "csv":
        from engine.data.image_lists import csv_class_names

        return csv_class_names(path)
    root = Path(path).expanduser()
    if name == "prefixed":
        return sorted(
            {m.group("label") for p in _images_in(root) if (m := _PREFIXED.match(p.stem))}
        )
    return _class_dirs((presplit_folders(root) or {}).get("train", root))


def _dataset_folder(name: str, path: str | None) -> Path | None:
    """The dataset's folder, which exists; None for the embedded and generated ones."""
    if name in IDX_DATASETS:  # found in its usual places when no path is given
        from engine.data.idx import check_idx_dataset

        check_idx_dataset(name, path)
        return None
    if name == "digits" or (name == "landcover" and not path):
        return None
    if not path:
        raise DataError(f"the {name!r} dataset needs a folder path")
    if name == "csv":  # the folder holding train.csv, which must be there
        from engine.data.image_lists import csv_lists

        csv_lists(path)
    if name == "unlabelled":  # a folder or a CSV list
        from engine.data.image_lists import check_unlabelled

        check_unlabelled(path)
        return None
    return _existing_dir(path)


def _check_files(name: str, root: Path) -> None:
    if name == "folder":
        check_images(_folder_files(root), root)
    elif name == "prefixed":
        check_images(prefixed_files(root)[0], root)
    elif name in ("landcover", "deepglobe"):
        from engine.data.landcover import check_pairs

        check_pairs(root)
    elif name == "cifar10":
        check_cifar10(root)
    elif name == "csv":
        from engine.data.image_lists import check_csv_dataset

        check_csv_dataset(root)


def _folder_files(root: Path) -> list[Path]:
    """The image files of a folder per class, or of a pre-split dataset's folders."""
    if folders := presplit_folders(root):  # every split holds the same class folders
        train = folders.pop("train")
        files, _, classes = image_folder_files(train)
        for other in folders.values():
            if _class_dirs(other) != classes:
                raise DataError(
                    f"{other} must hold the same class folders as {train}: "
                    f"{', '.join(_class_dirs(other))} vs {', '.join(classes)}"
                )
            files += image_folder_files(other, classes)[0]
        return files
    files, labels, classes = image_folder_files(root)
    label, n = min(Counter(labels).items(), key=lambda item: item[1])
    if n < SPLIT_PARTS:  # as stratified_splits would say, once the images were read
        raise DataError(
            f"image folder {root}: class {classes[label]!r} has {n} image(s); "
            f"at least {SPLIT_PARTS} are needed to split into train/val/test"
        )
    return files
