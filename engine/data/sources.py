"""Readers for the embedded default and for the formats users bring.

Each reader returns (images uint8 (N, 3, S, S), labels int64 (N,), class names) and raises
DataError naming the file or folder when something is wrong with it.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from engine.data.cifar import CIFAR10_CLASSES, read_cifar10  # noqa: F401 (re-exported)
from engine.data.datasets import DataError, resize_uint8
from engine.data.images import IMAGE_SUFFIXES, pil_to_rgb, read_image  # noqa: F401
from engine.data.roots import DatasetBounds

T = TypeVar("T")
R = TypeVar("R")

_PREFIXED = re.compile(r"^(?P<label>.+)_(?P<n>\d+)$")


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(1797, 8, 8) values 0..16 and labels, read from the data file scikit-learn ships.

    Read directly (not through `sklearn.datasets`), because importing scikit-learn costs
    about a second of the time a user waits for the first point of the demo's chart.
    """
    spec = importlib.util.find_spec("sklearn")
    data_file = None
    if spec and spec.submodule_search_locations:
        data_file = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    if data_file is not None and data_file.is_file():
        table = np.loadtxt(data_file, delimiter=",", dtype=np.float32)  # (1797, 65)
        return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits  # the layout changed: ask scikit-learn

    d = load_digits()
    return d.images.astype(np.float32), d.target.astype(np.int64)


def read_digits(size: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """scikit-learn's 1,797 8x8 handwritten digits (values 0..16), upscaled to RGB size x size."""
    values, labels = _digits_arrays()
    x = torch.from_numpy(values * (255.0 / 16.0))  # (N, 8, 8)
    x = x.round().to(torch.uint8)[:, None].expand(-1, 3, -1, -1)  # (N, 3, 8, 8)
    images = resize_uint8(x.contiguous(), size)
    return images, torch.from_numpy(labels), [str(i) for i in range(10)]


def _entries(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError as e:
        raise DataError(f"cannot list the folder {folder}: {e.strerror or e}") from None


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in _entries(folder) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_many(read: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """`[read(i) for i in items]` on a few threads, in order; the first error is raised.
    Decoding and resizing release the GIL: a large folder is read several times faster."""
    if len(items) < 64:
        return [read(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as pool:
        return list(pool.map(read, items))


def _stack(paths: list[Path], size: int) -> torch.Tensor:
    return torch.stack(read_many(lambda p: read_image(p, size), paths))


def check_bounds(paths: list[Path], dataset: Path) -> None:
    """Every file lies in the dataset folder or under a data root (DatasetBounds)."""
    bounds = DatasetBounds(dataset)
    for p in paths:
        bounds.check(p)


def _existing_dir(path: str | Path) -> Path:
    try:
        folder = Path(path).expanduser()
    except RuntimeError as e:  # "~someone/..." for a user that does not exist
        raise DataError(f"dataset path {path}: {e}") from None
    if not folder.exists():
        raise DataError(f"dataset folder {folder} does not exist")
    if not folder.is_dir():
        raise DataError(f"dataset path {folder} is not a folder")
    return folder


PRESPLIT = ("train", "val", "test")


def presplit_folders(path: str | Path) -> dict[str, Path] | None:
    """`path/train/<class>/` with `path/val/<class>/` and/or `path/test/<class>/`, as in
    torchvision's ImageFolder tutorials (a missing split is carved out of train/); None when
    `path` is a plain folder per class."""
    root = _existing_dir(path)
    if not (root / "train").is_dir():
        return None
    others = [p for p in _entries(root) if p.is_dir() and p.name not in PRESPLIT]
    if others and not (root / "val").is_dir():
        return None  # a plain folder per class that happens to have a class called "train"
    return {name: root / name for name in PRESPLIT if (root / name).is_dir()}


def _class_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in _entries(root) if p.is_dir() and not p.name.startswith("."))


def image_folder_files(
    root: Path, classes: list[str] | None = None
) -> tuple[list[Path], list[int], list[str]]:
    """The image files of `root/<class name>/<image>`, their labels and the class names;
    nothing is decoded. With `classes`, the folder must hold exactly those classes (the val/
    and test/ folders of a pre-split dataset)."""
    class_dirs = sorted(p for p in _entries(root) if p.is_dir() and not p.name.startswith("."))
    if classes is not None and [d.name for d in class_dirs] != classes:
        found = {d.name for d in class_dirs}
        missing, extra = sorted(set(classes) - found), sorted(found - set(classes))
        raise DataError(
            f"{root} must hold the same class folders as the train/ folder beside it"
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + (f"; not in train/: {', '.join(extra)}" if extra else "")
        )
    if len(class_dirs) < 2:
        raise DataError(
            f"{root} must hold one sub-folder per class (at least 2); found {len(class_dirs)}"
        )
    paths, labels = [], []
    for label, d in enumerate(class_dirs):
        files = _images_in(d)
        if not files:
            raise DataError(
                f"class folder {d} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        paths += files
        labels += [label] * len(files)
    return paths, labels, [d.name for d in class_dirs]


def read_image_folder(
    path: str | Path, size: int, classes: list[str] | None = None, within: Path | None = None
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """`path/<class name>/<image>`: one sub-folder per class (see `image_folder_files`). Every
    file must lie in `within` (default: `path`), the dataset folder, or under a data root."""
    root = _existing_dir(path)
    paths, labels, names = image_folder_files(root, classes)
    check_bounds(paths, within or root)
    return _stack(paths, size), torch.tensor(labels), names


def prefixed_files(root: Path) -> tuple[list[Path], list[str]]:
    """The files of a flat folder of `<label>_<n>.png` files and the label of each."""
    files = _images_in(root)
    if not files:
        raise DataError(f"{root} holds no image files named <label>_<n>.png")
    names = []
    for p in files:
        m = _PREFIXED.match(p.stem)
        if not m:
            raise DataError(f"file name {p} does not follow <label>_<n>{p.suffix}")
        names.append(m.group("label"))
    return files, names


def read_prefixed(path: str | Path, size: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """A flat folder of `<label>_<n>.png` files (for example `3_12.png`)."""
    root = _existing_dir(path)
    files, names = prefixed_files(root)
    classes = sorted(set(names), key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
    if len(classes) < 2:
        raise DataError(
            f"{root}: found only the label {classes[0]!r}; at least 2 classes are needed"
        )
    check_bounds(files, root)
    index = {c: i for i, c in enumerate(classes)}
    return _stack(files, size), torch.tensor([index[n] for n in names]), classes
