"""Land-cover data made here: the synthetic scenes written to disk, and the segmentation
loader's augmentation. Pairs and folders on disk: test_landcover_files.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.config import DataConfig
from engine.data import (
    ImageSet,
    SegmentationLoader,
    landcover,
    load_dataset,
)
from engine.data.landcover import (
    CLASS_NAMES,
    SCORED_CLASSES,
    UNKNOWN,
    load_landcover,
    synthetic_landcover_dir,
    synthetic_scene,
)

# --- the synthetic scenes --------------------------------------------------------------------


def test_synthetic_scenes_are_deterministic_and_differ_by_index():
    image, labels = synthetic_scene(3, 64)
    image2, labels2 = synthetic_scene(3, 64)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert labels.shape == (64, 64) and labels.dtype == np.uint8
    np.testing.assert_array_equal(image, image2)
    np.testing.assert_array_equal(labels, labels2)
    other_image, other_labels = synthetic_scene(4, 64)
    assert not np.array_equal(image, other_image)
    assert not np.array_equal(labels, other_labels)
    assert not np.array_equal(synthetic_scene(3, 64, seed=1)[0], image)


def test_every_scored_class_appears_across_fifty_scenes():
    counts = np.zeros(7, dtype=np.int64)
    for i in range(50):
        counts += np.bincount(synthetic_scene(i, 48)[1].ravel(), minlength=7)
    assert (counts[:UNKNOWN] > 0).all(), dict(zip(CLASS_NAMES, counts, strict=True))
    assert counts.max() < 0.6 * counts.sum()  # no class swamps the others


def test_synthetic_unknown_pixels_are_black_in_the_image():
    for i in range(50):
        image, labels = synthetic_scene(i, 48)
        if (labels == UNKNOWN).any():
            assert (image[labels == UNKNOWN] == 0).all()
            return
    pytest.fail("no scene of the first 50 has an Unknown (no-data) corner")


@pytest.fixture
def small_counts(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(landcover, "SYNTHETIC_COUNTS", {"train": 3, "validation": 2, "test": 1})
    return tmp_path / "data" / "generated"


def test_synthetic_folder_is_written_once_with_the_counts_per_split(small_counts, monkeypatch):
    folder = synthetic_landcover_dir(size=32)
    assert folder.parent == small_counts
    assert folder.name == f"landcover-v{landcover.SYNTHETIC_VERSION}-32px-3-2-1-s0"
    for split, stems in (("train", [0, 1, 2]), ("validation", [3, 4]), ("test", [5])):
        names = sorted(p.name for p in (folder / split).iterdir())
        assert names == sorted(
            [f"{i:04d}_sat.jpg" for i in stems] + [f"{i:04d}_mask.png" for i in stems]
        )
    assert [p.name for p in small_counts.iterdir()] == [folder.name]  # no temporary left

    def must_not_run(*args, **kwargs):
        raise AssertionError("the synthetic scenes were generated a second time")

    monkeypatch.setattr(landcover, "write_synthetic_landcover", must_not_run)
    assert synthetic_landcover_dir(size=32) == folder


def test_other_counts_or_sizes_get_their_own_folder(small_counts, monkeypatch):
    first = synthetic_landcover_dir(size=32)
    monkeypatch.setattr(landcover, "SYNTHETIC_COUNTS", {"train": 2, "validation": 1, "test": 1})
    second = synthetic_landcover_dir(size=32)
    assert second != first and second.name.endswith("32px-2-1-1-s0")
    assert len(list((second / "train").glob("*_sat.jpg"))) == 2


def test_a_failed_generation_leaves_no_folder_behind(small_counts, monkeypatch):
    def half_then_fail(folder, size, seed):
        (folder / "train").mkdir()
        (folder / "train" / "0000_sat.jpg").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(landcover, "write_synthetic_landcover", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        synthetic_landcover_dir(size=32)
    assert list(small_counts.iterdir()) == []  # neither the target nor a temporary folder


def test_a_folder_finished_meanwhile_by_another_process_is_used(small_counts, monkeypatch):
    write = landcover.write_synthetic_landcover
    target = small_counts / f"landcover-v{landcover.SYNTHETIC_VERSION}-32px-3-2-1-s0"

    def racing(folder, size, seed):
        write(target, size, seed)  # the other process renames its copy into place first
        return write(folder, size, seed)

    monkeypatch.setattr(landcover, "write_synthetic_landcover", racing)
    assert synthetic_landcover_dir(size=32) == target
    assert [p.name for p in small_counts.iterdir()] == [target.name]


def test_the_written_scenes_read_back_exactly_through_the_real_loader(small_counts):
    folder = synthetic_landcover_dir(size=32)
    splits = load_landcover(folder, 32, 0.2, 0.2, 0, source="synthetic")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3, 2, 1)
    assert splits.source == "synthetic"  # a test/ folder: nothing to say
    for part in (splits.train, splits.val, splits.test):
        for image, mask, i in zip(part.images, part.labels, part.ids, strict=True):
            index = int(splits.names[int(i)])
            want_image, want_labels = synthetic_scene(index, 32)
            np.testing.assert_array_equal(mask.numpy(), want_labels)  # PNG: exact
            error = np.abs(image.permute(1, 2, 0).numpy().astype(int) - want_image)
            assert error.mean() < 8  # JPEG at quality 92: close, not exact


def test_load_dataset_landcover_is_the_synthetic_default(small_counts):
    splits = load_dataset(DataConfig(name="landcover", image_size=64))
    assert splits.source.startswith("synthetic land-cover scenes")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3, 2, 1)
    assert splits.train.images.shape == (3, 3, 64, 64)
    assert splits.train.labels.shape == (3, 64, 64)
    assert splits.classes == SCORED_CLASSES
    assert [splits.names[int(i)] for i in splits.test.ids] == ["0005"]
    assert len(list(small_counts.iterdir())) == 1


# --- the segmentation loader -----------------------------------------------------------------


def _position_set(n: int, size: int = 8) -> ImageSet:
    """Images whose channels hold (row, column, sample) and masks that hold row * size + col:
    wherever a pixel moves, both say where it came from."""
    rows = torch.arange(size).view(1, size, 1).expand(n, size, size)
    cols = torch.arange(size).view(1, 1, size).expand(n, size, size)
    sample = torch.arange(n).view(n, 1, 1).expand(n, size, size)
    images = torch.stack([rows, cols, sample], 1).to(torch.uint8).contiguous()
    masks = (rows * size + cols).to(torch.uint8).contiguous()
    return ImageSet(images, masks, torch.arange(100, 100 + n))


def _loader(data, augment=True, seed=0, batch_size=16):
    # mean 0, std 1: a normalised image is pixel / 255, so positions can be read back.
    return SegmentationLoader(data, batch_size, [0.0] * 3, [1.0] * 3, "cpu", True, augment, seed)


def _dihedral_variants(m: torch.Tensor) -> list[torch.Tensor]:
    variants = []
    for t in (m, m.T):
        for r in range(4):
            variants.append(torch.rot90(t, r))
    return variants


def test_augmentation_moves_image_and_mask_alike_through_all_eight_symmetries():
    data = _position_set(64)
    base = data.labels[0].long()
    variants = _dihedral_variants(base)
    seen = set()
    for x, y, idx in _loader(data).batches(epoch=1):
        assert y.dtype == torch.int64 and y.shape == (len(idx), 8, 8)
        pos = (x * 255).round().long()  # (B, 3, 8, 8): row, column, sample
        assert torch.equal(y, pos[:, 0] * 8 + pos[:, 1])  # same move for image and mask
        assert torch.equal(pos[:, 2], idx[:, None, None].expand(-1, 8, 8))
        for mask in y:
            match = [k for k, v in enumerate(variants) if torch.equal(mask, v)]
            assert len(match) == 1  # a symmetry of the square, nothing else
            seen.add(match[0])
    assert seen == set(range(8))


def test_without_augmentation_masks_are_the_labels_as_int64():
    data = _position_set(20)
    for x, y, idx in _loader(data, augment=False).batches(epoch=1):
        assert y.dtype == torch.int64
        assert torch.equal(y, data.labels[idx].long())
        assert torch.equal((x * 255).round().to(torch.uint8), data.images[idx])


def test_segmentation_batches_are_reproducible_for_a_seed_and_epoch():
    data = _position_set(40)

    def batches(seed, epoch):
        return list(_loader(data, seed=seed).batches(epoch=epoch))

    first, again = batches(0, 2), batches(0, 2)
    for (xa, ya, ia), (xb, yb, ib) in zip(first, again, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ia, ib)
    tail = list(_loader(data).batches(epoch=2, start=1))  # a mid-epoch resume
    for (xa, ya, _), (xb, yb, _) in zip(first[1:], tail, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    other = batches(0, 3)
    assert not torch.equal(first[0][2], other[0][2])


def test_synthetic_rivers_run_both_ways():
    across = down = 0  # scenes with water in (almost) every column / every row
    for i in range(100):
        water = synthetic_scene(i, 64)[1] == CLASS_NAMES.index("Water")
        across += water.any(0).mean() >= 0.95
        down += water.any(1).mean() >= 0.95
    assert across >= 12 and down >= 12, (across, down)
