"""MNIST-family IDX files (engine.data.idx): read from the layouts people have, and every
damaged file refused in one line that names it. The files are written by the tests."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from engine.config import ConfigError, DataConfig
from engine.data import DataError, check_source, idx, load_dataset
from engine.data.idx import FILES, find_idx_files, read_idx, write_idx


def make_idx(folder, n_train=40, n_test=20, classes=10, gz=True, seed=0):
    """Four IDX files with images whose brightness encodes the label (learnable)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = (np.arange(n) % classes).astype(np.uint8)
        rng.shuffle(labels)
        images = (labels[:, None, None] * 25 + rng.integers(0, 5, (n, 28, 28))).astype(np.uint8)
        prefix = "t10k" if split == "test" else "train"
        suffix = ".gz" if gz else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return folder


@pytest.fixture
def no_defaults(monkeypatch, tmp_path):
    """The usual places hold nothing (whatever this machine has installed)."""
    empty = tmp_path / "nowhere"
    monkeypatch.setattr(idx, "default_roots", lambda name: [empty])
    return empty


@pytest.mark.parametrize("gz", [True, False])
def test_a_folder_of_idx_files_loads_with_the_official_test_split(tmp_path, gz):
    make_idx(tmp_path / "fm", n_train=60, n_test=30, gz=gz)
    cfg = DataConfig(name="fashion_mnist", path=str(tmp_path / "fm"), val_fraction=0.2)
    s = load_dataset(cfg)
    # validation carved from train, stratified (6 per class x 0.2: one of each); test is t10k
    assert (len(s.train), len(s.val), len(s.test)) == (50, 10, 30)
    assert sorted(s.val.labels.tolist()) == list(range(10))
    assert s.train.images.shape[1:] == (3, 32, 32) and s.classes[0] == "T-shirt/top"
    # the three channels are the grey image, and brightness still encodes the label
    img = s.test.images.float()
    assert torch_equal_channels(img)
    mean = img.mean(dim=(1, 2, 3)).numpy()
    assert np.all(np.diff(mean[np.argsort(s.test.labels.numpy())]) >= -1)


def torch_equal_channels(images) -> bool:
    return bool((images[:, 0] == images[:, 1]).all() and (images[:, 1] == images[:, 2]).all())


def test_torchvision_s_layout_and_the_default_place_are_found(tmp_path, monkeypatch):
    make_idx(tmp_path / "root" / "FashionMNIST" / "raw")
    files = find_idx_files("fashion_mnist", tmp_path / "root")
    assert files["train_images"].parent == tmp_path / "root" / "FashionMNIST" / "raw"
    make_idx(tmp_path / "system")
    monkeypatch.setattr(idx, "default_roots", lambda name: [tmp_path / "system"])
    s = load_dataset(DataConfig(name="mnist"))  # no path: found where a package puts it
    assert len(s.test) == 20 and s.classes == [str(i) for i in range(10)]
    check_source("mnist", None)  # the check before a run agrees


def test_missing_files_say_what_to_download_and_where(tmp_path, no_defaults):
    with pytest.raises(DataError) as e:
        find_idx_files("fashion_mnist")
    msg = str(e.value)
    assert "train-images-idx3-ubyte" in msg and "zalandoresearch" in msg
    assert str(no_defaults) in msg and "\n" not in msg
    with pytest.raises(DataError, match="apt-get install -y dataset-fashion-mnist"):
        find_idx_files("fashion_mnist")
    make_idx(tmp_path / "part")
    (tmp_path / "part" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*missing"):
        check_source("kmnist", str(tmp_path / "part"))


def test_a_truncated_file_is_named(tmp_path):
    folder = make_idx(tmp_path / "d", gz=False)
    path = folder / FILES["train_images"]
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=f"{path}.* is truncated") as e:
        check_source("fashion_mnist", str(folder))
    assert "\n" not in str(e.value)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 3, 0, 0]))  # the header itself cut short
    with pytest.raises(DataError, match="truncated"):
        read_idx(short, 3)


def test_a_truncated_gzip_stream_is_named(tmp_path):
    folder = make_idx(tmp_path / "d")
    path = folder / (FILES["test_images"] + ".gz")
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(DataError, match=str(path)):
        load_dataset(DataConfig(name="fashion_mnist", path=str(folder)))


def test_a_wrong_magic_number_is_named(tmp_path):
    folder = make_idx(tmp_path / "d", gz=False)
    images = folder / FILES["train_images"]
    labels = folder / FILES["train_labels"]
    images.write_bytes(labels.read_bytes())  # a labels file where the images should be
    with pytest.raises(DataError, match=f"{images} is not an IDX file of 3-D.*0x00000801"):
        check_source("fashion_mnist", str(folder))
    with pytest.raises(DataError, match="not an IDX file"):
        images.write_bytes(b"PK\x03\x04" + b"\0" * 100)  # a zip, say
        read_idx(images, 3)


def test_a_count_mismatch_between_labels_and_images_is_named(tmp_path):
    folder = make_idx(tmp_path / "d")
    write_idx(folder / (FILES["train_labels"] + ".gz"), np.zeros(39, np.uint8))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz holds 39 labels but "
                       "train-images-idx3-ubyte.gz 40 images"):  # fmt: skip
        check_source("fashion_mnist", str(folder))


def test_a_label_beyond_the_classes_is_named(tmp_path):
    folder = make_idx(tmp_path / "d")
    write_idx(folder / (FILES["test_labels"] + ".gz"), np.full(20, 10, np.uint8))
    with pytest.raises(DataError, match=r"labels must lie in 0\.\.9, found 10"):
        load_dataset(DataConfig(name="fashion_mnist", path=str(folder)))


def test_a_huge_declared_shape_is_refused_before_anything_is_allocated(tmp_path):
    path = tmp_path / "huge.gz"
    with gzip.open(path, "wb") as f:  # declares 2**32 - 1 images of 28x28: 3 TB
        f.write(bytes([0, 0, 8, 3]) + (2**32 - 1).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2)
    with pytest.raises(DataError, match="declares .* bytes of values, more than"):
        read_idx(path, 3)


def test_an_image_size_that_would_not_fit_in_memory_is_refused(tmp_path, monkeypatch):
    folder = make_idx(tmp_path / "d")
    monkeypatch.setattr(idx, "MAX_DECODED_BYTES", 60 * 3 * 64 * 64 - 1)
    with pytest.raises(DataError, match="at data.image_size 64 would take"):
        load_dataset(DataConfig(name="fashion_mnist", path=str(folder), image_size=64))
    load_dataset(DataConfig(name="fashion_mnist", path=str(folder), image_size=32))  # control


def test_the_idx_datasets_need_no_path_but_others_still_do():
    DataConfig(name="fashion_mnist").validate()
    with pytest.raises(ConfigError, match="data.path is required"):
        DataConfig(name="cifar10").validate()
