"""The data layouts the courses hand out, for every kind that needs them: CSV image lists
(`office/train.csv` + `office/train/`, as Office-Home) for classify, transfer and few-shot
runs; unlabelled images (a flat folder or a CSV of file names) for self-supervised runs, with
the kNN monitor on another, labelled dataset or off; and label-prefixed files whose validation
images are in their own folder (`train_50/` + `val_50/`, --val-path)."""

from __future__ import annotations

import contextlib
import csv
import io

import numpy as np
import pytest
from PIL import Image

from engine.cli.main import main
from engine.config import ConfigError, DataConfig, FewShotConfig, RunConfig, SSLConfig
from engine.data import DataError, check_source, load_dataset
from engine.data.episodes import check_fewshot_source, load_fewshot
from engine.execution import executor
from engine.store import runs
from engine.store.layout import RunLayout
from engine.train import read_events

COLOURS = {"0": (200, 30, 30), "2": (30, 200, 30), "10": (30, 30, 200)}


def _png(path, colour, rng) -> None:
    noise = rng.integers(-15, 15, (12, 12, 3))
    Image.fromarray(np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)).save(path)


def write_csv_dataset(root, splits=("train", "val"), per_class=6, with_id=True) -> None:
    """root/<split>.csv (id,filename,label) + root/<split>/*.png: Office-Home's layout; the
    labels are numbers (0, 2, 10), as Office-Home's, so their order is by value."""
    rng = np.random.default_rng(0)
    for split in splits:
        (root / split).mkdir(parents=True)
        with open(root / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "filename", "label"] if with_id else ["filename", "label"])
            for label, colour in COLOURS.items():
                for i in range(per_class):
                    name = f"{split}_{label}_{i}.jpg"
                    _png(root / split / name, colour, rng)
                    row = [name, label]
                    w.writerow([f"{split}{label}{i}", *row] if with_id else row)


def rewrite(path, rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def read_rows(path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


@pytest.fixture
def office(tmp_path):
    root = tmp_path / "office"
    write_csv_dataset(root)
    return root


# --- CSV image lists ----------------------------------------------------------------------
def test_csv_lists_give_train_and_val_and_carve_test_from_train(office):
    splits = load_dataset(DataConfig(name="csv", path=str(office), image_size=16))
    assert splits.classes == ["0", "2", "10"]  # by value, not "0", "10", "2"
    assert len(splits.val) == 18  # val.csv, whole
    assert len(splits.train) + len(splits.test) == 18  # test carved from train.csv
    assert "carved from train.csv" in splits.source
    # val.csv's labels index the same classes: class 10's images are blue
    blue = splits.val.images[splits.val.labels == 2].float().mean((0, 2, 3))
    assert blue[2] > blue[0] + 100


def test_a_test_list_is_used_as_given(tmp_path):
    root = tmp_path / "office"
    write_csv_dataset(root, ("train", "val", "test"), with_id=False)
    splits = load_dataset(DataConfig(name="csv", path=str(root), image_size=16))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 18, 18)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda rows: rows.append(["x", "missing.jpg", "0"]), "missing.jpg is not in"),
        (lambda rows: rows.__setitem__(2, [rows[2][0], rows[2][1], ""]), "label is empty"),
        (lambda rows: rows.append(["y", rows[1][1], "0"]), r"is listed twice \(first on line 2\)"),
    ],
    ids=["missing file", "empty label", "duplicated file"],
)
def test_a_bad_row_is_one_line_naming_the_list_and_line(office, damage, message):
    rows = read_rows(office / "train.csv")
    damage(rows)
    rewrite(office / "train.csv", rows)
    with pytest.raises(DataError, match=message) as e:
        check_source("csv", str(office))
    assert str(office / "train.csv") in str(e.value) and "line" in str(e.value)
    assert "\n" not in str(e.value)


def test_a_missing_image_folder_is_named(office):
    (office / "val").rename(office / "elsewhere")
    with pytest.raises(DataError, match=r"image folder of .*val\.csv is missing: expected "):
        load_dataset(DataConfig(name="csv", path=str(office), image_size=16))


def test_a_val_label_that_train_has_not_is_refused(office):
    rows = read_rows(office / "val.csv")
    rows[1][2] = "99"
    rewrite(office / "val.csv", rows)
    with pytest.raises(DataError, match=r"val\.csv has label\(s\) that train\.csv has not: 99"):
        check_source("csv", str(office))


def test_the_path_is_the_folder_not_a_list(office, tmp_path):
    with pytest.raises(DataError, match="the folder that holds train.csv"):
        check_source("csv", str(office / "train.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no train.csv"):
        check_source("csv", str(tmp_path / "empty"))


def test_classes_of_a_csv_dataset_can_be_selected(office):
    check_source("csv", str(office), ["0", "10"])
    with pytest.raises(DataError, match="'7' not among the classes"):
        check_source("csv", str(office), ["0", "7"])


def test_a_classify_run_trains_on_csv_lists_from_the_command_line(office, runs_dir):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--runs-dir", str(runs_dir), "train", "--dataset", "csv", "--data-path",
                     str(office), "--image-size", "16", "--epochs", "2", "--model", "small_cnn",
                     "--device", "cpu"])  # fmt: skip
    assert code == 0
    (run_dir,) = runs.list_runs(runs_dir)
    status = runs.read_status(run_dir.path)
    assert status["state"] == "finished"
    assert status["classes"] == ["0", "2", "10"]
    assert status["summary"]["test_acc"] > 0.6  # three colours: learnable in two epochs


def test_a_transfer_config_accepts_csv_lists(office):
    from engine.config import TransferConfig

    cfg = TransferConfig(data=DataConfig(name="csv", path=str(office), image_size=32))
    cfg.validate()
    check_source(cfg.data.name, cfg.data.path)


def test_few_shot_runs_name_their_lists_csv(tmp_path):
    from tests.unit.test_fewshot_lists import write_lists

    root = tmp_path / "mini"
    write_lists(root, per_class=6)
    cfg = FewShotConfig(data=DataConfig(name="csv", path=str(root), image_size=20))
    cfg.validate()
    check_fewshot_source("csv", str(root))
    splits = load_fewshot(cfg)
    assert set(splits.classes) == {"n01", "n02", "n03", "n11", "n12"}
    with pytest.raises(DataError, match="train.csv"):
        check_fewshot_source("csv", str(tmp_path))


# --- label-prefixed files with their own validation folder ----------------------------------
def write_prefixed(folder, per_class: int, labels=("0", "1", "2")) -> None:
    rng = np.random.default_rng(len(str(folder)))
    folder.mkdir(parents=True)
    for label in labels:
        for i in range(per_class):
            _png(folder / f"{label}_{i}.png", COLOURS.get(label, (120, 120, label == "1")), rng)


def test_val_path_gives_the_validation_folder(tmp_path):
    write_prefixed(tmp_path / "train_50", 8)
    write_prefixed(tmp_path / "val_50", 3, labels=("0", "2"))  # fewer classes is fine
    cfg = DataConfig(name="prefixed", path=str(tmp_path / "train_50"),
                     val_path=str(tmp_path / "val_50"), image_size=16)  # fmt: skip
    cfg.validate()
    check_source(cfg.name, cfg.path, val_path=cfg.val_path)
    splits = load_dataset(cfg)
    assert splits.classes == ["0", "1", "2"]
    assert len(splits.val) == 6
    assert sorted(splits.val.labels.tolist()) == [0, 0, 0, 2, 2, 2]  # "2" is class 2 of train
    assert len(splits.train) + len(splits.test) == 24  # test carved from train_50/


def test_val_path_with_a_class_train_lacks_is_refused(tmp_path):
    write_prefixed(tmp_path / "train_50", 4, labels=("0", "1"))
    write_prefixed(tmp_path / "val_50", 2, labels=("0", "7"))
    cfg = DataConfig(name="prefixed", path=str(tmp_path / "train_50"),
                     val_path=str(tmp_path / "val_50"), image_size=16)  # fmt: skip
    with pytest.raises(DataError, match=r"val_50 has class\(es\) that .*train_50 has not: 7"):
        load_dataset(cfg)


def test_val_path_is_only_for_folder_layouts():
    with pytest.raises(ConfigError, match="data.val_path is for the folder and prefixed"):
        DataConfig(name="digits", val_path="/somewhere").validate()


def test_val_path_on_the_command_line(tmp_path):
    from engine.cli.common import config_from_flags
    from engine.cli.main import build_parser

    a = build_parser().parse_args(["train", "--dataset", "prefixed", "--data-path", "t",
                                   "--val-path", "v"])  # fmt: skip
    assert config_from_flags(a).data.val_path == "v"


# --- unlabelled images for self-supervised pretraining ---------------------------------------
def write_unlabelled(folder, n: int = 40) -> None:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    for i in range(n):
        _png(folder / f"img_{i:03d}.png", list(COLOURS.values())[i % 3], rng)


def _ssl(data: DataConfig, **overrides) -> SSLConfig:
    cfg = SSLConfig(data=data, epochs=2, batch_size=8, hidden_dim=32, projection_dim=16,
                    knn_k=5, knn_bank_size=100, snapshot_size=20, snapshot_every=1, log_every=1,
                    seed=0, device="cpu", **overrides)  # fmt: skip
    return cfg.validate()


def test_unlabelled_images_load_as_one_class_from_a_folder_or_a_list(tmp_path):
    write_unlabelled(tmp_path / "raw", 30)
    splits = load_dataset(DataConfig(name="unlabelled", path=str(tmp_path / "raw"), image_size=16))
    assert splits.classes == ["unlabelled"]
    assert len(splits.train) + len(splits.val) + len(splits.test) == 30
    rewrite(tmp_path / "raw.csv", [["filename"], *[[f"img_{i:03d}.png"] for i in range(10, 30)]])
    listed = load_dataset(DataConfig(name="unlabelled", path=str(tmp_path / "raw.csv"),
                                     image_size=16))  # fmt: skip
    assert len(listed.train) + len(listed.val) + len(listed.test) == 20


def test_unlabelled_folders_that_are_not_flat_say_so(tmp_path):
    (tmp_path / "nested" / "cats").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no images .* directly .*sub-folders: cats"):
        check_source("unlabelled", str(tmp_path / "nested"))


def test_unlabelled_images_are_for_self_supervised_runs_only(tmp_path):
    with pytest.raises(ConfigError, match="unlabelled images can only pretrain a backbone"):
        RunConfig(data=DataConfig(name="unlabelled", path=str(tmp_path))).validate()


def test_knn_data_must_be_labelled_images():
    with pytest.raises(ConfigError, match="knn_data must name a dataset with one label"):
        _ssl(DataConfig(name="digits", image_size=16), knn_data="unlabelled")
    with pytest.raises(ConfigError, match="knn_data_path needs knn_data"):
        _ssl(DataConfig(name="digits", image_size=16), knn_data_path="/x")


def _execute(cfg, runs_dir):
    run_dir = runs.create_run(cfg, runs_dir)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        executor.execute(run_dir)
    return run_dir, out.getvalue()


def _event_names(run_dir, split="val") -> set[str]:
    return {e["name"] for e in read_events(RunLayout(run_dir).metrics)[0] if e["split"] == split}


def test_byol_on_unlabelled_images_without_a_monitor_says_why_and_saves_the_backbone(
    tmp_path, runs_dir
):
    write_unlabelled(tmp_path / "raw")
    cfg = _ssl(DataConfig(name="unlabelled", path=str(tmp_path / "raw"), image_size=16))
    run_dir, stdout = _execute(cfg, runs_dir)
    status = runs.read_status(run_dir)
    assert status["state"] == "finished", status.get("error")
    assert "kNN monitor off" in stdout and "--knn-data" in status["model_info"]["knn"]
    assert "kNN monitor off" in status["summary"]["knn"]
    assert (run_dir / "checkpoints" / "backbone.pt").is_file()
    assert (run_dir / "checkpoints" / "best.pt").is_file()  # by the validation loss
    names = _event_names(run_dir)
    assert {"loss", "collapse_std"} <= names and not names & {"acc", "knn_acc"}
    losses = [e["value"] for e in read_events(RunLayout(run_dir).metrics)[0]
              if e["split"] == "val" and e["name"] == "loss"]  # fmt: skip
    assert status["summary"]["best_val_loss"] == pytest.approx(min(losses), rel=1e-6)


def test_byol_on_unlabelled_images_monitored_on_the_digits(tmp_path, runs_dir):
    write_unlabelled(tmp_path / "raw")
    cfg = _ssl(DataConfig(name="unlabelled", path=str(tmp_path / "raw"), image_size=16),
               knn_data="digits")  # fmt: skip
    run_dir, _ = _execute(cfg, runs_dir)
    status = runs.read_status(run_dir)
    assert status["state"] == "finished", status.get("error")
    assert status["classes"] == [str(d) for d in range(10)]  # the monitor's, for the pages
    assert "digits" in status["model_info"]["knn_data"]
    assert 0 <= status["model_info"]["knn_acc_random_init"] <= 1
    digits = load_dataset(cfg.knn_source())
    summary = status["summary"]
    assert 0 <= summary["test_knn_acc"] <= 1
    assert "knn_acc" in _event_names(run_dir)
    from engine.store.outcomes import read_outcomes

    assert len(read_outcomes(run_dir).ids) == len(digits.test)  # tested on the digits' test


def test_a_missing_knn_dataset_is_refused_before_the_run_is_made(tmp_path, runs_dir):
    from engine.execution.start import start_run

    write_unlabelled(tmp_path / "raw")
    cfg = _ssl(DataConfig(name="unlabelled", path=str(tmp_path / "raw"), image_size=16),
               knn_data="folder", knn_data_path=str(tmp_path / "nowhere"))  # fmt: skip
    with pytest.raises(DataError, match="nowhere"):
        start_run(cfg, runs_dir, launch=False)
    assert not runs_dir.exists() or not list(runs_dir.iterdir())
