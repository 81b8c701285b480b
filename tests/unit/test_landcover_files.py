"""Land-cover data: the colour map, DeepGlobe-style pairs and their folders, the synthetic
scenes written to disk, and the segmentation loader's augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from engine.config import DataConfig
from engine.data import (
    DataError,
    ImageSet,
    SegmentationLoader,
    check_source,
    landcover,
    load_dataset,
)
from engine.data.landcover import (
    CLASS_COLOURS,
    CLASS_NAMES,
    SCORED_CLASSES,
    UNKNOWN,
    find_pairs,
    labels_to_rgb,
    load_landcover,
    mask_to_labels,
    read_pair,
    read_pairs,
    split_folders,
    synthetic_landcover_dir,
    synthetic_scene,
)


def write_pairs(folder, indices, size=16):
    """`xxxx_sat.jpg` / `xxxx_mask.png` pairs of synthetic scenes; returns their labels."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = {}
    for i in indices:
        image, lab = synthetic_scene(i, size)
        Image.fromarray(image).save(folder / f"{i:04d}_sat.jpg")
        Image.fromarray(labels_to_rgb(lab)).save(folder / f"{i:04d}_mask.png")
        labels[f"{i:04d}"] = lab
    return labels


def _stems(splits, part) -> list[str]:
    return [splits.names[int(i)] for i in part.ids]


# --- the colour map --------------------------------------------------------------------------


def test_the_seven_deepglobe_colours_map_to_their_classes_and_back():
    assert CLASS_NAMES[UNKNOWN] == "Unknown" and len(CLASS_COLOURS) == 7
    assert list(CLASS_NAMES[:6]) == SCORED_CLASSES
    expected = {
        (0, 255, 255): "Urban",
        (255, 255, 0): "Agriculture",
        (255, 0, 255): "Rangeland",
        (0, 255, 0): "Forest",
        (0, 0, 255): "Water",
        (255, 255, 255): "Barren",
        (0, 0, 0): "Unknown",
    }
    rgb = np.array([list(expected)], dtype=np.uint8)  # (1, 7, 3)
    labels = mask_to_labels(rgb)
    assert labels.dtype == np.uint8
    assert [CLASS_NAMES[i] for i in labels[0]] == list(expected.values())
    np.testing.assert_array_equal(labels_to_rgb(labels), rgb)
    every = np.arange(7, dtype=np.uint8).reshape(1, 7)
    np.testing.assert_array_equal(mask_to_labels(labels_to_rgb(every)), every)


@pytest.mark.parametrize(
    "colour, name",
    [
        ((200, 30, 250), "Rangeland"),  # JPEG-ish magenta
        ((128, 128, 0), "Agriculture"),  # 128 is on the bright side of the threshold
        ((127, 127, 127), "Unknown"),  # and 127 on the dark side
        ((10, 140, 250), "Urban"),
        ((5, 200, 90), "Forest"),
        ((60, 20, 180), "Water"),
        ((130, 250, 140), "Barren"),
    ],
)
def test_each_channel_is_thresholded_at_128(colour, name):
    rgb = np.full((2, 3, 3), colour, dtype=np.uint8)
    assert (mask_to_labels(rgb) == CLASS_NAMES.index(name)).all()


def test_rgba_masks_ignore_the_alpha_channel():
    rgba = np.zeros((1, 1, 4), dtype=np.uint8)
    rgba[0, 0] = (0, 0, 255, 0)
    assert mask_to_labels(rgba)[0, 0] == CLASS_NAMES.index("Water")


def test_red_is_outside_the_map_and_the_message_says_where():
    rgb = labels_to_rgb(np.zeros((4, 5), dtype=np.uint8))
    rgb[2, 3] = (250, 10, 20)
    rgb[3, 4] = (128, 0, 0)
    with pytest.raises(DataError) as e:
        mask_to_labels(rgb, "tiles/0007_mask.png")
    message = str(e.value)
    assert "tiles/0007_mask.png" in message
    assert "2 pixel(s)" in message
    assert "(250, 10, 20) at row 2, column 3" in message


# --- pairs -----------------------------------------------------------------------------------


def test_pairs_are_found_sorted_by_stem(tmp_path):
    write_pairs(tmp_path, [3, 1, 2])
    (tmp_path / "notes.txt").write_text("not a pair")
    pairs = find_pairs(tmp_path)
    assert [stem for stem, _, _ in pairs] == ["0001", "0002", "0003"]
    assert pairs[0][1] == tmp_path / "0001_sat.jpg"
    assert pairs[0][2] == tmp_path / "0001_mask.png"


def test_a_mask_without_its_image_is_named(tmp_path):
    write_pairs(tmp_path, [0, 1])
    (tmp_path / "0001_sat.jpg").unlink()
    with pytest.raises(DataError, match=r"0001_mask\.png has no partner: 0001_sat\.jpg"):
        find_pairs(tmp_path)


def test_an_image_without_its_mask_is_named(tmp_path):
    write_pairs(tmp_path, [0, 1])
    (tmp_path / "0000_mask.png").unlink()
    with pytest.raises(DataError) as e:
        find_pairs(tmp_path)
    assert str(tmp_path / "0000_sat.jpg") in str(e.value)
    assert "0000_mask.png is missing" in str(e.value)


def test_a_folder_with_no_pairs_is_named(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(DataError, match="holds no xxxx_sat.jpg / xxxx_mask.png pairs") as e:
        find_pairs(tmp_path)
    assert str(tmp_path) in str(e.value)
    with pytest.raises(DataError, match="does not exist"):
        load_landcover(tmp_path / "absent", 16, 0.2, 0.2, 0, "test")


def test_an_image_and_mask_of_different_sizes_name_both_files(tmp_path):
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "0000_sat.jpg")
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(tmp_path / "0000_mask.png")
    with pytest.raises(DataError) as e:
        read_pairs(tmp_path, 16)
    message = str(e.value)
    assert str(tmp_path / "0000_sat.jpg") in message and str(tmp_path / "0000_mask.png") in message
    assert "32x32" in message and "32x24" in message


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_an_unreadable_jpeg_is_named(tmp_path, damage):
    write_pairs(tmp_path, [0, 1], size=64)
    sat = tmp_path / "0001_sat.jpg"
    data = sat.read_bytes()
    sat.write_bytes(b"this is not a JPEG" if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(DataError, match="cannot read image") as e:
        read_pairs(tmp_path, 16)
    assert str(sat) in str(e.value)


def test_an_unreadable_mask_is_named(tmp_path):
    write_pairs(tmp_path, [0])
    (tmp_path / "0000_mask.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="cannot read mask") as e:
        read_pairs(tmp_path, 16)
    assert str(tmp_path / "0000_mask.png") in str(e.value)


def test_a_red_pixel_in_a_file_names_the_file(tmp_path):
    write_pairs(tmp_path, [0])
    mask = tmp_path / "0000_mask.png"
    rgb = np.asarray(Image.open(mask).convert("RGB")).copy()
    rgb[5, 7] = (255, 0, 0)
    Image.fromarray(rgb).save(mask)
    with pytest.raises(DataError, match=r"row 5, column 7") as e:
        read_pairs(tmp_path, 16)
    assert str(mask) in str(e.value)


def test_pairs_are_read_as_uint8_images_and_class_masks(tmp_path):
    labels = write_pairs(tmp_path, [4, 9], size=32)
    images, masks, stems = read_pairs(tmp_path, 32)
    assert stems == ["0004", "0009"]
    assert images.shape == (2, 3, 32, 32) and images.dtype == torch.uint8
    assert masks.shape == (2, 32, 32) and masks.dtype == torch.uint8
    np.testing.assert_array_equal(masks[1].numpy(), labels["0009"])  # PNG: lossless


def test_masks_are_resized_nearest_neighbour_keeping_only_class_values(tmp_path):
    blocks = np.random.default_rng(0).integers(0, 7, (4, 4)).astype(np.uint8)
    labels = np.kron(blocks, np.ones((16, 16), np.uint8))  # (64, 64): 16-pixel blocks
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "0000_sat.jpg")
    Image.fromarray(labels_to_rgb(labels)).save(tmp_path / "0000_mask.png")
    image, mask = read_pair(tmp_path / "0000_sat.jpg", tmp_path / "0000_mask.png", 16)
    assert image.shape == (3, 16, 16) and mask.shape == (16, 16)
    np.testing.assert_array_equal(mask.numpy(), np.kron(blocks, np.ones((4, 4), np.uint8)))
    # A size that is not a divisor: still only values that were in the mask (no blending).
    _, odd = read_pair(tmp_path / "0000_sat.jpg", tmp_path / "0000_mask.png", 23)
    assert odd.shape == (23, 23)
    assert set(np.unique(odd.numpy())) <= set(np.unique(blocks))


# --- folders and splits ----------------------------------------------------------------------


def test_train_and_validation_folders_without_test_make_validation_the_test_split(tmp_path):
    train = write_pairs(tmp_path / "train", range(4))
    val = write_pairs(tmp_path / "validation", range(10, 13))
    assert split_folders(tmp_path) == {"train": tmp_path / "train", "val": tmp_path / "validation"}
    splits = load_landcover(tmp_path, 16, 0.2, 0.2, 0, source="pairs")
    assert _stems(splits, splits.train) == list(train)
    assert _stems(splits, splits.val) == list(val)
    assert torch.equal(splits.test.ids, splits.val.ids)
    assert splits.source == "pairs (no test/ folder: the test split is validation/)"
    assert splits.classes == SCORED_CLASSES
    assert splits.val.labels.shape == (3, 16, 16) and splits.val.labels.dtype == torch.uint8
    np.testing.assert_array_equal(splits.val.labels[2].numpy(), val["0012"])
    assert len(set(splits.names)) == len(splits.names) == 7  # one name per sample id


def test_val_and_test_folders(tmp_path):
    write_pairs(tmp_path / "train", range(3))
    write_pairs(tmp_path / "val", [5, 6])
    write_pairs(tmp_path / "test", [8])
    assert split_folders(tmp_path)["val"] == tmp_path / "val"
    splits = load_landcover(tmp_path, 16, 0.2, 0.2, 0, source="pairs")
    assert _stems(splits, splits.val) == ["0005", "0006"]
    assert _stems(splits, splits.test) == ["0008"]
    assert splits.source == "pairs"
    ids = torch.cat([splits.train.ids, splits.val.ids, splits.test.ids])
    assert sorted(ids.tolist()) == list(range(6))


def test_split_folders_without_train_or_validation_are_refused(tmp_path):
    write_pairs(tmp_path / "validation", [0])
    with pytest.raises(DataError, match="has validation/ but no train/") as e:
        split_folders(tmp_path)
    assert str(tmp_path) in str(e.value)
    other = tmp_path / "other"
    write_pairs(other / "train", [0])
    with pytest.raises(DataError, match=r"train/ but no validation/ \(or val/\)"):
        split_folders(other)


def test_a_flat_folder_is_split_by_seed(tmp_path):
    labels = write_pairs(tmp_path, range(10))
    assert split_folders(tmp_path) == {}
    splits = load_landcover(tmp_path, 16, 0.2, 0.2, 7, source="flat")
    parts = [_stems(splits, p) for p in (splits.train, splits.val, splits.test)]
    assert [len(p) for p in parts] == [6, 2, 2]
    assert sorted(sum(parts, [])) == sorted(labels)  # disjoint, and all of them
    for part, stems in zip((splits.train, splits.val, splits.test), parts, strict=True):
        for mask, stem in zip(part.labels, stems, strict=True):
            np.testing.assert_array_equal(mask.numpy(), labels[stem])
    again = load_landcover(tmp_path, 16, 0.2, 0.2, 7, source="flat")
    assert [_stems(again, p) for p in (again.train, again.val, again.test)] == parts
    other = load_landcover(tmp_path, 16, 0.2, 0.2, 8, source="flat")
    assert [_stems(other, p) for p in (other.train, other.val, other.test)] != parts


def test_a_flat_folder_too_small_to_split_is_refused(tmp_path):
    write_pairs(tmp_path, range(2))
    with pytest.raises(DataError, match="too few to split"):
        load_landcover(tmp_path, 16, 0.2, 0.2, 0, source="flat")


def test_check_source_finds_a_missing_half_before_any_pixel_is_read(tmp_path):
    write_pairs(tmp_path / "train", range(2))
    write_pairs(tmp_path / "validation", [5])
    check_source("deepglobe", str(tmp_path))  # complete
    (tmp_path / "validation" / "0005_mask.png").unlink()
    with pytest.raises(DataError) as e:
        check_source("deepglobe", str(tmp_path))
    assert str(tmp_path / "validation" / "0005_sat.jpg") in str(e.value)
    with pytest.raises(DataError, match="needs a folder path"):
        check_source("deepglobe", None)
    check_source("landcover", None)  # the synthetic default needs nothing


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


def test_load_dataset_deepglobe_reads_the_folder(tmp_path):
    write_pairs(tmp_path / "train", range(3))
    write_pairs(tmp_path / "val", [3])
    splits = load_dataset(DataConfig(name="deepglobe", path=str(tmp_path), image_size=16))
    assert splits.source.startswith(f"land-cover pairs in {tmp_path}")
    assert "the test split is validation/" in splits.source
    assert len(splits.train) == 3 and len(splits.val) == 1


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
