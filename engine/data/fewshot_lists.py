"""Few-shot data as CSV files, as DLCV HW4 gives mini-ImageNet: `filename,label` image lists
(train.csv, val.csv, test.csv; read by engine.data.image_lists) with disjoint classes, and a
list of fixed test episodes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from engine.data.datasets import DataError, ImageSet, Splits
from engine.data.image_lists import image_list, read_image_list, read_table

_SUPPORT = re.compile(r"^class(\d+)_support(\d+)$")
_QUERY = re.compile(r"^query(\d+)$")


# --- episode files ---------------------------------------------------------------------------
def read_episode_csv(path: str | Path, names: list[str]) -> list[dict]:
    """A fixed list of episodes, as the course gives them: a header `episode_id`,
    then `class<i>_support<j>` columns (file names) and `query<k>` columns. Returns per
    episode {"id", "support": [[file, ...] per class], "query": [file, ...]}; every file must
    be one of `names` (the image list it refers to), or the message names it."""
    path = Path(path)
    known = set(names)
    header, rows = read_table(path, "episode file")
    if "episode_id" not in header:
        raise DataError(f"{path}: expected a header starting with episode_id")
    support: dict[int, list[str]] = {}
    query_cols = []
    for column in header:
        if m := _SUPPORT.match(column):
            support.setdefault(int(m.group(1)), []).append(column)
        elif _QUERY.match(column):
            query_cols.append(column)
        elif column.startswith(("class", "query")):  # other columns are left alone
            raise DataError(f"{path}: column {column!r} is neither class<i>_support<j> nor "
                            "query<k> (i, j and k numbers)")  # fmt: skip
    if not support or not query_cols:
        raise DataError(f"{path}: no class<i>_support<j> or query<k> columns")
    ways = [support[w] for w in sorted(support)]
    if len({len(cols) for cols in ways}) > 1:
        shots = ", ".join(f"class{w} {len(support[w])}" for w in sorted(support))
        raise DataError(f"{path}: every class needs as many support columns ({shots})")
    out = []
    for line, row in rows:
        for column in [c for cols in ways for c in cols] + query_cols:
            if not row[column]:
                raise DataError(f"{path}, line {line}: {column} is empty")
            if row[column] not in known:
                raise DataError(f"{path}, line {line}: {row[column]} is not in the image list")
        out.append({"id": row["episode_id"], "support": [[row[c] for c in cols] for cols in ways],
                    "query": [row[c] for c in query_cols]})  # fmt: skip
    return out


def list_files(root: Path) -> dict[str, Path]:
    """train.csv (meta-train), test.csv or else val.csv (meta-test), and val.csv as the
    validation classes when test.csv is there too."""
    files = {"train": root / "train.csv"}
    if (root / "test.csv").is_file():
        files["test"] = root / "test.csv"
        if (root / "val.csv").is_file():
            files["val"] = root / "val.csv"
    elif (root / "val.csv").is_file():
        files["test"] = root / "val.csv"
    else:
        raise DataError(f"{root} has train.csv but no val.csv or test.csv")
    return files


def _disjoint(path: Path, labels: list[str], classes: list[str]) -> list[str]:
    """The classes of a list, sorted; DataError if another list has one of them."""
    mine = sorted(set(labels))
    if clash := sorted(set(mine) & set(classes)):
        raise DataError(f"{path} repeats classes of another list: {', '.join(clash[:5])}; "
                        "few-shot splits must have disjoint classes")  # fmt: skip
    return mine


def check_lists(root: Path, episodes_csv: str | None = None) -> None:
    """Before a run: every list readable, its files whole images in bounds, the lists'
    classes disjoint, and the episode file (if any) naming images of the meta-test list."""
    from engine.data.checks import check_images

    classes: list[str] = []
    lists = {split: image_list(path, root) for split, path in list_files(root).items()}
    for listed in lists.values():
        classes += _disjoint(listed.path, listed.labels, classes)
        check_images(listed.files, root)
    if episodes_csv:
        read_episode_csv(episodes_csv, lists["test"].names)


def load_lists(root: Path, size: int, val_fraction: float, seed: int) -> Splits:
    """The splits of the image lists in `root` (see `list_files`)."""
    from engine.data.datasets import _split

    files = list_files(root)
    parts, classes, names = {}, [], []
    for split, path in files.items():
        x, labels, filenames = read_image_list(path, size, root)
        mine = _disjoint(path, labels, classes)
        index = {c: len(classes) + i for i, c in enumerate(mine)}
        classes += mine
        y = torch.tensor([index[c] for c in labels])
        parts[split] = ImageSet(x, y, torch.arange(len(names), len(names) + len(y)))
        names += filenames
    if "val" not in parts:
        train = parts["train"]
        rest, held = _split(np.arange(len(train)), train.labels.numpy(), val_fraction, seed)
        parts["train"], parts["val"] = train.subset(rest), train.subset(held)
    source = f"few-shot image lists in {root} ({', '.join(p.name for p in files.values())})"
    return Splits(parts["train"], parts["val"], parts["test"], classes, source, names=names)
