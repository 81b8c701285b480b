"""Few-shot data as the seed's course gives mini-ImageNet: train.csv / val.csv image lists and
a CSV of fixed test episodes."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
from PIL import Image

from engine.cli.main import main
from engine.config import DataConfig, FewShotConfig
from engine.data import DataError
from engine.data.episodes import check_fewshot_source, episodes_from_csv, load_fewshot
from engine.execution import executor
from engine.store import runs

TRAIN = ["n01", "n02", "n03"]
TEST = ["n11", "n12"]


def write_lists(root, per_class=10):
    """root/train.csv + root/train/*.png and root/val.csv + root/val/*.png; each class its own
    colour, so a model can tell them apart."""
    rng = np.random.default_rng(0)
    for split, classes in (("train", TRAIN), ("val", TEST)):
        (root / split).mkdir(parents=True)
        with open(root / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "filename", "label"])
            for c, name in enumerate(classes):
                colour = rng.integers(0, 256, 3)
                for i in range(per_class):
                    file = f"{name}_{i}.png"
                    noise = rng.integers(-20, 20, (20, 20, 3))
                    Image.fromarray(np.clip(colour + noise, 0, 255).astype(np.uint8)).save(
                        root / split / file
                    )
                    w.writerow([len(classes) * 100 + c * per_class + i, file, name])
    return root


def write_episodes(path, episodes):
    """episodes: [(support files per class, query files)]; 2-way 1-shot here."""
    n_query = len(episodes[0][1])
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["episode_id", "class0_support0", "class1_support0"]
                   + [f"query{i}" for i in range(n_query)])  # fmt: skip
        for i, (support, query) in enumerate(episodes):
            w.writerow([i, *support, *query])
    return path


def cfg_for(root, **kw) -> FewShotConfig:
    return FewShotConfig(
        data=DataConfig(name="folder", path=str(root), image_size=20, val_fraction=0.3), epochs=1,
        episodes_per_epoch=3, train_way=3, test_way=2, test_shots=[1], test_query=2,
        test_episodes=4, val_episodes=2, train_query=2, snapshot_size=10, device="cpu", **kw,
    )  # fmt: skip


def test_image_lists_give_disjoint_meta_train_and_meta_test_classes(tmp_path):
    root = write_lists(tmp_path / "mini")
    splits = load_fewshot(cfg_for(root))
    assert splits.classes == TRAIN + TEST
    train_classes = {splits.classes[i] for i in splits.train.labels.tolist()}
    val_classes = {splits.classes[i] for i in splits.val.labels.tolist()}
    test_classes = {splits.classes[i] for i in splits.test.labels.tolist()}
    assert train_classes == val_classes == set(TRAIN)  # val: held-out images of train classes
    assert test_classes == set(TEST)
    assert len(splits.test) == 2 * 10
    # every image keeps its file name, for episode files
    assert sorted(splits.names[i] for i in splits.test.ids.tolist()) == sorted(
        f"{c}_{i}.png" for c in TEST for i in range(10)
    )


def test_a_list_naming_a_missing_file_names_the_line(tmp_path):
    root = write_lists(tmp_path / "mini")
    (root / "val" / "n12_3.png").unlink()
    with pytest.raises(DataError, match=r"val\.csv, line \d+: n12_3\.png is not in"):
        load_fewshot(cfg_for(root))


def test_lists_with_shared_classes_are_refused(tmp_path):
    root = write_lists(tmp_path / "mini")
    shutil.copy(root / "val" / "n11_0.png", root / "val" / "n11_copy.png")
    with open(root / "val.csv", "a", newline="") as f:
        csv.writer(f).writerow([999, "n11_copy.png", "n01"])
    with pytest.raises(DataError, match="repeats classes of another list: n01"):
        load_fewshot(cfg_for(root))


def test_check_fewshot_source_accepts_lists_and_wants_a_meta_test_list(tmp_path):
    root = write_lists(tmp_path / "mini")
    check_fewshot_source("folder", str(root))
    (root / "val.csv").unlink()
    with pytest.raises(DataError, match="train.csv but no val.csv or test.csv"):
        check_fewshot_source("folder", str(root))


def test_episode_file_positions_and_query_labels(tmp_path):
    root = write_lists(tmp_path / "mini")
    splits = load_fewshot(cfg_for(root))
    path = write_episodes(tmp_path / "episodes.csv", [
        (["n12_0.png", "n11_0.png"], ["n11_1.png", "n12_1.png", "n12_2.png"]),
    ])  # fmt: skip
    (ep,) = episodes_from_csv(path, splits)
    name = {p: splits.names[i] for p, i in enumerate(splits.test.ids.tolist())}
    assert [name[p] for p in ep.support] == ["n12_0.png", "n11_0.png"]
    assert [name[p] for p in ep.query] == ["n11_1.png", "n12_1.png", "n12_2.png"]
    assert ep.query_labels.tolist() == [1, 0, 0]  # class0 of this episode is n12


def test_an_episode_file_naming_an_unknown_image_fails_before_training(tmp_path, runs_dir):
    root = write_lists(tmp_path / "mini")
    path = write_episodes(tmp_path / "episodes.csv", [
        (["n12_0.png", "n11_0.png"], ["n11_1.png", "nowhere.png"]),
    ])  # fmt: skip
    run_dir = runs.create_run(cfg_for(root, episodes_csv=str(path)), runs_dir)
    with pytest.raises(
        DataError, match=r"episodes\.csv, line 2: nowhere\.png is not in the image list"
    ):
        executor.execute(run_dir)
    assert runs.read_metrics(run_dir) == []  # nothing was trained


def test_a_run_on_image_lists_also_tests_the_episode_file(tmp_path, runs_dir, capsys):
    root = write_lists(tmp_path / "mini")
    episodes = [
        (["n11_0.png", "n12_0.png"], ["n11_1.png", "n11_2.png", "n12_1.png", "n12_2.png"]),
        (["n12_3.png", "n11_3.png"], ["n12_4.png", "n11_4.png", "n11_5.png", "n12_5.png"]),
    ]
    path = write_episodes(tmp_path / "episodes.csv", episodes)
    config = tmp_path / "config.json"  # the course's small test split needs few queries
    config.write_text(cfg_for(root, episodes_csv=str(path)).to_json())
    code = main(["--runs-dir", str(runs_dir), "train", "--config", str(config)])
    assert code == 0
    assert "episode file (2 episodes)" in capsys.readouterr().out
    (run,) = runs.list_runs(runs_dir)
    r = run.status["summary"]["test_csv"]
    assert r["episodes"] == 2 and r["file"] == str(path.resolve())
    # two episodes of four queries: accuracies are multiples of 1/8
    assert r["acc"] * 8 == pytest.approx(round(r["acc"] * 8))
    events = {e["name"] for e in runs.read_metrics(run.path) if e["split"] == "test"}
    assert {"acc_csv", "ci95_csv", "acc_1shot"} <= events
