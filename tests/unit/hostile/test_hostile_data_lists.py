"""Hostile and damaged data files (issue 19), lists and links: few-shot CSVs and episode
files, and links and file names that lead out of the dataset folder. Each is one DataError
naming the file (and the line or column); the files are a few KB, written by the test.
Images, masks and CIFAR batches: test_hostile_data_images.py."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.config import DataConfig
from engine.data import DataError, check_source, load_dataset
from engine.data.episodes import check_fewshot_source, load_fewshot, read_episode_csv
from engine.data.landcover import labels_to_rgb, load_landcover
from engine.data.roots import ENV
from engine.data.sources import read_cifar10, read_image_folder, read_prefixed
from tests.support.hostile_data import (
    TEST,
    TRAIN,
    fewshot_cfg,
    good_batch,
    image_folder,
    png,
    write_cifar,
    write_lists,
)


@pytest.fixture
def only_these_roots(tmp_path, monkeypatch):
    """The data roots are one empty folder: only the dataset folder itself is in bounds (the
    tests' temporary folder is otherwise a data root, see tests/conftest.py)."""
    (tmp_path / "roots").mkdir()
    monkeypatch.setenv(ENV, str(tmp_path / "roots"))
    return tmp_path / "roots"


# --- few-shot CSV files --------------------------------------------------------------------------


def _append(path: Path, line: str) -> None:
    with open(path, "a", newline="") as f:
        f.write(line + "\r\n")


def _refused_everywhere(root: Path, message: str) -> None:
    """The reader and the check before a run both refuse, with `message`."""
    with pytest.raises(DataError, match=message):
        check_fewshot_source("folder", str(root))
    with pytest.raises(DataError, match=message):
        load_fewshot(fewshot_cfg(root))


def test_a_list_row_with_one_column_names_the_line(tmp_path):
    root = write_lists(tmp_path / "mini")
    _append(root / "train.csv", "n01_0.png")
    _refused_everywhere(root, r"train\.csv, line 14: 1 field\(s\), but the header has 3")


def test_a_latin_1_list_names_the_line_of_the_first_bad_byte(tmp_path):
    root = write_lists(tmp_path / "mini")
    with open(root / "val.csv", "ab") as f:
        f.write("99,n11_0.png,café\r\n".encode("latin-1"))
    _refused_everywhere(root, r"val\.csv, line 10: not UTF-8 text \(byte 0xe9\)")


def test_a_list_with_a_byte_order_mark_is_read(tmp_path):
    root = write_lists(tmp_path / "mini")
    text = (root / "train.csv").read_text()
    (root / "train.csv").write_text("\ufeff" + text, encoding="utf-8")
    check_fewshot_source("folder", str(root))
    assert load_fewshot(fewshot_cfg(root)).classes == TRAIN + TEST


def test_a_list_with_a_nul_byte_or_an_empty_name_names_the_line(tmp_path):
    root = write_lists(tmp_path / "mini")
    _append(root / "train.csv", "99,,n01")
    _refused_everywhere(root, r"train\.csv, line 14: filename is empty")
    root = write_lists(tmp_path / "mini2")
    _append(root / "train.csv", "99,n01_0.png\0,n01")
    _refused_everywhere(root, r"train\.csv, line 14: ")


@pytest.mark.parametrize("name", ["absolute", "dot-dot"])
def test_a_list_naming_a_file_outside_the_dataset_is_refused(tmp_path, only_these_roots, name):
    root = write_lists(tmp_path / "mini")
    secret = png(tmp_path / "secret" / "photo.png")
    listed = str(secret) if name == "absolute" else "../../secret/photo.png"
    _append(root / "val.csv", f"99,{listed},n12")
    _refused_everywhere(root, r"val\.csv, line 10: .*photo\.png leads outside the dataset folder")


def test_a_list_may_name_a_file_by_an_absolute_name_inside_the_dataset(tmp_path, only_these_roots):
    root = write_lists(tmp_path / "mini")
    _append(root / "val.csv", f"99,{root / 'val' / 'n12_0.png'},n12")
    check_fewshot_source("folder", str(root))
    assert len(load_fewshot(fewshot_cfg(root)).test) == 2 * 4 + 1


def write_episode_file(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return path


NAMES = [f"n1{c}_{i}.png" for c in (1, 2) for i in range(4)]
EPISODE_CASES = {
    "classX_support0": (["episode_id", "classX_support0", "class1_support0", "query0"],
                        [["0", "n11_0.png", "n12_0.png", "n11_1.png"]],
                        "column 'classX_support0' is neither class<i>_support<j> nor query<k>"),
    "a row of one column": (["episode_id", "class0_support0", "class1_support0", "query0"],
                            [["0"]], r"line 2: 1 field\(s\), but the header has 4"),
    "an empty query": (["episode_id", "class0_support0", "class1_support0", "query0"],
                       [["0", "n11_0.png", "n12_0.png", ""]], "line 2: query0 is empty"),
    "uneven shots": (["episode_id", "class0_support0", "class0_support1", "class1_support0",
                      "query0"], [["0", "n11_0.png", "n11_1.png", "n12_0.png", "n11_2.png"]],
                     r"as many support columns \(class0 2, class1 1\)"),
    "no episode_id": (["id", "class0_support0", "query0"], [["0", "n11_0.png", "n11_1.png"]],
                      "header starting with episode_id"),
}  # fmt: skip


@pytest.mark.parametrize("case", EPISODE_CASES, ids=list(EPISODE_CASES))
def test_a_malformed_episode_file_names_the_file_and_line_or_column(tmp_path, case):
    header, rows, message = EPISODE_CASES[case]
    path = write_episode_file(tmp_path / "episodes.csv", header, rows)
    with pytest.raises(DataError) as caught:
        read_episode_csv(path, NAMES)
    assert str(caught.value).startswith(str(path)) and caught.match(message)


def test_a_latin_1_episode_file_names_its_line(tmp_path):
    path = tmp_path / "episodes.csv"
    path.write_bytes("episode_id,class0_support0,query0\n0,caf\xe9.png,x.png\n".encode("latin-1"))
    with pytest.raises(DataError, match=f"{path}, line 2: not UTF-8"):
        read_episode_csv(path, NAMES)


def test_check_fewshot_source_checks_an_episode_file_against_the_meta_test_list(tmp_path):
    root = write_lists(tmp_path / "mini")
    header = ["episode_id", "class0_support0", "class1_support0", "query0"]
    good = write_episode_file(tmp_path / "good.csv", header, [["0", NAMES[0], NAMES[4], NAMES[1]]])
    check_fewshot_source("folder", str(root), str(good))
    bad = write_episode_file(tmp_path / "bad.csv", header, [["0", "n01_0.png", *NAMES[:2]]])
    with pytest.raises(DataError, match=r"bad\.csv, line 2: n01_0\.png is not in the image list"):
        check_fewshot_source("folder", str(root), str(bad))  # a meta-train image


# --- links and names that lead out of the dataset folder ----------------------------------------
def test_a_class_folder_linked_out_of_the_dataset_is_refused(tmp_path, only_these_roots):
    root = image_folder(tmp_path / "pets")
    for i in range(3):
        png(tmp_path / "secret" / f"key{i}.png")
    (root / "emu").symlink_to(tmp_path / "secret")
    message = f"{root / 'emu' / 'key0.png'} leads outside the dataset folder {root}"
    with pytest.raises(DataError, match=message):
        read_image_folder(root, 8)
    with pytest.raises(DataError, match=message):
        check_source("folder", str(root))
    with pytest.raises(DataError, match=message):
        load_dataset(DataConfig(name="folder", path=str(root), image_size=8))


def test_a_link_to_a_file_under_a_data_root_is_followed(tmp_path, only_these_roots):
    root = image_folder(tmp_path / "pets")
    elsewhere = png(only_these_roots / "photos" / "tabby.png")
    (root / "cat" / "tabby.png").symlink_to(elsewhere)
    check_source("folder", str(root))
    assert len(read_image_folder(root, 8)[1]) == 7


def test_a_link_within_the_dataset_is_followed(tmp_path, only_these_roots):
    root = image_folder(tmp_path / "pets")
    (root / "kitten").symlink_to(root / "cat")  # the typed folder itself is under no root
    assert read_image_folder(root, 8)[2] == ["cat", "dog", "kitten"]


def test_a_presplit_dataset_may_link_between_its_split_folders(tmp_path, only_these_roots):
    for split in ("train", "val"):
        image_folder(tmp_path / "pets" / split)
    (tmp_path / "pets" / "test").mkdir()
    (tmp_path / "pets" / "test" / "cat").symlink_to(tmp_path / "pets" / "val" / "cat")
    (tmp_path / "pets" / "test" / "dog").symlink_to(tmp_path / "pets" / "val" / "dog")
    check_source("folder", str(tmp_path / "pets"))
    assert len(load_dataset(DataConfig(name="folder", path=str(tmp_path / "pets"))).test) == 6


def test_a_prefixed_file_linked_out_is_refused(tmp_path, only_these_roots):
    (tmp_path / "flat").mkdir()
    png(tmp_path / "flat" / "1_0.png")
    (tmp_path / "flat" / "2_0.png").symlink_to(png(tmp_path / "secret.png"))
    for read in (lambda: read_prefixed(tmp_path / "flat", 8),
                 lambda: check_source("prefixed", str(tmp_path / "flat"))):  # fmt: skip
        with pytest.raises(DataError, match=r"2_0\.png leads outside the dataset folder"):
            read()


def test_a_cifar_batch_linked_out_is_refused(tmp_path, only_these_roots):
    write_cifar(tmp_path / "elsewhere", good_batch())
    (tmp_path / "c10").mkdir()
    for f in (tmp_path / "elsewhere").iterdir():
        (tmp_path / "c10" / f.name).symlink_to(f)
    with pytest.raises(DataError, match=r"c10/data_batch_1 leads outside the dataset folder"):
        check_source("cifar10", str(tmp_path / "c10"))
    with pytest.raises(DataError, match=r"c10/data_batch_1 leads outside the dataset folder"):
        read_cifar10(tmp_path / "c10", 8)


def test_a_land_cover_pair_linked_out_is_refused(tmp_path, only_these_roots):
    root = tmp_path / "tiles"
    for stem in ("0001", "0002", "0003"):
        png(root / "train" / f"{stem}_sat.png")
        png(root / "validation" / f"{stem}_sat.png")
        for split in ("train", "validation"):
            Image.fromarray(labels_to_rgb(np.zeros((8, 8), np.uint8))).save(
                root / split / f"{stem}_mask.png"
            )
    outside = (root / "validation" / "0003_mask.png").rename(tmp_path / "0003_mask.png")
    (root / "validation" / "0003_mask.png").symlink_to(outside)
    message = r"validation/0003_mask\.png leads outside the dataset folder"
    with pytest.raises(DataError, match=message):
        check_source("deepglobe", str(root))
    with pytest.raises(DataError, match=message):
        load_landcover(root, 8, 0.2, 0.2, 0, source="tiles")


def test_an_episode_file_that_is_a_device_or_too_large_is_refused(tmp_path, monkeypatch):
    from engine.data import image_lists

    with pytest.raises(DataError, match="cannot read episode file /dev/zero: not a file"):
        read_episode_csv("/dev/zero", NAMES)  # would otherwise be read forever
    monkeypatch.setattr(image_lists, "MAX_CSV_BYTES", 100)
    path = write_episode_file(tmp_path / "e.csv", ["episode_id", "query0"], [["0", "x"]] * 20)
    with pytest.raises(DataError, match=f"episode file {path} is over"):
        read_episode_csv(path, NAMES)


def test_a_cifar_batch_that_is_a_folder_is_named(tmp_path):
    path = write_cifar(tmp_path / "c10", good_batch())
    path.unlink()
    path.mkdir()
    with pytest.raises(DataError, match=f"CIFAR-10 batch file {path} is not a file"):
        check_source("cifar10", str(tmp_path / "c10"))
