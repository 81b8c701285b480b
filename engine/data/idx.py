"""MNIST-family datasets in IDX files: Fashion-MNIST, MNIST and Kuzushiji-MNIST.

Each is four files, `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-
idx3-ubyte` and `t10k-labels-idx1-ubyte`, optionally gzipped. They are looked for in the
folder given, in torchvision's layout inside it (`<folder>/FashionMNIST/raw/`), and, when no
folder is given, where Debian's package puts them (`apt-get install dataset-fashion-mnist`:
/usr/share/datasets/fashion-mnist/) and in the project's data/ folder.

An IDX file is a 4-byte magic number (two zero bytes, a type code, 0x08 for unsigned bytes,
and the number of dimensions), one big-endian 32-bit size per dimension, then the values.
Every header is checked against the file before anything is allocated, so a damaged or
hostile file is one line naming it, never a huge allocation.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.data.datasets import DataError, resize_uint8

# What the images may take in memory once decoded (3 channels at the run's image size).
MAX_DECODED_BYTES = 6 * 2**30


@dataclass(frozen=True)
class IdxDataset:
    name: str  # data.name
    title: str
    torchvision_folder: str  # <root>/<this>/raw/ in torchvision's layout
    system_folder: str  # where a Debian package puts it
    classes: tuple[str, ...]
    download: str  # where the four files come from


IDX_DATASETS: dict[str, IdxDataset] = {
    d.name: d
    for d in [
        IdxDataset("fashion_mnist", "Fashion-MNIST", "FashionMNIST", "fashion-mnist",
                   ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                    "Sneaker", "Bag", "Ankle boot"),
                   "https://github.com/zalandoresearch/fashion-mnist (data/fashion/)"),
        IdxDataset("mnist", "MNIST", "MNIST", "mnist", tuple(str(i) for i in range(10)),
                   "https://ossci-datasets.s3.amazonaws.com/mnist/ (torchvision's mirror)"),
        IdxDataset("kmnist", "Kuzushiji-MNIST", "KMNIST", "kmnist",
                   ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
                   "http://codh.rois.ac.jp/kmnist/dataset/kmnist/"),
    ]
}  # fmt: skip

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_UBYTE = 0x08
_MAX_SIDE = 4096  # pixels per image side an IDX image file may declare


def system_dir(name: str) -> Path:
    return Path("/usr/share/datasets") / IDX_DATASETS[name].system_folder


def default_roots(name: str) -> list[Path]:
    """Where `name` is looked for when no folder is given."""
    from engine.core.settings import REPO_ROOT

    folder = IDX_DATASETS[name].system_folder
    return [system_dir(name), REPO_ROOT / "data" / folder, REPO_ROOT / "data" / name]


def _candidates(name: str, path: str | Path | None) -> list[Path]:
    spec = IDX_DATASETS[name]
    roots = [Path(path).expanduser()] if path else default_roots(name)
    found = []
    for root in roots:
        found += [root, root / spec.torchvision_folder / "raw", root / "raw"]
    return found


def _file_in(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_idx_files(name: str, path: str | Path | None = None) -> dict[str, Path]:
    """The four files of `name`, from the first folder that holds all of them; else a
    DataError saying what was looked for, where, and where to get the files."""
    spec = IDX_DATASETS[name]
    looked = _candidates(name, path)
    for folder in looked:
        files = {key: _file_in(folder, stem) for key, stem in FILES.items()}
        if all(files.values()):
            return files
        if any(files.values()):  # a folder with some of them: say which are missing
            missing = [FILES[k] for k, v in files.items() if v is None]
            raise DataError(f"{folder} holds part of {spec.title}: {', '.join(missing)} "
                            f"(or .gz) missing")  # fmt: skip
    where = ", ".join(str(p) for p in dict.fromkeys(looked))
    debian = (
        f"on Debian, `apt-get install -y dataset-{spec.system_folder}` (as root; `make data` "
        f"does it) puts them in {system_dir(name)}; otherwise "
        if name == "fashion_mnist"
        else ""
    )
    raise DataError(
        f"{spec.title} not found: looked for {', '.join(FILES.values())} (or .gz) in {where}. "
        f"{debian[:1].upper() + debian[1:] if debian else ''}download the four files from "
        f"{spec.download} and put them in {path or 'data/' + spec.system_folder}/"
    )


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: Path, dims: int) -> np.ndarray:
    """The unsigned-byte array of `dims` dimensions in the IDX file `path`."""
    try:
        with _open(path) as f:
            header = f.read(4 + 4 * dims)
            if len(header) < 4:
                raise DataError(f"{path} is not an IDX file: {len(header)} bytes")
            zero, code, ndim = struct.unpack(">HBB", header[:4])
            if zero != 0 or code != _UBYTE or ndim != dims:
                raise DataError(
                    f"{path} is not an IDX file of {dims}-D unsigned bytes: magic number "
                    f"0x{int.from_bytes(header[:4], 'big'):08x}, expected 0x{0x800 + dims:08x}"
                )
            if len(header) < 4 + 4 * dims:
                raise DataError(f"{path} is truncated: its header ends after {len(header)} bytes")
            shape = struct.unpack(f">{dims}I", header[4:])
            if any(side > _MAX_SIDE for side in shape[1:]) or 0 in shape[1:]:
                raise DataError(f"{path}: images of {'x'.join(map(str, shape[1:]))} pixels "
                                f"are not supported (1..{_MAX_SIDE} per side)")  # fmt: skip
            n = int(np.prod(shape, dtype=np.int64))
            if n > MAX_DECODED_BYTES:
                raise DataError(f"{path} declares {n:,} bytes of values, more than the "
                                f"{MAX_DECODED_BYTES:,} the workbench reads")  # fmt: skip
            data = f.read(n)
            if len(data) < n:
                raise DataError(f"{path} is truncated: its header declares shape {shape} "
                                f"({n:,} values), the file holds {len(data):,}")  # fmt: skip
    except (OSError, EOFError, gzip.BadGzipFile) as e:  # damaged gzip stream, unreadable file
        from engine.core.errors import first_line

        raise DataError(f"{path} cannot be read: {first_line(e)}") from None
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def _pair(images_path: Path, labels_path: Path, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
    if len(images) != len(labels):
        raise DataError(f"{labels_path} holds {len(labels):,} labels but {images_path.name} "
                        f"{len(images):,} images")  # fmt: skip
    if len(labels) and labels.max() >= n_classes:
        raise DataError(f"{labels_path}: labels must lie in 0..{n_classes - 1}, found "
                        f"{int(labels.max())}")  # fmt: skip
    return images, labels


def _to_rgb(images: np.ndarray, size: int) -> torch.Tensor:
    """(N, H, W) grey uint8 -> (N, 3, size, size) uint8."""
    x = resize_uint8(torch.from_numpy(images.copy()).unsqueeze(1), size)
    return x.expand(-1, 3, -1, -1).contiguous()


def read_idx_dataset(name: str, path: str | Path | None, size: int):
    """(train images, train labels, test images, test labels, classes), images (N, 3, size,
    size) uint8."""
    spec = IDX_DATASETS[name]
    files = find_idx_files(name, path)
    check_memory(name, files, size)
    x, y = _pair(files["train_images"], files["train_labels"], len(spec.classes))
    tx, ty = _pair(files["test_images"], files["test_labels"], len(spec.classes))
    return (_to_rgb(x, size), torch.from_numpy(y.astype(np.int64)), _to_rgb(tx, size),
            torch.from_numpy(ty.astype(np.int64)), list(spec.classes))  # fmt: skip


def _declared_count(path: Path) -> int:
    with _open(path) as f:
        header = f.read(8)
    return struct.unpack(">I", header[4:8])[0] if len(header) == 8 else 0


def check_memory(name: str, files: dict[str, Path], size: int) -> None:
    """Refuse an image size at which the decoded images would not fit the workbench's bound."""
    try:
        n = _declared_count(files["train_images"]) + _declared_count(files["test_images"])
    except (OSError, EOFError, gzip.BadGzipFile):
        return  # read_idx names the damaged file
    need = n * 3 * size * size
    if need > MAX_DECODED_BYTES:
        raise DataError(
            f"{IDX_DATASETS[name].title} at data.image_size {size} would take "
            f"{need / 2**30:.1f} GiB in memory ({n:,} images x 3 x {size} x {size}); the "
            f"bound is {MAX_DECODED_BYTES / 2**30:.0f} GiB: choose a smaller image size"
        )


def check_idx_dataset(name: str, path: str | Path | None, size: int | None = None) -> None:
    """The files are there and whole (headers, lengths, labels), read as a run would."""
    files = find_idx_files(name, path)
    if size is not None:
        check_memory(name, files, size)
    spec = IDX_DATASETS[name]
    _pair(files["train_images"], files["train_labels"], len(spec.classes))
    _pair(files["test_images"], files["test_labels"], len(spec.classes))


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write `array` (uint8) as an IDX file (gzipped when the name ends in .gz); for tests
    and for exporting a subset."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, _UBYTE, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())
