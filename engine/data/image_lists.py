"""Images listed in CSV files, as the courses hand them out: `filename,label` lists (an `id`
column may come first) with the images in a folder beside each list, `office/train.csv` +
`office/train/` as Office-Home, mini-ImageNet's train.csv / val.csv / test.csv; and lists of
files without labels, for self-supervised pretraining. A CSV is read as UTF-8 and checked
row by row; a fault is one line naming the file and the line."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.data.datasets import DataError
from engine.data.roots import DatasetBounds

# mini-ImageNet's train.csv (38,400 images) is 1.5 MB; a CSV over this is not a list.
MAX_CSV_BYTES = 64 * 2**20


def read_table(path: Path, what: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """A CSV file's header and its rows as (line number, {column: value}); each row has
    exactly the header's columns (blank lines are skipped)."""
    try:
        if not Path(path).is_file():  # a folder, or a device or pipe that never ends
            raise DataError(f"cannot read {what} {path}: not a file, or missing")
        with open(path, "rb") as f:
            text = f.read(MAX_CSV_BYTES + 1)
    except OSError as e:
        raise DataError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if len(text) > MAX_CSV_BYTES:
        raise DataError(f"{what} {path} is over {MAX_CSV_BYTES // 2**20} MB; a list of "
                        "images or episodes is a few MB at most")  # fmt: skip
    try:
        text = text.decode("utf-8-sig")  # a byte-order mark, as spreadsheets write, is dropped
    except UnicodeDecodeError as e:
        line = text[: e.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not UTF-8 text (byte 0x{text[e.start]:02x}); "
                        "save the file as UTF-8") from None  # fmt: skip
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        table = [(reader.line_num, row) for row in reader if row]
    except csv.Error as e:
        raise DataError(f"{path}, line {reader.line_num}: {e}") from None
    if not table:
        raise DataError(f"{what} {path} is empty")
    (_, header), *rows = table
    header = [c.strip() for c in header]
    if twice := sorted({c for c in header if header.count(c) > 1}):
        raise DataError(f"{path}: the column {twice[0]!r} appears more than once in the header")
    out = []
    for line, row in rows:
        if len(row) != len(header):
            raise DataError(f"{path}, line {line}: {len(row)} field(s), but the header has "
                            f"{len(header)} ({', '.join(header)})")  # fmt: skip
        out.append((line, dict(zip(header, row, strict=True))))
    return header, out


@dataclass
class ImageList:
    """A CSV list's rows: the files (resolved, in bounds), labels ([] without) and names."""

    path: Path
    files: list[Path]
    labels: list[str]
    names: list[str]


def image_list(path: Path, dataset: Path, labelled: bool = True) -> ImageList:
    """A `filename,label` CSV (an `id` column may come first; `labelled=False`: `filename`
    alone, a label column is ignored), as the courses give Office-Home and mini-ImageNet:
    images under `<csv stem>/` beside it, or beside it. Every file must exist once in the
    list and lie in `dataset` or under a data root (an absolute name or '..' that leads out
    is refused); nothing is decoded."""
    path = Path(path)
    header, rows = read_table(path, "image list")
    needed = {"filename", "label"} if labelled else {"filename"}
    if not needed <= set(header):
        raise DataError(f"{path}: expected a header with {' and '.join(sorted(needed))} "
                        f"column{'s' if labelled else ''}; found {', '.join(header)}")  # fmt: skip
    if not rows:
        raise DataError(f"image list {path} names no images")
    folder = _image_folder(path, rows[0][1]["filename"])
    bounds = DatasetBounds(dataset)
    files, first_line = [], {}
    for line, row in rows:
        name, where = row["filename"].strip(), f"{path}, line {line}: "
        if not name or (labelled and not row["label"].strip()):
            raise DataError(f"{where}{'filename' if not name else 'label'} is empty")
        if name in first_line:
            raise DataError(f"{where}{name} is listed twice (first on line {first_line[name]})")
        first_line[name] = line
        file = folder / name
        bounds.check(file, where)
        if not file.is_file():
            raise DataError(f"{where}{name} is not in {folder}")
        files.append(file)
    labels = [r["label"].strip() for _, r in rows] if labelled else []
    return ImageList(path, files, labels, [r["filename"].strip() for _, r in rows])


def _image_folder(path: Path, first: str) -> Path:
    """Where a list's images are: `<csv stem>/` beside it (office/train/ for office/train.csv),
    else beside the list itself when its first file is there."""
    beside = path.parent / path.stem
    if beside.is_dir():
        return beside
    if not (path.parent / first.strip()).exists():
        raise DataError(f"the image folder of {path} is missing: expected {beside}/ beside it "
                        f"(or the images beside the list; {first.strip()} is not there)")  # fmt: skip
    return path.parent


def read_image_list(path: Path, size: int, dataset: Path | None = None, labelled: bool = True):
    """The images of an image list (see `image_list`). Returns (images, label names per
    image ([] without labels), file names)."""
    from engine.data.sources import read_image, read_many

    listed = image_list(path, dataset or path.parent, labelled)
    images = read_many(lambda f: read_image(f, size), listed.files)
    return torch.stack(images), listed.labels, listed.names


# --- classification lists: train.csv, val.csv, test.csv --------------------------------------
LIST_SPLITS = ("train", "val", "test")


def csv_lists(path: str | Path) -> dict[str, Path]:
    """The lists of a `csv` dataset folder: train.csv, and val.csv / test.csv when there."""
    from engine.data.sources import _existing_dir

    if Path(path).expanduser().suffix.lower() == ".csv":
        raise DataError(f"data.path of a csv dataset is the folder that holds train.csv "
                        f"(and val.csv, test.csv), not the list itself: {path}")  # fmt: skip
    root = _existing_dir(path)
    if not (root / "train.csv").is_file():
        raise DataError(f"{root} has no train.csv: a csv dataset is a folder with train.csv (and "
                        "val.csv, test.csv) listing filename,label, each list's images in a "
                        "folder of its name beside it (train/, val/, test/)")  # fmt: skip
    return {s: root / f"{s}.csv" for s in LIST_SPLITS if (root / f"{s}.csv").is_file()}


def label_order(labels: list[str]) -> list[str]:
    """Class names sorted, numbers by value (2 before 10), as course lists label them."""
    return sorted(set(labels), key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))


def _checked_lists(path: str | Path) -> tuple[Path, dict[str, ImageList], list[str]]:
    """The dataset folder, its lists and the training list's classes; DataError when another
    list names a class the training list has not."""
    lists = csv_lists(path)
    root = lists["train"].parent
    listed = {s: image_list(f, root) for s, f in lists.items()}
    classes = label_order(listed["train"].labels)
    if len(classes) < 2:
        raise DataError(f"{lists['train']} names one class ({classes[0]!r}); at least 2 are "
                        "needed")  # fmt: skip
    for other in listed.values():
        if extra := sorted(set(other.labels) - set(classes)):
            raise DataError(f"{other.path} has label(s) that train.csv has not: "
                            f"{', '.join(extra[:5])}")  # fmt: skip
    return root, listed, classes


def csv_class_names(path: str | Path) -> list[str]:
    return _checked_lists(path)[2]


def check_csv_dataset(path: str | Path) -> None:
    """Before a run: every list readable, its files whole images in bounds, every label of
    val.csv / test.csv one of train.csv's."""
    from engine.data.checks import check_images

    root, listed, _ = _checked_lists(path)
    check_images([f for lst in listed.values() for f in lst.files], root)


def load_csv_dataset(path: str | Path, size: int, fractions: tuple[float, float, int]):
    """Splits of a `csv` dataset folder; a missing val.csv or test.csv is a stratified, seeded
    part of train.csv's images."""
    from engine.data.datasets import ImageSet, carve_missing
    from engine.data.sources import read_image, read_many

    root, listed, classes = _checked_lists(path)
    index = {c: i for i, c in enumerate(classes)}
    parts, n = {}, 0
    for split, lst in listed.items():
        x = torch.stack(read_many(lambda f: read_image(f, size), lst.files))
        y = torch.tensor([index[label] for label in lst.labels])
        parts[split] = ImageSet(x, y, torch.arange(n, n + len(y)))
        n += len(y)
    source = f"image lists in {root} ({', '.join(f.path.name for f in listed.values())})"
    train = parts.pop("train")
    return carve_missing(train, parts, classes, source, fractions, "train.csv")


# --- images without labels (self-supervised pretraining) -------------------------------------
UNLABELLED = "unlabelled"


def unlabelled_files(path: str | Path) -> tuple[Path, list[Path]]:
    """The images of a flat folder, or of a CSV list with a filename column (a label column
    is ignored): (the dataset folder, the files). Nothing is decoded."""
    from engine.data.images import IMAGE_SUFFIXES
    from engine.data.sources import _existing_dir, _images_in

    p = Path(path).expanduser()
    if p.suffix.lower() == ".csv":
        return p.parent, image_list(p, p.parent, labelled=False).files
    root = _existing_dir(p)
    files = _images_in(root)
    if not files:
        sub = [d.name for d in root.iterdir() if d.is_dir()][:3]
        hint = f" (it has sub-folders: {', '.join(sub)}; give one of them)" if sub else ""
        raise DataError(f"{root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}) directly"
                        f"{hint}: unlabelled images are one flat folder or a CSV list")  # fmt: skip
    return root, files


def check_unlabelled(path: str | Path) -> None:
    from engine.data.checks import check_images

    root, files = unlabelled_files(path)
    check_images(files, root)


def load_unlabelled(path: str | Path, size: int, fractions: tuple[float, float, int]):
    """Splits of unlabelled images: one class, `unlabelled`; validation and test are seeded
    random parts (the validation images give BYOL's validation loss)."""
    from engine.data.datasets import stratified_splits
    from engine.data.sources import check_bounds, read_image, read_many

    root, files = unlabelled_files(path)
    check_bounds(files, root)
    x = torch.stack(read_many(lambda f: read_image(f, size), files))
    y = torch.zeros(len(files), dtype=torch.long)
    return stratified_splits(x, y, [UNLABELLED], f"unlabelled images in {path}", *fractions)
