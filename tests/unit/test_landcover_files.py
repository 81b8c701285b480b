"""Land-cover data on disk: the colour map, DeepGlobe-style pairs and their folders and splits.
The synthetic scenes and the segmentation loader: test_landcover_scenes.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from engine.config import DataConfig
from engine.data import (
    DataError,
    check_source,
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
    red_pixels,
    split_folders,
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


def test_red_reads_as_unknown_as_in_the_course_s_reader_and_is_counted():
    rgb = labels_to_rgb(np.zeros((4, 5), dtype=np.uint8))
    rgb[2, 3] = (250, 10, 20)  # red after thresholding at 128
    rgb[3, 4] = (128, 0, 0)
    rgb[0, 0] = (127, 0, 0)  # not red: black after thresholding, Unknown as well
    labels = mask_to_labels(rgb, "tiles/0007_mask.png")
    assert labels[2, 3] == labels[3, 4] == labels[0, 0] == CLASS_NAMES.index("Unknown")
    assert (labels[labels != CLASS_NAMES.index("Unknown")] == 0).all()  # the rest unchanged
    assert red_pixels(rgb) == 2


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


def test_red_pixels_in_the_files_are_unknown_and_the_data_summary_says_how_many(tmp_path):
    write_pairs(tmp_path, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    mask = tmp_path / "0000_mask.png"
    rgb = np.asarray(Image.open(mask).convert("RGB")).copy()
    rgb[5, 7] = rgb[6, 7] = (255, 0, 0)
    Image.fromarray(rgb).save(mask)
    splits = load_landcover(tmp_path, 16, 0.2, 0.2, 0, "pairs")
    assert "2 red mask pixel(s) in 1 mask(s) read as Unknown" in splits.source
    clean = tmp_path / "clean"
    write_pairs(clean, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert "red" not in load_landcover(clean, 16, 0.2, 0.2, 0, "pairs").source  # the control


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


def test_load_dataset_deepglobe_reads_the_folder(tmp_path):
    write_pairs(tmp_path / "train", range(3))
    write_pairs(tmp_path / "val", [3])
    splits = load_dataset(DataConfig(name="deepglobe", path=str(tmp_path), image_size=16))
    assert splits.source.startswith(f"land-cover pairs in {tmp_path}")
    assert "the test split is validation/" in splits.source
    assert len(splits.train) == 3 and len(splits.val) == 1
