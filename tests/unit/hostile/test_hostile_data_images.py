"""Hostile and damaged data files (issue 19), the images: decompression bombs, damaged images
and masks, malformed CIFAR batches, and the checks that refuse them before a run folder is
made. Each is one DataError naming the file (and the entry); the files are a few KB, written
by the test. Few-shot lists and links out of the dataset: test_hostile_data_lists.py."""

from __future__ import annotations

import io
import os
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.cli.main import main
from engine.data import DataError, check_source
from engine.data.episodes import check_fewshot_source, load_fewshot
from engine.data.images import MAX_IMAGE_MEGAPIXELS, check_image, read_image
from engine.data.landcover import labels_to_rgb, read_pair
from engine.data.sources import read_cifar10, read_image_folder, read_prefixed
from engine.store import runs
from tests.support.hostile_data import (
    fewshot_cfg,
    good_batch,
    image_folder,
    png,
    write_cifar,
    write_lists,
)


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


def encoded(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def noise(size: int = 64) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), np.uint8))


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


_NESTED = [[0] * 1000] * 1000  # one list referenced 1000 times: small pickled, 10**6 as numbers
CIFAR_CASES = {
    "huge label": ({**good_batch(), b"labels": [0, 1, 10**30, 2]}, "'labels' must lie in 0..9, found 0..about 2\\*\\*100"),
    "label 10": ({**good_batch(), b"labels": [0, 1, 10, 2]}, "'labels' must lie in 0..9, found 0..10"),
    "negative label": ({**good_batch(), b"labels": [0, -1, 3, 2]}, "found -1..3"),
    "label None": ({**good_batch(), b"labels": [0, None, 1, 2]}, "'labels' .*label 1 is a NoneType"),
    "label string": ({**good_batch(), b"labels": ["cat"] * 4}, "'labels' .*label 0 is a str"),
    "label bool": ({**good_batch(), b"labels": [True] * 4}, "'labels' .*label 0 is a bool"),
    "labels 2-D": ({**good_batch(), b"labels": np.zeros((4, 1), np.int64)}, "'labels' must be .*shape \\(4, 1\\)"),
    "labels nested": ({**good_batch(), b"labels": _NESTED}, "'labels' .*label 0 is a list"),
    "labels a string": ({**good_batch(), b"labels": b"0123"}, "'labels' must be .*a bytes"),
    "labels float array": ({**good_batch(), b"labels": np.zeros(4)}, "'labels' must be .*float64"),
    "data of None": ({**good_batch(), b"data": np.array([None] * 4, dtype=object)}, "'data' must be .*object"),
    "data a string": ({**good_batch(), b"data": "pixels"}, "'data' must be .*a str"),
    "data floats": ({**good_batch(), b"data": np.zeros((4, 3072), np.float32)}, "'data' must be .*float32"),
    "data of 3 dims": ({**good_batch(), b"data": np.zeros((4, 3, 1024), np.uint8)}, "'data' must have the shape \\(N, 3072\\), found \\(4, 3, 1024\\)"),
    "data over 255": ({**good_batch(), b"data": np.full((4, 3072), 256, np.int16)}, "'data' values must lie in 0..255, found 256..256"),
    "empty batch": ({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}, "'data' holds no images"),
    "empty dict": ({}, "not a CIFAR-10 python batch: no 'data' entry"),
    "no labels": ({b"data": np.zeros((4, 3072), np.uint8)}, "no 'labels' entry"),
    "fewer labels": ({**good_batch(), b"labels": [1, 2]}, "'data' holds 4 images but 'labels' 2"),
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
