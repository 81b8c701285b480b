"""Hostile and damaged data files (issue 19): decompression bombs, malformed CIFAR batches and
few-shot CSVs, links and file names that lead out of the dataset folder, and the checks that
refuse all of these before a run folder is made. Each is one DataError naming the file (and
the entry, line or column); the files are a few KB, written by the test."""

from __future__ import annotations

import csv
import io
import os
import pickle
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.cli.main import main
from engine.config import DataConfig, FewShotConfig
from engine.data import DataError, check_source, load_dataset
from engine.data.episodes import check_fewshot_source, load_fewshot, read_episode_csv
from engine.data.images import MAX_IMAGE_MEGAPIXELS, check_image, read_image
from engine.data.landcover import labels_to_rgb, load_landcover, read_pair
from engine.data.roots import ENV
from engine.data.sources import read_cifar10, read_image_folder, read_prefixed
from engine.store import runs


# --- files ---------------------------------------------------------------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(path: Path, width: int, height: int, whole: bool = False) -> Path:
    """A 1-bit greyscale PNG of width x height. `whole`: its pixels are all there (zeros,
    compressed row by row: ~9 KB for 72 MP, written in a second); otherwise only the header
    is right, as in a crafted bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit per pixel, grey
    if whole:
        z, row, parts = zlib.compressobj(9), bytes(1 + (width + 7) // 8), []
        parts += [z.compress(row) for _ in range(height)]
        idat = b"".join(parts) + z.flush()
    else:
        idat = zlib.compress(bytes(64))
    data = _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + data)
    return path


def png(path: Path, colour=(0, 0, 0), size=(8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def image_folder(root: Path, per_class: int = 3) -> Path:
    for c, name in enumerate(["cat", "dog"]):
        for i in range(per_class):
            png(root / name / f"{i}.png", (100 * c, i, 0))
    return root


def encoded(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def noise(size: int = 64) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), np.uint8))


@pytest.fixture
def only_these_roots(tmp_path, monkeypatch):
    """The data roots are one empty folder: only the dataset folder itself is in bounds (the
    tests' temporary folder is otherwise a data root, see tests/conftest.py)."""
    (tmp_path / "roots").mkdir()
    monkeypatch.setenv(ENV, str(tmp_path / "roots"))
    return tmp_path / "roots"


# --- decompression bombs -------------------------------------------------------------------------
def test_a_bomb_in_a_class_folder_is_refused_from_its_header(tmp_path):
    root = image_folder(tmp_path / "pets")
    bomb = png_declaring(root / "cat" / "bomb.png", 20_000, 20_000)  # 400 MP, 150 bytes
    assert bomb.stat().st_size < 1000
    with pytest.raises(DataError, match=f"image {bomb} has 400 megapixels; at most 64"):
        read_image_folder(root, 8)
    with pytest.raises(DataError, match=f"{bomb} has 400 megapixels"):
        check_source("folder", str(root))


def test_an_image_over_pils_warning_limit_gives_one_line_and_no_warning(tmp_path):
    bomb = png_declaring(tmp_path / "big.png", 10_000, 10_000)  # 100 MP: PIL only warns
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with pytest.raises(DataError, match=f"{bomb} has 100 megapixels; at most 64"):
            read_image(bomb, 8)
    assert not [w for w in shown if issubclass(w.category, Image.DecompressionBombWarning)]


def test_an_image_under_pils_limit_but_over_ours_is_refused_before_decoding(tmp_path):
    # A whole, valid PNG of 72 MP: PIL would decode it (216 MB as RGB) without a word.
    whole = png_declaring(tmp_path / "wide.png", 9_000, 8_000, whole=True)
    assert whole.stat().st_size < 200_000 and MAX_IMAGE_MEGAPIXELS == 64
    with pytest.raises(DataError, match=f"{whole} has 72 megapixels; at most 64"):
        read_image(whole, 8)
    with pytest.raises(DataError, match=f"{whole} has 72 megapixels"):
        check_image(whole)


def test_a_bomb_among_label_prefixed_files_is_named(tmp_path):
    png(tmp_path / "1_0.png")
    bomb = png_declaring(tmp_path / "2_0.png", 20_000, 20_000)
    with pytest.raises(DataError, match=f"{bomb} has 400 megapixels"):
        read_prefixed(tmp_path, 8)
    with pytest.raises(DataError, match=f"{bomb} has 400 megapixels"):
        check_source("prefixed", str(tmp_path))


@pytest.mark.parametrize("half", ["sat", "mask"])
def test_a_bomb_as_a_satellite_image_or_a_mask_is_named(tmp_path, half):
    sat = png(tmp_path / "0001_sat.png", size=(16, 16))
    mask = png(tmp_path / "0001_mask.png", size=(16, 16))
    bomb = png_declaring(sat if half == "sat" else mask, 20_000, 20_000)
    what = "image" if half == "sat" else "mask"
    with pytest.raises(DataError, match=f"{what} {bomb} has 400 megapixels"):
        read_pair(sat, mask, 16)


def test_a_bomb_in_a_few_shot_image_list_is_named(tmp_path):
    root = write_lists(tmp_path / "mini")
    bomb = png_declaring(root / "val" / "n11_2.png", 20_000, 20_000)
    with pytest.raises(DataError, match=f"{bomb} has 400 megapixels"):
        load_fewshot(fewshot_cfg(root))
    with pytest.raises(DataError, match=f"{bomb} has 400 megapixels"):
        check_fewshot_source("folder", str(root))


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_mask_or_listed_image_that_is_a_fifo_or_a_device_is_named_not_waited_on(tmp_path, kind):
    sat = png(tmp_path / "0001_sat.png", size=(16, 16))
    mask = tmp_path / "0001_mask.png"
    if kind == "fifo":
        os.mkfifo(mask)  # opening it to read would wait forever for a writer
    else:
        mask.symlink_to("/dev/zero")  # reading it would never end
    with pytest.raises(DataError, match=f"cannot read mask {mask}: it is not a regular file"):
        read_pair(sat, mask, 16)


# --- damaged images, refused before a run folder is made ----------------------------------------
def test_check_image_finds_a_png_and_a_jpeg_cut_short(tmp_path):
    for fmt, suffix in (("PNG", "png"), ("JPEG", "jpg")):
        data = encoded(noise(), fmt)
        cut = tmp_path / f"cut.{suffix}"
        cut.write_bytes(data[: len(data) * 2 // 3])  # the header is whole, the pixels are not
        with Image.open(cut) as im:
            assert im.size == (64, 64)  # PIL opens it: only decoding tells
        with pytest.raises(DataError, match=f"cannot read image {cut}"):
            check_image(cut)
        (tmp_path / f"whole.{suffix}").write_bytes(data)
        assert check_image(tmp_path / f"whole.{suffix}") == (64, 64)


@pytest.mark.parametrize("damage", ["empty class folder", "cut jpeg", "class of one image"])
def test_the_cli_refuses_a_damaged_folder_before_making_a_run_folder(tmp_path, capsys, damage):
    root = image_folder(tmp_path / "pets")
    if damage == "empty class folder":
        (root / "emu").mkdir()
        named = root / "emu"
    elif damage == "cut jpeg":
        data = encoded(noise(), "JPEG")
        named = root / "dog" / "cut.jpg"
        named.write_bytes(data[: len(data) // 2])
    else:
        for i in range(1, 3):
            (root / "cat" / f"{i}.png").unlink()
        named = root
    argv = ["train", "--dataset", "folder", "--data-path", str(root), "--epochs", "1"]
    assert main(["--runs-dir", str(tmp_path / "runs"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(named) in err and "Traceback" not in err
    assert runs.list_runs(tmp_path / "runs") == []


def test_check_source_reads_every_header_of_thousands_of_files_quickly(tmp_path):
    data = encoded(noise(32), "PNG")
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(1500):
            (tmp_path / c / f"{i}.png").write_bytes(data)
    start = time.perf_counter()
    check_source("folder", str(tmp_path))
    assert time.perf_counter() - start < 5  # about 0.3 s on one core


# --- masks ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["L", "I;16", "1"])
def test_a_one_channel_mask_is_refused_not_read_as_all_unknown(tmp_path, mode):
    sat = png(tmp_path / "0001_sat.png", size=(8, 8))
    mask = tmp_path / "0001_mask.png"
    Image.new("L", (8, 8), 3).convert(mode).save(mask)  # class numbers, not colours
    with pytest.raises(DataError, match=f"mask {mask} is not a colour image"):
        read_pair(sat, mask, 8)
    with pytest.raises(DataError, match=f"mask {mask} is not a colour image"):
        check_source("deepglobe", str(_flat_pairs(tmp_path, mask)))


def _flat_pairs(tmp_path: Path, mask: Path) -> Path:
    """`mask` with its image, beside two good pairs: a folder that splits."""
    for stem in ("0002", "0003"):
        png(tmp_path / f"{stem}_sat.png", size=(8, 8))
        Image.fromarray(labels_to_rgb(np.zeros((8, 8), np.uint8))).save(
            tmp_path / f"{stem}_mask.png"
        )
    return mask.parent


def test_a_palette_mask_is_read_by_its_colours(tmp_path):
    sat = png(tmp_path / "0001_sat.png", size=(8, 8))
    Image.new("RGB", (8, 8), (0, 0, 255)).convert("P").save(tmp_path / "0001_mask.png")
    _, labels = read_pair(sat, tmp_path / "0001_mask.png", 8)
    assert labels.unique().tolist() == [4]  # Water


def test_check_source_compares_sizes_and_finds_a_mask_cut_short(tmp_path):
    root = _flat_pairs(tmp_path, tmp_path / "0001_mask.png")
    png(root / "0001_sat.png", size=(8, 8))
    png(root / "0001_mask.png", size=(8, 9))
    with pytest.raises(DataError, match="0001_sat.png is 8x8 but its mask .*0001_mask.png is 8x9"):
        check_source("deepglobe", str(root))
    data = encoded(Image.new("RGB", (8, 8)), "PNG")
    (root / "0001_mask.png").write_bytes(data[:-20])
    with pytest.raises(DataError, match=f"cannot read mask {root / '0001_mask.png'}"):
        check_source("deepglobe", str(root))


def test_check_source_refuses_a_flat_folder_of_two_pairs(tmp_path):
    root = _flat_pairs(tmp_path, tmp_path / "x")
    with pytest.raises(DataError, match=f"{root} holds 2 pair"):
        check_source("deepglobe", str(root))


# --- CIFAR-10 batches ----------------------------------------------------------------------------
def _good_batch(n: int = 4) -> dict:
    return {b"data": np.zeros((n, 3072), np.uint8), b"labels": [i % 10 for i in range(n)]}


def write_cifar(root: Path, bad: dict | object, name: str = "data_batch_2") -> Path:
    """Six batches, all good but `name`, which holds `bad`."""
    root.mkdir(parents=True, exist_ok=True)
    for batch in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        with open(root / batch, "wb") as f:
            # protocol 4: in protocol 2 an empty array's bytes need a builtin the reader refuses
            pickle.dump(bad if batch == name else _good_batch(), f, protocol=4)
    return root / name


_NESTED = [[0] * 1000] * 1000  # one list referenced 1000 times: small pickled, 10**6 as numbers
CIFAR_CASES = {
    "huge label": ({**_good_batch(), b"labels": [0, 1, 10**30, 2]}, "'labels' must lie in 0..9, found 0..about 2\\*\\*100"),
    "label 10": ({**_good_batch(), b"labels": [0, 1, 10, 2]}, "'labels' must lie in 0..9, found 0..10"),
    "negative label": ({**_good_batch(), b"labels": [0, -1, 3, 2]}, "found -1..3"),
    "label None": ({**_good_batch(), b"labels": [0, None, 1, 2]}, "'labels' .*label 1 is a NoneType"),
    "label string": ({**_good_batch(), b"labels": ["cat"] * 4}, "'labels' .*label 0 is a str"),
    "label bool": ({**_good_batch(), b"labels": [True] * 4}, "'labels' .*label 0 is a bool"),
    "labels 2-D": ({**_good_batch(), b"labels": np.zeros((4, 1), np.int64)}, "'labels' must be .*shape \\(4, 1\\)"),
    "labels nested": ({**_good_batch(), b"labels": _NESTED}, "'labels' .*label 0 is a list"),
    "labels a string": ({**_good_batch(), b"labels": b"0123"}, "'labels' must be .*a bytes"),
    "labels float array": ({**_good_batch(), b"labels": np.zeros(4)}, "'labels' must be .*float64"),
    "data of None": ({**_good_batch(), b"data": np.array([None] * 4, dtype=object)}, "'data' must be .*object"),
    "data a string": ({**_good_batch(), b"data": "pixels"}, "'data' must be .*a str"),
    "data floats": ({**_good_batch(), b"data": np.zeros((4, 3072), np.float32)}, "'data' must be .*float32"),
    "data of 3 dims": ({**_good_batch(), b"data": np.zeros((4, 3, 1024), np.uint8)}, "'data' must have the shape \\(N, 3072\\), found \\(4, 3, 1024\\)"),
    "data over 255": ({**_good_batch(), b"data": np.full((4, 3072), 256, np.int16)}, "'data' values must lie in 0..255, found 256..256"),
    "empty batch": ({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}, "'data' holds no images"),
    "empty dict": ({}, "not a CIFAR-10 python batch: no 'data' entry"),
    "no labels": ({b"data": np.zeros((4, 3072), np.uint8)}, "no 'labels' entry"),
    "fewer labels": ({**_good_batch(), b"labels": [1, 2]}, "'data' holds 4 images but 'labels' 2"),
    "a list": ([1, 2], "not a CIFAR-10 python batch: holds a list"),
    "a number": (7, "not a CIFAR-10 python batch: holds a int"),
}  # fmt: skip


@pytest.mark.parametrize("case", CIFAR_CASES, ids=list(CIFAR_CASES))
def test_a_malformed_cifar_batch_is_one_line_naming_the_file_and_entry(tmp_path, case):
    bad, message = CIFAR_CASES[case]
    path = write_cifar(tmp_path / "c10", bad)
    for read in (lambda: read_cifar10(tmp_path / "c10", 8),
                 lambda: check_source("cifar10", str(tmp_path / "c10"))):  # fmt: skip
        with pytest.raises(DataError) as caught:
            read()
        text = str(caught.value)
        assert text.startswith(str(path)) and "\n" not in text
        assert caught.match(message)


def test_cifar_labels_may_be_an_integer_array_and_data_any_integer_type(tmp_path):
    batch = {b"data": np.full((4, 3072), 7, np.int64), b"labels": np.array([3, 1, 4, 1])}
    write_cifar(tmp_path / "c10", batch)
    check_source("cifar10", str(tmp_path / "c10"))
    x, y, *_ = read_cifar10(tmp_path / "c10", 32)
    assert y[4:8].tolist() == [3, 1, 4, 1] and int(x[4:8].min()) == int(x[4:8].max()) == 7


# --- few-shot CSV files --------------------------------------------------------------------------
TRAIN, TEST = ["n01", "n02", "n03"], ["n11", "n12"]


def write_lists(root: Path, per_class: int = 4) -> Path:
    """root/train.csv + root/train/*.png, root/val.csv + root/val/*.png."""
    for split, classes in (("train", TRAIN), ("val", TEST)):
        rows = [["id", "filename", "label"]]
        for c, name in enumerate(classes):
            for i in range(per_class):
                png(root / split / f"{name}_{i}.png", (40 * c, 10 * i, 0), size=(12, 12))
                rows.append([str(len(rows)), f"{name}_{i}.png", name])
        with open(root / f"{split}.csv", "w", newline="") as f:
            csv.writer(f).writerows(rows)
    return root


def fewshot_cfg(root: Path) -> FewShotConfig:
    return FewShotConfig(data=DataConfig(name="folder", path=str(root), image_size=12))


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
    write_cifar(tmp_path / "elsewhere", _good_batch())
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
    from engine.data import fewshot_lists

    with pytest.raises(DataError, match="cannot read episode file /dev/zero: not a file"):
        read_episode_csv("/dev/zero", NAMES)  # would otherwise be read forever
    monkeypatch.setattr(fewshot_lists, "MAX_CSV_BYTES", 100)
    path = write_episode_file(tmp_path / "e.csv", ["episode_id", "query0"], [["0", "x"]] * 20)
    with pytest.raises(DataError, match=f"episode file {path} is over"):
        read_episode_csv(path, NAMES)


def test_a_cifar_batch_that_is_a_folder_is_named(tmp_path):
    path = write_cifar(tmp_path / "c10", _good_batch())
    path.unlink()
    path.mkdir()
    with pytest.raises(DataError, match=f"CIFAR-10 batch file {path} is not a file"):
        check_source("cifar10", str(tmp_path / "c10"))
