"""One table of bad inputs (issue 11): each is refused with a message that names the file or
field and the problem, or, where it is only unusual (alpha, 16-bit, grayscale), accepted and
converted. Nothing here may end in a traceback a person has to read."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.config import ConfigError, RunConfig
from engine.data import DataError, load_dataset
from engine.data.episodes import EpisodeSampler
from engine.data.landcover import read_pair
from engine.data.sources import read_cifar10, read_image, read_image_folder
from engine.models.backbones import build_transfer_net
from engine.models.weights import WeightsError, load_state_dict_file
from engine.train import CheckpointError, load_checkpoint

# Something a pickle would run if it were loaded as pickles are by default.
RAN = Path("/tmp/workbench-bad-input-ran")


class _Payload:
    def __reduce__(self):
        return (Path.touch, (RAN,))


def _png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def _folder(root: Path, classes: dict[str, int], size: int = 8) -> Path:
    for name, n in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            _png(root / name / f"{i}.png", np.full((size, size, 3), 40 * i % 255, np.uint8))
    return root


def _cifar(root: Path, batch: object) -> Path:
    root.mkdir()
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        with open(root / name, "wb") as f:
            pickle.dump(batch, f)
    return root


# --- refused, with a message -----------------------------------------------------------------
def corrupt_jpeg(tmp: Path):
    path = tmp / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return lambda: read_image(path, 8), DataError, "cannot read image .*broken.jpg"


def truncated_png(tmp: Path):
    full = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(full, format="PNG")
    path = tmp / "half.png"
    path.write_bytes(full.getvalue()[:40])
    return lambda: read_image(path, 8), DataError, "cannot read image .*half.png"


def empty_class_folder(tmp: Path):
    root = _folder(tmp / "data", {"cat": 3, "dog": 3})
    (root / "empty").mkdir()
    return lambda: read_image_folder(root, 8), DataError, "empty"


def folder_without_images(tmp: Path):
    (tmp / "nothing" / "a").mkdir(parents=True)
    (tmp / "nothing" / "a" / "notes.txt").write_text("no images here")
    (tmp / "nothing" / "b").mkdir()
    return lambda: read_image_folder(tmp / "nothing", 8), DataError, "nothing"


def missing_folder(tmp: Path):
    return (lambda: read_image_folder(tmp / "nowhere", 8), DataError, "nowhere")


def cifar_not_a_dict(tmp: Path):
    root = _cifar(tmp / "cifar", [1, 2, 3])
    return lambda: read_cifar10(root, 8), DataError, "data_batch_1"


def cifar_missing_keys(tmp: Path):
    root = _cifar(tmp / "cifar", {b"data": np.zeros((2, 3072), np.uint8)})
    return lambda: read_cifar10(root, 8), DataError, "data_batch_1"


def cifar_that_runs_code(tmp: Path):
    root = _cifar(tmp / "cifar", _Payload())
    return lambda: read_cifar10(root, 8), DataError, "data_batch_1"


def sat_and_mask_of_other_sizes(tmp: Path):
    sat, mask = tmp / "0002_sat.jpg", tmp / "0002_mask.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(sat)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(mask)
    return lambda: read_pair(sat, mask, 16), DataError, "0002"


def more_ways_than_classes(tmp: Path):
    labels = np.repeat(np.arange(3), 20)
    return lambda: EpisodeSampler(labels, 5, 1, 1), DataError, "5-way episodes need 5 classes"


def too_few_shots(tmp: Path):
    labels = np.array([0] * 20 + [1] * 3)
    return (lambda: EpisodeSampler(labels, 2, 5, 5), DataError,
            "need 10 images per class; in the dataset, class '1' has 3")  # fmt: skip


def lr_not_positive(tmp: Path):
    cfg = RunConfig()
    cfg.optim.lr = 0.0
    return cfg.validate, ConfigError, "lr must be > 0"


def zero_epochs(tmp: Path):
    return RunConfig(epochs=0).validate, ConfigError, r"epochs must be in \[1, 100000\]"


def unknown_model(tmp: Path):
    cfg = RunConfig()
    cfg.model.name = "resnet1000"
    return cfg.validate, ConfigError, "model.name must be one of .*'resnet1000'"


def config_with_unknown_fields(tmp: Path):
    path = tmp / "config.json"
    path.write_text('{"epochs": 3, "lrr": 0.1}')
    return lambda: RunConfig.load(path), ConfigError, r"unknown field\(s\) \['lrr'\]"


def config_not_json(tmp: Path):
    path = tmp / "config.json"
    path.write_text("{epochs: 3")
    return lambda: RunConfig.load(path), ConfigError, "config.json is not valid JSON"


def checkpoint_of_another_architecture(tmp: Path):
    path = tmp / "vgg.pt"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, path)
    return (lambda: build_transfer_net("resnet18", 2, 32, str(path)), WeightsError,
            "none of the 1 tensors in .*vgg.pt fit the resnet18 backbone")  # fmt: skip


def checkpoint_that_runs_code(tmp: Path):
    path = tmp / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "x": _Payload()}, path)
    return lambda: load_checkpoint(path), CheckpointError, "evil.pt cannot be read"


def weights_that_run_code(tmp: Path):
    path = tmp / "evil-weights.pt"
    torch.save(_Payload(), path)
    return lambda: load_state_dict_file(path), WeightsError, "evil-weights.pt cannot be read"


def checkpoint_that_is_not_one(tmp: Path):
    path = tmp / "list.pt"
    torch.save([1, 2, 3], path)
    return lambda: load_checkpoint(path), CheckpointError, "list.pt is not a workbench checkpoint"


def classes_not_in_the_dataset(tmp: Path):
    from engine.config import DataConfig

    return (lambda: load_dataset(DataConfig(image_size=8, classes=["0", "x"])), DataError,
            "data.classes: 'x' not in")  # fmt: skip


def path_outside_the_data_roots(tmp: Path):
    from engine.data.roots import check_data_path

    (tmp / "data").mkdir()
    return (lambda: check_data_path(str(tmp / "data" / ".." / ".."), [tmp / "data"]),
            ConfigError, "is outside the folders the dashboard may read")  # fmt: skip


def runs_folder_that_is_a_file(tmp: Path):
    from engine.config import RunConfig
    from engine.store.runs import RunError, create_run

    (tmp / "runs").write_text("a file where the runs folder should be")
    return (lambda: create_run(RunConfig(), tmp / "runs"), RunError,
            "cannot create the runs folder .*runs: part of the path is a file")  # fmt: skip


def decompression_bomb(tmp: Path):
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    path = tmp / "bomb.png"  # 150 bytes declaring 20000 x 20000 pixels
    ihdr = struct.pack(">IIBBBBB", 20_000, 20_000, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b""))  # fmt: skip
    return lambda: read_image(path, 8), DataError, "bomb.png has 400 megapixels; at most 64"


def cut_jpeg_before_a_run(tmp: Path):
    from engine.data import check_source

    root = _folder(tmp / "data", {"cat": 3, "dog": 3})
    full = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(
        full, format="JPEG"
    )
    (root / "dog" / "cut.jpg").write_bytes(full.getvalue()[:500])
    return lambda: check_source("folder", str(root)), DataError, "cannot read image .*cut.jpg"


def cifar_label_of_ten_to_the_thirty(tmp: Path):
    root = _cifar(tmp / "cifar", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10**30]})
    return (lambda: read_cifar10(root, 8), DataError,
            "data_batch_1: 'labels' must lie in 0..9")  # fmt: skip


def cifar_data_of_none(tmp: Path):
    root = _cifar(tmp / "cifar", {b"data": np.array([None, None]), b"labels": [0, 1]})
    return lambda: read_cifar10(root, 8), DataError, "data_batch_1: 'data' must be an array"


def list_row_of_one_column(tmp: Path):
    from engine.data.image_lists import read_image_list

    (tmp / "train.csv").write_text("filename,label\na.png,cat\nb.png\n")
    return (lambda: read_image_list(tmp / "train.csv", 8), DataError,
            r"train.csv, line 3: 1 field\(s\), but the header has 2")  # fmt: skip


def list_in_latin_1(tmp: Path):
    from engine.data.image_lists import read_image_list

    (tmp / "train.csv").write_bytes("filename,label\na.png,caf\xe9\n".encode("latin-1"))
    return (lambda: read_image_list(tmp / "train.csv", 8), DataError,
            r"train.csv, line 2: not UTF-8 text")  # fmt: skip


def episode_header_class_x(tmp: Path):
    from engine.data.episodes import read_episode_csv

    (tmp / "episodes.csv").write_text("episode_id,classX_support0,query0\n0,a.png,b.png\n")
    return (lambda: read_episode_csv(tmp / "episodes.csv", ["a.png", "b.png"]), DataError,
            "episodes.csv: column 'classX_support0' is neither")  # fmt: skip


def class_folder_linked_out_of_the_dataset(tmp: Path):
    from engine.data.roots import ENV

    root = _folder(tmp / "data", {"cat": 3, "dog": 3})
    _folder(tmp / "secret", {"keys": 3})
    (root / "keys").symlink_to(tmp / "secret" / "keys")
    (tmp / "roots").mkdir()

    def read():
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(ENV, str(tmp / "roots"))  # only the dataset folder is in bounds
            read_image_folder(root, 8)

    return read, DataError, "keys/0.png leads outside the dataset folder .*data"


def mask_of_class_numbers(tmp: Path):
    sat, mask = tmp / "0003_sat.png", tmp / "0003_mask.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(sat)
    Image.fromarray(np.full((8, 8), 4, np.uint8)).save(mask)  # class numbers: all black
    return lambda: read_pair(sat, mask, 8), DataError, "mask .*0003_mask.png is not a colour image"


REFUSED = [
    corrupt_jpeg, truncated_png, empty_class_folder, folder_without_images, missing_folder,
    cifar_not_a_dict, cifar_missing_keys, cifar_that_runs_code,
    sat_and_mask_of_other_sizes, more_ways_than_classes, too_few_shots, lr_not_positive,
    zero_epochs, unknown_model, config_with_unknown_fields, config_not_json,
    checkpoint_of_another_architecture, checkpoint_that_runs_code, weights_that_run_code,
    checkpoint_that_is_not_one, classes_not_in_the_dataset, path_outside_the_data_roots,
    runs_folder_that_is_a_file, decompression_bomb, cut_jpeg_before_a_run,
    cifar_label_of_ten_to_the_thirty, cifar_data_of_none, list_row_of_one_column,
    list_in_latin_1, episode_header_class_x, class_folder_linked_out_of_the_dataset,
    mask_of_class_numbers,
]  # fmt: skip


@pytest.mark.parametrize("case", REFUSED, ids=[c.__name__ for c in REFUSED])
def test_a_bad_input_is_refused_with_a_message_that_names_it(case, tmp_path):
    RAN.unlink(missing_ok=True)
    call, error, message = case(tmp_path)
    with pytest.raises(error, match=message):
        call()
    assert not RAN.exists(), "a pickle ran code while being loaded"


def test_the_table_holds_at_least_twenty_bad_inputs():
    assert len(REFUSED) >= 20


# --- unusual, accepted and converted ---------------------------------------------------------
def test_a_png_with_transparency_is_composited_onto_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 0  # red, fully transparent: a person sees white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png", 8)[:, 0, 0].tolist() == [255, 255, 255]


def test_a_16_bit_png_keeps_its_range_instead_of_turning_white(tmp_path):
    ramp = np.linspace(0, 65535, 16 * 16).reshape(16, 16).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I;16")
    x = read_image(tmp_path / "deep.png", 16)
    assert x.shape == (3, 16, 16) and int(x.min()) <= 5 and int(x.max()) >= 250
    assert 100 < float(x.float().mean()) < 155  # a ramp: grey on average, not white


def test_a_grayscale_image_becomes_three_equal_channels(tmp_path):
    Image.fromarray(np.full((8, 8), 90, np.uint8), "L").save(tmp_path / "g.png")
    x = read_image(tmp_path / "g.png", 8)
    assert x.shape == (3, 8, 8) and x.unique().tolist() == [90]


def test_the_payload_runs_when_loaded_as_pickles_are_by_default(tmp_path):
    """So the two refusals above mean something: a plain unpickler would have run it."""
    RAN.unlink(missing_ok=True)
    pickle.loads(pickle.dumps(_Payload()))
    assert RAN.exists()
    RAN.unlink()
