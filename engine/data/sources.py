"""Readers for the embedded default and for the formats users bring.

Each reader returns (images uint8 (N, 3, S, S), labels int64 (N,), class names) and raises
DataError naming the file or folder when something is wrong with it.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from engine.data.datasets import DataError, resize_uint8

T = TypeVar("T")
R = TypeVar("R")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
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


def pil_to_rgb(im) -> np.ndarray:
    """(H, W, 3) uint8 of any PIL image. 16-bit images are scaled from their 0-65535 range
    (PIL's own conversion clips them at 255: nearly white), 32-bit and float ones from their
    own range; transparency is composited onto white, not dropped (a transparent pixel's
    hidden colour is not what a person sees)."""
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L"):
        a = np.asarray(im, dtype=np.float64) / 257.0  # 65535 -> 255
        return np.repeat(a.round().astype(np.uint8)[..., None], 3, axis=2)
    if im.mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
        return np.repeat(a.round().astype(np.uint8)[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(im.convert("RGB"))


def read_image(path: Path, size: int) -> torch.Tensor:
    """One image file -> (3, size, size) uint8 (any mode: see `pil_to_rgb`); a file PIL
    cannot decode is named in the error."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            rgb = Image.fromarray(pil_to_rgb(im))
            arr = np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"cannot read image {path}: {e}") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_many(read: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """`[read(i) for i in items]` on a few threads, in order; the first error is raised.
    Decoding and resizing release the GIL: a large folder is read several times faster."""
    if len(items) < 64:
        return [read(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as pool:
        return list(pool.map(read, items))


def _stack(paths: list[Path], size: int) -> torch.Tensor:
    return torch.stack(read_many(lambda p: read_image(p, size), paths))


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
    others = [p for p in root.iterdir() if p.is_dir() and p.name not in PRESPLIT]
    if others and not (root / "val").is_dir():
        return None  # a plain folder per class that happens to have a class called "train"
    return {name: root / name for name in PRESPLIT if (root / name).is_dir()}


def _class_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_image_folder(
    path: str | Path, size: int, classes: list[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """`path/<class name>/<image>`: one sub-folder per class. With `classes`, the folder must
    hold exactly those classes (the val/ and test/ folders of a pre-split dataset)."""
    root = _existing_dir(path)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
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
    return _stack(paths, size), torch.tensor(labels), [d.name for d in class_dirs]


def read_prefixed(path: str | Path, size: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """A flat folder of `<label>_<n>.png` files (for example `3_12.png`)."""
    root = _existing_dir(path)
    files = _images_in(root)
    if not files:
        raise DataError(f"{root} holds no image files named <label>_<n>.png")
    names = []
    for p in files:
        m = _PREFIXED.match(p.stem)
        if not m:
            raise DataError(f"file name {p} does not follow <label>_<n>{p.suffix}")
        names.append(m.group("label"))
    classes = sorted(set(names), key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
    if len(classes) < 2:
        raise DataError(
            f"{root}: found only the label {classes[0]!r}; at least 2 classes are needed"
        )
    index = {c: i for i, c in enumerate(classes)}
    return _stack(files, size), torch.tensor([index[n] for n in names]), classes


class _BatchUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles; allow only the numpy pieces they need, never arbitrary code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = _BatchUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"CIFAR-10 batch file {path} is missing") from None
    except Exception as e:  # any unpickling failure means the file is not a CIFAR batch
        raise DataError(f"{path} is not a CIFAR-10 python batch: {e}") from None
    if not isinstance(d, dict):
        raise DataError(f"{path} is not a CIFAR-10 python batch: holds a {type(d).__name__}")
    data, labels = d.get(b"data", d.get("data")), d.get(b"labels", d.get("labels"))
    if data is None or labels is None:
        raise DataError(f"{path} is not a CIFAR-10 python batch: no 'data' and 'labels' entries")
    data = np.asarray(data)
    labels = np.asarray(labels, dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise DataError(
            f"{path}: expected data of shape (N, 3072) and N labels, "
            f"got {data.shape} and {labels.shape}"
        )
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{path}: labels must lie in 0..9, got {labels.min()}..{labels.max()}")
    return data.astype(np.uint8).reshape(-1, 3, 32, 32), labels


CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip


def read_cifar10(path: str | Path, size: int):
    """CIFAR-10 python batches: returns (train images, train labels, test images, test labels, classes)."""
    root = _existing_dir(path)
    nested = root / "cifar-10-batches-py"
    if not (root / "data_batch_1").exists() and nested.is_dir():
        root = nested
    train = [_read_cifar_batch(root / f"data_batch_{i}") for i in range(1, 6)]
    test_x, test_y = _read_cifar_batch(root / "test_batch")
    x = resize_uint8(torch.from_numpy(np.concatenate([t[0] for t in train])), size)
    y = torch.from_numpy(np.concatenate([t[1] for t in train]))
    tx = resize_uint8(torch.from_numpy(test_x), size)
    return x, y, tx, torch.from_numpy(test_y), list(CIFAR10_CLASSES)


def check_source(
    name: str, path: str | None, classes: list[str] | None = None,
    class_counts: list[int] | None = None,
) -> None:  # fmt: skip
    """Cheap checks before a run starts (the full read happens in the run's own process):
    the folder exists and holds what the format needs, `classes` (data.classes) are among
    its classes, and `class_counts` gives one count per class. Raises DataError naming the
    problem."""
    _check_format(name, path)
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


def _class_names(name: str, path: str | None) -> list[str]:
    if name == "digits":
        return [str(i) for i in range(10)]
    if name == "cifar10":
        return list(CIFAR10_CLASSES)
    root = Path(path).expanduser()
    if name == "prefixed":
        return sorted(
            {m.group("label") for p in _images_in(root) if (m := _PREFIXED.match(p.stem))}
        )
    return _class_dirs((presplit_folders(root) or {}).get("train", root))


def _check_format(name: str, path: str | None) -> None:
    if name == "digits" or (name == "landcover" and not path):
        return
    if not path:
        raise DataError(f"the {name!r} dataset needs a folder path")
    root = _existing_dir(path)
    if name == "folder":
        if folders := presplit_folders(root):  # every split holds the same class folders
            root = folders.pop("train")
            for other in folders.values():
                if _class_dirs(other) != _class_dirs(root):
                    raise DataError(
                        f"{other} must hold the same class folders as {root}: "
                        f"{', '.join(_class_dirs(other))} vs {', '.join(_class_dirs(root))}"
                    )
        subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        if len(subdirs) < 2:
            raise DataError(
                f"{root} must hold one sub-folder per class (at least 2); found {len(subdirs)}"
            )
    elif name == "prefixed":
        if not _images_in(root):
            raise DataError(f"{root} holds no image files named <label>_<n>.png")
    elif name in ("landcover", "deepglobe"):
        from engine.data.landcover import find_pairs, split_folders

        for folder in split_folders(root).values() or [root]:
            find_pairs(folder)  # pairs complete; the pixels are read by the run
    elif name == "cifar10":
        base = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
        missing = [
            f
            for f in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
            if not (base / f).exists()
        ]
        if missing:
            raise DataError(f"{base} lacks the CIFAR-10 python batch file(s) {', '.join(missing)}")
