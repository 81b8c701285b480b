import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from engine.config import DataConfig
from engine.data import DataError, check_source, load_dataset
from engine.data.sources import CIFAR10_CLASSES, read_cifar10, read_image_folder, read_prefixed

# --- digits (the embedded default) ---------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig())


def test_digits_has_1797_uint8_rgb_images_over_the_splits(digits):
    parts = (digits.train, digits.val, digits.test)
    assert sum(len(p) for p in parts) == 1797
    for p in parts:
        assert p.images.dtype == torch.uint8
        assert p.images.shape == (len(p), 3, 32, 32)
        assert p.labels.dtype == torch.int64
    assert digits.classes == [str(i) for i in range(10)]
    for p in (digits.val, digits.test):  # 15% each, give or take per-class rounding
        assert abs(len(p) - 0.15 * 1797) <= 10


def test_digits_splits_are_disjoint_and_cover_every_image(digits):
    ids = [set(p.ids.tolist()) for p in (digits.train, digits.val, digits.test)]
    assert not ids[0] & ids[1] and not ids[0] & ids[2] and not ids[1] & ids[2]
    assert set().union(*ids) == set(range(1797))


def test_digits_splits_are_stratified(digits):
    for part in (digits.train, digits.val, digits.test):
        counts = torch.bincount(part.labels, minlength=10)
        share = counts.float() / len(part)
        assert (counts > 0).all()
        assert share.min() > 0.07 and share.max() < 0.13  # ~1/10 each, as in the full set


def test_digits_labels_and_pixels_follow_the_ids(digits):
    from sklearn.datasets import load_digits

    source = load_digits()
    for part in (digits.train, digits.val, digits.test):
        assert torch.equal(part.labels, torch.from_numpy(source.target[part.ids.numpy()]))
    # The grey 8x8 digit is replicated into 3 equal channels; the brightest source pixel is white.
    assert torch.equal(digits.train.images[:, 0], digits.train.images[:, 2])
    assert digits.train.images.max() == 255


def test_digits_load_is_identical_twice(digits):
    again = load_dataset(DataConfig())
    for a, b in zip(
        (digits.train, digits.val, digits.test), (again.train, again.val, again.test), strict=True
    ):
        assert torch.equal(a.images, b.images)
        assert torch.equal(a.labels, b.labels)
        assert torch.equal(a.ids, b.ids)


def test_digits_split_seed_and_image_size_are_used(digits):
    other = load_dataset(DataConfig(split_seed=1, image_size=16))
    assert other.train.images.shape[1:] == (3, 16, 16)
    assert not torch.equal(other.test.ids, digits.test.ids)


# --- image folders and label-prefixed files ---------------------------------------------------

COLOURS = {"bird": (250, 10, 10), "cat": (10, 250, 10), "dog": (10, 10, 250)}


def _png(path, colour, size=(10, 12), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", size, colour)
    if mode != "RGB":
        im = im.convert(mode)
    im.save(path)


def _colour_of(image: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(v) for v in image.float().mean(dim=(1, 2)).round())


def _image_folder(root, per_class=3):
    for name, colour in COLOURS.items():
        for i in range(per_class):
            _png(root / name / f"img{i}.png", colour, size=(10 + i, 12))
    # Not images, or not classes: ignored.
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / ".ipynb_checkpoints").mkdir()
    return root


def test_image_folder_classes_are_folder_names_and_labels_match(tmp_path):
    root = _image_folder(tmp_path / "pets")
    _png(root / "dog" / "grey.png", COLOURS["dog"], mode="RGBA")  # converted to RGB
    images, labels, classes = read_image_folder(root, 8)
    assert classes == ["bird", "cat", "dog"]
    assert images.shape == (10, 3, 8, 8) and images.dtype == torch.uint8
    assert torch.bincount(labels).tolist() == [3, 3, 4]
    for image, label in zip(images, labels, strict=True):
        assert _colour_of(image) == COLOURS[classes[label]]


def test_image_folder_through_load_dataset(tmp_path):
    root = _image_folder(tmp_path / "pets", per_class=4)
    splits = load_dataset(DataConfig(name="folder", path=str(root), image_size=8))
    assert splits.classes == ["bird", "cat", "dog"]
    assert len(splits.train) + len(splits.val) + len(splits.test) == 12
    assert splits.image_size == 8
    for part in (splits.train, splits.val, splits.test):
        assert set(part.labels.tolist()) == {0, 1, 2}
        for image, label in zip(part.images, part.labels, strict=True):
            assert _colour_of(image) == COLOURS[splits.classes[label]]
    assert str(root) in splits.source


def test_prefixed_files_are_labelled_by_prefix_in_numeric_order(tmp_path):
    colours = {"2": (200, 0, 0), "3": (0, 200, 0), "10": (0, 0, 200)}
    for label, colour in colours.items():
        for n in (1, 12, 7):
            _png(tmp_path / f"{label}_{n}.png", colour)
    images, labels, classes = read_prefixed(tmp_path, 8)
    assert classes == ["2", "3", "10"]  # numeric, not text, order
    assert len(labels) == 9 and torch.bincount(labels).tolist() == [3, 3, 3]
    for image, label in zip(images, labels, strict=True):
        assert _colour_of(image) == colours[classes[label]]


def test_prefixed_file_not_following_the_pattern_is_named(tmp_path):
    _png(tmp_path / "3_12.png", (0, 0, 0))
    _png(tmp_path / "4_1.png", (0, 0, 0))
    _png(tmp_path / "holiday.png", (0, 0, 0))
    with pytest.raises(DataError) as e:
        read_prefixed(tmp_path, 8)
    assert str(tmp_path / "holiday.png") in str(e.value)


def test_prefixed_single_label_is_refused(tmp_path):
    _png(tmp_path / "3_1.png", (0, 0, 0))
    _png(tmp_path / "3_2.png", (0, 0, 0))
    with pytest.raises(DataError, match="only the label '3'"):
        read_prefixed(tmp_path, 8)


def test_corrupt_image_is_named(tmp_path):
    root = _image_folder(tmp_path / "pets")
    bad = root / "cat" / "broken.png"
    bad.write_bytes(os.urandom(200))
    with pytest.raises(DataError) as e:
        read_image_folder(root, 8)
    assert str(bad) in str(e.value)


def test_empty_class_folder_is_named(tmp_path):
    root = _image_folder(tmp_path / "pets")
    (root / "empty_class").mkdir()
    with pytest.raises(DataError) as e:
        read_image_folder(root, 8)
    assert str(root / "empty_class") in str(e.value) and "no images" in str(e.value)


def test_missing_dataset_folder_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as e:
        load_dataset(DataConfig(name="folder", path=str(missing)))
    assert str(missing) in str(e.value)


def test_class_too_small_to_split_is_named(tmp_path):
    root = _image_folder(tmp_path / "pets")
    for p in list((root / "bird").glob("*.png"))[1:]:
        p.unlink()
    with pytest.raises(DataError, match="class 'bird' has 1 image"):
        load_dataset(DataConfig(name="folder", path=str(root), image_size=8))


# --- CIFAR-10 python batches -------------------------------------------------------------------


def _cifar_batch(n, first_label, rng):
    labels = [(first_label + i) % 10 for i in range(n)]
    return {
        b"batch_label": b"a test batch",
        b"labels": labels,  # a plain list, as in the real files
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def _write_cifar(root, protocol=2, n_train=6, n_test=5, seed=0):
    """Five training batches of `n_train` rows and a test batch, pickled like the real ones."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    batches = {}
    for i in range(1, 6):
        batches[f"data_batch_{i}"] = _cifar_batch(n_train, (i - 1) * n_train, rng)
    batches["test_batch"] = _cifar_batch(n_test, 3, rng)
    for name, d in batches.items():
        with open(root / name, "wb") as f:
            pickle.dump(d, f, protocol=protocol)
    return batches


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL])
def test_cifar10_batches_are_read(tmp_path, protocol):
    batches = _write_cifar(tmp_path, protocol=protocol)
    x, y, tx, ty, classes = read_cifar10(tmp_path, 32)
    assert classes == CIFAR10_CLASSES
    assert x.shape == (30, 3, 32, 32) and x.dtype == torch.uint8
    assert tx.shape == (5, 3, 32, 32)
    train_rows = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    assert y.tolist() == sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    # Each row is 1024 red, then 1024 green, then 1024 blue values, row-major.
    assert torch.equal(x[4, 1], torch.from_numpy(train_rows[4, 1024:2048].reshape(32, 32)))
    assert torch.equal(tx.reshape(5, -1), torch.from_numpy(batches["test_batch"][b"data"]))
    assert ty.tolist() == batches["test_batch"][b"labels"]


def test_cifar10_test_split_is_the_test_batch(tmp_path):
    batches = _write_cifar(tmp_path / "cifar-10-batches-py")  # the folder the archive unpacks to
    splits = load_dataset(DataConfig(name="cifar10", path=str(tmp_path), image_size=16))
    test = batches["test_batch"]
    assert len(splits.test) == 5 and len(splits.train) + len(splits.val) == 30
    assert splits.test.labels.tolist() == test[b"labels"]
    assert splits.train.images.shape[1:] == (3, 16, 16)
    assert splits.test.images.shape == (5, 3, 16, 16)
    train_ids = set(splits.train.ids.tolist()) | set(splits.val.ids.tolist())
    assert train_ids == set(range(30)) and set(splits.test.ids.tolist()) == set(range(30, 35))
    assert set(splits.val.labels.tolist()) == set(range(10))  # stratified: 3 images per class


def _rewrite(path, d):
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)


def test_cifar10_wrong_data_shape_is_named(tmp_path):
    batches = _write_cifar(tmp_path)
    bad = {**batches["data_batch_3"], b"data": np.zeros((6, 100), np.uint8)}
    _rewrite(tmp_path / "data_batch_3", bad)
    with pytest.raises(DataError) as e:
        read_cifar10(tmp_path, 32)
    assert str(tmp_path / "data_batch_3") in str(e.value) and "(6, 100)" in str(e.value)


def test_cifar10_labels_out_of_range_are_named(tmp_path):
    batches = _write_cifar(tmp_path)
    _rewrite(tmp_path / "test_batch", {**batches["test_batch"], b"labels": [0, 1, 2, 3, 12]})
    with pytest.raises(DataError) as e:
        read_cifar10(tmp_path, 32)
    assert str(tmp_path / "test_batch") in str(e.value) and "0..12" in str(e.value)


def test_cifar10_file_that_is_not_a_pickle_is_named(tmp_path):
    _write_cifar(tmp_path)
    (tmp_path / "data_batch_2").write_bytes(os.urandom(300))
    with pytest.raises(DataError) as e:
        read_cifar10(tmp_path, 32)
    assert str(tmp_path / "data_batch_2") in str(e.value)
    assert "not a CIFAR-10 python batch" in str(e.value)


def test_cifar10_pickle_of_the_wrong_thing_is_named(tmp_path):
    _write_cifar(tmp_path)
    _rewrite(tmp_path / "data_batch_1", [1, 2, 3])
    with pytest.raises(
        DataError, match="data_batch_1 is not a CIFAR-10 python batch: holds a list"
    ):
        read_cifar10(tmp_path, 32)


def test_cifar10_missing_test_batch_is_named(tmp_path):
    _write_cifar(tmp_path)
    (tmp_path / "test_batch").unlink()
    with pytest.raises(DataError) as e:
        read_cifar10(tmp_path, 32)
    assert str(tmp_path / "test_batch") in str(e.value) and "missing" in str(e.value)


class _RunsAShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _CallsEval:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("payload", [_RunsAShellCommand, _CallsEval])
def test_cifar10_pickle_that_runs_code_is_refused_without_running_it(tmp_path, payload):
    batches = _write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    evil = {**batches["data_batch_1"], b"data": payload(marker)}
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump(evil, f, protocol=2)
    with pytest.raises(DataError) as e:
        read_cifar10(tmp_path, 32)
    assert str(tmp_path / "data_batch_1") in str(e.value) and "refusing" in str(e.value)
    assert not marker.exists()


# --- check_source: the cheap checks before a run starts ------------------------------------------


def test_check_source_accepts_good_sources(tmp_path):
    check_source("digits", None)
    check_source("folder", str(_image_folder(tmp_path / "pets")))
    _png(tmp_path / "flat" / "1_1.png", (0, 0, 0))
    check_source("prefixed", str(tmp_path / "flat"))
    _write_cifar(tmp_path / "c10")
    check_source("cifar10", str(tmp_path / "c10"))


def test_check_source_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="the 'folder' dataset needs a folder path"):
        check_source("folder", None)
    missing = tmp_path / "missing"
    with pytest.raises(DataError, match=f"{missing} does not exist"):
        check_source("folder", str(missing))
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(DataError, match=f"{a_file} is not a folder"):
        check_source("prefixed", str(a_file))
    one_class = tmp_path / "one"
    (one_class / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="at least 2\\); found 1"):
        check_source("folder", str(one_class))
    with pytest.raises(DataError, match="holds no image files"):
        check_source("prefixed", str(one_class))
    _write_cifar(tmp_path / "c10")
    (tmp_path / "c10" / "data_batch_3").unlink()
    (tmp_path / "c10" / "test_batch").unlink()
    with pytest.raises(DataError) as e:
        check_source("cifar10", str(tmp_path / "c10"))
    assert "data_batch_3, test_batch" in str(e.value) and str(tmp_path / "c10") in str(e.value)


def test_check_source_of_an_unknown_users_home_is_a_data_error():
    # Path.expanduser raises RuntimeError for "~nobody/...": a user's typo, not a crash.
    with pytest.raises(DataError, match="~nosuchuser12345/x"):
        check_source("folder", "~nosuchuser12345/x")
    with pytest.raises(DataError, match="~nosuchuser12345/x"):
        load_dataset(DataConfig(name="prefixed", path="~nosuchuser12345/x"))
