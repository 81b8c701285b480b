"""Pre-split image folders: `train/` and `val/` (and optionally `test/`), one folder per class."""

import shutil

import pytest
import torch
from PIL import Image

from engine.config import DataConfig
from engine.data import DataError, check_source, load_dataset
from engine.data.sources import presplit_folders, read_image_folder

CLASSES = ["bird", "cat", "dog"]
# Each image is one solid colour: its class picks the channel, its split the brightness, so
# every loaded image says where it came from.
BRIGHTNESS = {"train": 250, "val": 180, "test": 110}


def _colour(cls: str, split: str) -> tuple[int, int, int]:
    colour = [10, 10, 10]
    colour[CLASSES.index(cls)] = BRIGHTNESS[split]
    return tuple(colour)


def _write(folder, cls, split, n):
    (folder / cls).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (9 + i, 11), _colour(cls, split)).save(folder / cls / f"{split}{i}.png")


FULL = {"train": 7, "val": 3, "test": 2}  # images per class in each split


def _presplit(root, counts=FULL):
    for split, n in counts.items():
        for cls in CLASSES:
            _write(root / split, cls, split, n)
    return root


def _origin(image: torch.Tensor) -> tuple[str, str]:
    """(class, split) of a loaded solid-colour image."""
    colour = image.float().mean(dim=(1, 2))
    cls = CLASSES[int(colour.argmax())]
    split = min(BRIGHTNESS, key=lambda s: abs(BRIGHTNESS[s] - colour.max().item()))
    return cls, split


def _load(root, size=8, **kw):
    return load_dataset(DataConfig(name="folder", path=str(root), image_size=size, **kw))


def test_train_val_and_test_folders_are_used_as_given(tmp_path):
    root = _presplit(tmp_path / "pets")
    (root / "val" / ".ipynb_checkpoints").mkdir()  # hidden: not a class
    splits = _load(root)
    assert splits.classes == CLASSES
    assert (len(splits.train), len(splits.val), len(splits.test)) == (21, 9, 6)
    for name, part in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
        assert part.images.shape[1:] == (3, 8, 8)
        assert torch.bincount(part.labels).tolist() == [len(part) // 3] * 3
        for image, label in zip(part.images, part.labels, strict=True):
            assert _origin(image) == (CLASSES[label], name)
    ids = [set(p.ids.tolist()) for p in (splits.train, splits.val, splits.test)]
    assert set().union(*ids) == set(range(36)) and sum(map(len, ids)) == 36  # unique ids
    assert "train/" in splits.source and "val/" in splits.source and "test/" in splits.source
    assert str(root) in splits.source


def test_without_test_folder_a_stratified_part_of_train_becomes_the_test_set(tmp_path):
    root = _presplit(tmp_path / "pets", counts={"train": 10, "val": 3})
    splits = _load(root, test_fraction=0.2)
    assert len(splits.val) == 9
    assert all(_origin(im)[1] == "val" for im in splits.val.images)
    # 2 of each class's 10 training images are held out for testing; none is in both.
    assert torch.bincount(splits.test.labels).tolist() == [2, 2, 2]
    assert torch.bincount(splits.train.labels).tolist() == [8, 8, 8]
    for part in (splits.train, splits.test):
        for image, label in zip(part.images, part.labels, strict=True):
            assert _origin(image) == (CLASSES[label], "train")
    train_ids, test_ids = set(splits.train.ids.tolist()), set(splits.test.ids.tolist())
    assert not train_ids & test_ids and train_ids | test_ids == set(range(30))
    assert "test carved from train/" in splits.source
    # The carve is seeded: the same split every time, another with another seed.
    assert torch.equal(_load(root, test_fraction=0.2).test.ids, splits.test.ids)
    assert not torch.equal(_load(root, test_fraction=0.2, split_seed=5).test.ids, splits.test.ids)


@pytest.mark.parametrize("split", ["val", "test"])
def test_a_split_with_a_missing_class_folder_is_named(tmp_path, split):
    root = _presplit(tmp_path / "pets")
    for f in (root / split / "cat").iterdir():
        f.unlink()
    (root / split / "cat").rmdir()
    with pytest.raises(DataError) as raised:
        _load(root)
    message = str(raised.value)
    assert str(root / split) in message and "missing: cat" in message


def test_a_split_with_an_extra_class_folder_is_named(tmp_path):
    root = _presplit(tmp_path / "pets")
    shutil.copytree(root / "val" / "bird", root / "val" / "cow")
    with pytest.raises(DataError) as raised:
        _load(root)
    message = str(raised.value)
    assert str(root / "val") in message and "not in train/: cow" in message


def test_train_and_test_without_val_carve_val_out_of_train(tmp_path):
    root = _presplit(tmp_path / "pets", counts={"train": 7, "test": 2})
    check_source("folder", str(root))
    splits = _load(root)
    assert {_origin(im)[1] for im in splits.val.images} == {"train"}  # carved, stratified
    assert sorted(splits.val.labels.tolist()) == [0, 1, 2]
    assert {_origin(im)[1] for im in splits.test.images} == {"test"}  # as given
    assert len(splits.train) + len(splits.val) == 7 * len(CLASSES)
    assert "val carved from train/" in splits.source


def test_presplit_folders_tells_a_presplit_dataset_from_a_folder_per_class(tmp_path):
    plain = tmp_path / "plain"
    for cls in CLASSES:
        _write(plain, cls, "train", 4)
    assert presplit_folders(plain) is None
    root = _presplit(tmp_path / "pets", counts={"train": 4, "val": 2})
    assert presplit_folders(root) == {"train": root / "train", "val": root / "val"}
    root = _presplit(tmp_path / "pets3")
    assert set(presplit_folders(root)) == {"train", "val", "test"}
    check_source("folder", str(root))  # accepted: the classes are inside train/


def test_read_image_folder_with_classes_requires_exactly_those(tmp_path):
    root = _presplit(tmp_path / "pets", counts={"val": 2})
    images, labels, classes = read_image_folder(root / "val", 8, CLASSES)
    assert classes == CLASSES and len(images) == 6
    with pytest.raises(DataError, match="same class folders") as raised:
        read_image_folder(root / "val", 8, ["bird", "cat", "dog", "emu"])
    assert "missing: emu" in str(raised.value) and str(root / "val") in str(raised.value)


def test_a_folder_per_class_with_a_class_called_train_is_not_taken_for_a_split(tmp_path):
    for cls in ("train", "bus"):  # e.g. a vehicles dataset
        (tmp_path / cls).mkdir()
        for i in range(4):
            Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / cls / f"{i}.png")
    assert presplit_folders(tmp_path) is None
    splits = load_dataset(DataConfig(name="folder", path=str(tmp_path)))
    assert splits.classes == ["bus", "train"]


def test_check_source_names_a_split_whose_class_folders_differ(tmp_path):
    _presplit(tmp_path)
    shutil.rmtree(tmp_path / "val" / "dog")
    with pytest.raises(DataError, match=r"val must hold the same class folders"):
        check_source("folder", str(tmp_path))  # before any run is made, not when it starts
