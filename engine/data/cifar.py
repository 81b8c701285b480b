"""CIFAR-10 python batches: pickles, read with an unpickler that admits only numpy arrays,
and checked entry by entry, so a damaged or hostile batch is one line naming the file."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from engine.core.errors import first_line
from engine.data.datasets import DataError, resize_uint8

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
BATCH_FILES = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
ROW = 3 * 32 * 32  # one image: 1024 red, 1024 green, then 1024 blue values, row-major


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


def _entry(d: dict, path: Path, key: str):
    for k in (key.encode(), key):  # bytes keys as pickled by Python 2, str by Python 3
        if k in d:
            return d[k]
    raise DataError(f"{path} is not a CIFAR-10 python batch: no {key!r} entry")


def _what(value) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of {value.dtype} and shape {value.shape}"
    return f"a {type(value).__name__}"


def _number(n: int) -> str:
    """An integer as text; one of a million digits (a hostile label) as its order."""
    n = int(n)
    return str(n) if abs(n) < 10**15 else f"{'-' if n < 0 else ''}about 2**{abs(n).bit_length()}"


def _batch_data(value, path: Path) -> np.ndarray:
    """'data': (N, 3072) whole numbers 0..255 -> (N, 3, 32, 32) uint8."""
    if not (isinstance(value, np.ndarray) and value.dtype.kind in "iu"):
        raise DataError(f"{path}: 'data' must be an array of whole numbers 0..255, found "
                        f"{_what(value)}")  # fmt: skip
    if value.ndim != 2 or value.shape[1] != ROW:
        raise DataError(f"{path}: 'data' must have the shape (N, {ROW}), found {value.shape}")
    if len(value) == 0:
        raise DataError(f"{path}: 'data' holds no images")
    if value.dtype != np.uint8 and (value.min() < 0 or value.max() > 255):
        raise DataError(f"{path}: 'data' values must lie in 0..255, found "
                        f"{value.min()}..{value.max()}")  # fmt: skip
    return value.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32)


def _batch_labels(value, path: Path) -> np.ndarray:
    """'labels': a list (as in the real files) or a 1-D array of class numbers 0..9."""
    if isinstance(value, np.ndarray):
        if value.ndim != 1 or value.dtype.kind not in "iu":
            raise DataError(f"{path}: 'labels' must be a list of class numbers 0..9, found "
                            f"{_what(value)}")  # fmt: skip
        value = value.tolist()
    if not isinstance(value, list | tuple):
        raise DataError(f"{path}: 'labels' must be a list of class numbers 0..9, found "
                        f"{_what(value)}")  # fmt: skip
    # Item by item, before numpy sees them: a huge integer, None, a string or a nested list
    # (which pickle's shared references can make enormous) is named, not converted.
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise DataError(f"{path}: 'labels' must be class numbers 0..9; label {i} is "
                            f"{_what(v)}")  # fmt: skip
    if value and not 0 <= min(value) <= max(value) <= 9:
        raise DataError(f"{path}: 'labels' must lie in 0..9, found "
                        f"{_number(min(value))}..{_number(max(value))}")  # fmt: skip
    return np.asarray(value, dtype=np.int64)


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> images (N, 3, 32, 32) uint8 and labels (N,) int64."""
    if path.exists() and not path.is_file():  # a folder, or a device or pipe that never ends
        raise DataError(f"CIFAR-10 batch file {path} is not a file")
    try:
        with open(path, "rb") as f:
            d = _BatchUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"CIFAR-10 batch file {path} is missing") from None
    except Exception as e:  # any unpickling failure means the file is not a CIFAR batch
        raise DataError(f"{path} is not a CIFAR-10 python batch: {first_line(e)}") from None
    if not isinstance(d, dict):
        raise DataError(f"{path} is not a CIFAR-10 python batch: holds a {type(d).__name__}")
    data = _batch_data(_entry(d, path, "data"), path)
    labels = _batch_labels(_entry(d, path, "labels"), path)
    if len(data) != len(labels):
        raise DataError(f"{path}: 'data' holds {len(data)} images but 'labels' {len(labels)}")
    return data, labels


def batch_folder(root: Path) -> Path:
    """`root`, or the cifar-10-batches-py/ folder the archive unpacks to inside it."""
    nested = root / "cifar-10-batches-py"
    return nested if not (root / "data_batch_1").exists() and nested.is_dir() else root


def read_cifar10(path: str | Path, size: int):
    """CIFAR-10 python batches: returns (train images, train labels, test images, test labels, classes)."""
    from engine.data.roots import DatasetBounds
    from engine.data.sources import _existing_dir

    root = _existing_dir(path)
    base, bounds = batch_folder(root), DatasetBounds(root)
    for name in BATCH_FILES:
        bounds.check(base / name)
    train = [read_cifar_batch(base / f"data_batch_{i}") for i in range(1, 6)]
    test_x, test_y = read_cifar_batch(base / "test_batch")
    x = resize_uint8(torch.from_numpy(np.concatenate([t[0] for t in train])), size)
    y = torch.from_numpy(np.concatenate([t[1] for t in train]))
    tx = resize_uint8(torch.from_numpy(test_x), size)
    return x, y, tx, torch.from_numpy(test_y), list(CIFAR10_CLASSES)


def check_cifar10(root: Path) -> None:
    """Every batch file there, in bounds, and a valid batch (read whole: 180 MB in a few
    tenths of a second, and nothing else can tell a damaged batch)."""
    from engine.data.roots import DatasetBounds

    base, bounds = batch_folder(root), DatasetBounds(root)
    missing = [f for f in BATCH_FILES if not (base / f).exists()]
    if missing:
        raise DataError(f"{base} lacks the CIFAR-10 python batch file(s) {', '.join(missing)}")
    for name in BATCH_FILES:
        bounds.check(base / name)
        read_cifar_batch(base / name)
