"""Few-shot runs, trained here: prototypical networks trained on episodes through the common
Trainer, tested per K on fixed meta-test episodes (mean ± 95% CI); snapshots, resume, other
distances and data, and a run from the command line. The task, the config, the CLI's flags
and the K x distance grid: tests/unit/experiments/test_fewshot_config.py."""

from __future__ import annotations

import contextlib
import io
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from engine.cli.main import main
from engine.config import (
    DataConfig,
    FewShotConfig,
)
from engine.data import DataError
from engine.data.episodes import EpisodeSampler, load_fewshot, mean_and_ci95
from engine.execution import executor
from engine.experiments import fewshot
from engine.models.protonet import PrototypicalNetwork
from engine.store import runs
from engine.store.layout import RunLayout
from engine.train import load_checkpoint, read_events
from engine.train.tasks import Episodic
from tests.support.experiments import CPU, fewshot_config

META_TEST = {5, 6, 7, 8, 9}  # the digits' default meta-test classes
CAP_NOTICE = "10-way training asked; the meta-train classes are 5: training 5-way"


@pytest.fixture(scope="module")
def splits():
    return load_fewshot(fewshot_config())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished run with the defaults above (10-way asked: capped at 5), and its stdout."""
    run_dir = runs.create_run(fewshot_config(), tmp_path_factory.mktemp("runs"))
    with contextlib.redirect_stdout(io.StringIO()) as out:
        executor.execute(run_dir)
    assert runs.read_status(run_dir)["state"] == "finished"
    return SimpleNamespace(dir=run_dir, stdout=out.getvalue())


def summary_of(run_dir) -> dict:
    return runs.read_status(run_dir)["summary"]


def events(run_dir, split: str | None = None) -> list[dict]:
    return [e for e in read_events(RunLayout(run_dir).metrics)[0] if split in (None, e["split"])]


def trained_model(run_dir, checkpoint: str = "best.pt"):
    cfg = runs.load_config(run_dir)
    ckpt = load_checkpoint(RunLayout(run_dir).checkpoints / checkpoint)
    model = PrototypicalNetwork(cfg.distance, cfg.mlp_head, cfg.data.image_size)
    model.load_state_dict(ckpt["model"])
    mean = torch.tensor(ckpt["extra"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(ckpt["extra"]["std"]).view(1, 3, 1, 1)
    return model.eval(), lambda images: (images.float() / 255 - mean) / std


@torch.no_grad()
def evaluate_by_hand(run_dir, splits, shots: int) -> tuple[float, float]:
    """best.pt on the meta-test episodes drawn here, each embedded on its own (no table)."""
    cfg = runs.load_config(run_dir)
    model, normalise = trained_model(run_dir)
    sampler = EpisodeSampler(splits.test.labels, 5, shots, 15, seed=fewshot.EVAL_SEED + shots)
    support_labels = torch.arange(5).repeat_interleave(shots)
    query_labels = torch.arange(5).repeat_interleave(15)
    accs = []
    for i in range(cfg.test_episodes):
        ix = sampler.episode(i)
        assert set(ix.classes.tolist()) == META_TEST  # 5-way: all five meta-test digits
        model.process_support_set(normalise(splits.test.images[ix.support]), support_labels)
        logits = model(normalise(splits.test.images[ix.query]))
        accs.append((logits.argmax(1) == query_labels).float().mean().item())
    return mean_and_ci95(accs)


# --- a finished run ----------------------------------------------------------------------------


def test_a_finished_run_reports_each_k_as_mean_and_ci95(trained):
    s = summary_of(trained.dir)
    assert s["epochs_done"] == 2 and s["model"] == "protonet"
    assert (s["distance"], s["mlp_head"], s["train_way"]) == ("euclidean", True, 5)
    assert s["trainable_params"] == sum(
        p.numel() for p in PrototypicalNetwork("euclidean", True, 28).parameters()
    )
    for k in (1, 5):
        r = s[f"test_{k}shot"]
        assert set(r) == {"acc", "ci95", "seconds"}
        assert 0 < r["acc"] <= 1 and 0 < r["ci95"] < 0.5 and r["seconds"] > 0
    assert "test_10shot" not in s
    # test_acc: the K the run was trained with (1-shot)
    assert (s["test_acc"], s["test_ci95"]) == (s["test_1shot"]["acc"], s["test_1shot"]["ci95"])
    assert 0 < s["best_val_acc"] <= 1
    assert "meta-test 5, 6, 7, 8, 9" in s["data"]


def test_the_test_numbers_are_best_pt_on_the_fixed_meta_test_episodes(trained, splits):
    s = summary_of(trained.dir)
    for k in (1, 5):
        acc, ci = evaluate_by_hand(trained.dir, splits, k)
        assert s[f"test_{k}shot"]["acc"] == pytest.approx(acc)
        assert s[f"test_{k}shot"]["ci95"] == pytest.approx(ci)


def test_test_events_per_k_and_validation_events_per_epoch(trained):
    s = summary_of(trained.dir)
    test = events(trained.dir, "test")
    names = [e["name"] for e in test]
    assert sorted(names) == sorted(
        f"{m}_{k}shot" for m in ("acc", "ci95", "eval_seconds") for k in (1, 5)
    )  # each once
    values = {e["name"]: e["value"] for e in test}
    for k in (1, 5):
        r = s[f"test_{k}shot"]
        assert values[f"acc_{k}shot"] == pytest.approx(r["acc"])
        assert values[f"ci95_{k}shot"] == pytest.approx(r["ci95"])
        assert values[f"eval_seconds_{k}shot"] == pytest.approx(r["seconds"])
    assert {(e["epoch"], e["step"]) for e in test} == {(2, 10)}  # 2 epochs x 5 episodes
    val = events(trained.dir, "val")
    for name in ("acc", "acc_ci95", "loss"):
        assert [e["epoch"] for e in val if e["name"] == name] == [1, 2]
    train_steps = [e["step"] for e in events(trained.dir, "train") if e["name"] == "loss"]
    assert train_steps == list(range(1, 11))  # one episode per step, log_every=1


def test_best_pt_is_the_best_validation_episode_accuracy(trained):
    val = {e["epoch"]: e["value"] for e in events(trained.dir, "val") if e["name"] == "acc"}
    progress = load_checkpoint(RunLayout(trained.dir).best_checkpoint)["progress"]
    assert progress["best_score"] == pytest.approx(max(val.values()))
    assert progress["epoch"] == min(e for e, v in val.items() if v == max(val.values()))
    assert summary_of(trained.dir)["best_val_acc"] == pytest.approx(max(val.values()))


def test_training_is_capped_at_the_meta_train_classes_with_a_notice(trained):
    assert CAP_NOTICE in trained.stdout
    assert summary_of(trained.dir)["train_way"] == 5
    assert runs.load_config(trained.dir).train_way == 10  # the config keeps what was asked


def test_embedding_snapshots_hold_only_meta_test_images(trained, splits):
    layout = RunLayout(trained.dir)
    assert layout.embedding_epochs() == [1, 2]
    first, last = (np.load(layout.embedding_file(e)) for e in (1, 2))
    assert last["features"].shape == (50, 400) and last["features"].dtype == np.float32
    assert np.array_equal(first["sample_ids"], last["sample_ids"])  # the same images each time
    assert not np.allclose(first["features"], last["features"])  # ... embedded by a newer model
    test_label = dict(zip(splits.test.ids.tolist(), splits.test.labels.tolist(), strict=True))
    ids = last["sample_ids"].tolist()
    assert len(set(ids)) == 50 and set(ids) <= set(test_label)
    assert last["labels"].tolist() == [test_label[i] for i in ids]
    assert set(last["labels"].tolist()) == META_TEST
    assert set(last["predictions"].tolist()) <= META_TEST
    # features: the last model's embeddings (last.pt is the end of epoch 2)
    model, normalise = trained_model(trained.dir, "last.pt")
    position = {i: k for k, i in enumerate(splits.test.ids.tolist())}
    images = splits.test.images[[position[i] for i in ids]]
    with torch.no_grad():
        want = model.embed(normalise(images)).numpy()
    np.testing.assert_allclose(last["features"], want, rtol=1e-4, atol=1e-4)


def test_progress_counts_episodes_as_steps(trained):
    assert runs.read_status(trained.dir)["total_steps"] == 2 * 5


# --- the episodes a run draws ------------------------------------------------------------------


def test_prepare_draws_training_validation_episodes_as_configured(splits, capsys):
    p = fewshot.prepare(fewshot_config(train_way=3, train_shot=2, train_query=4), splits, CPU)
    assert "-way training asked" not in capsys.readouterr().out  # 3 <= 5: no cap
    train = p.loader(splits.train, True, False)
    s = train.sampler
    assert (s.n_way, s.k_shot, s.q_query, s.seed, len(train)) == (3, 2, 4, 0, 5)
    assert not train.fixed and train.embed is None
    val = p.loader(splits.val, False, False)
    s = val.sampler
    assert (s.n_way, s.k_shot, s.q_query, len(val)) == (5, 2, 15, 5)
    assert val.fixed and val.embed is not None  # embedded once per pass
    assert isinstance(p.task, Episodic)


# --- resume ------------------------------------------------------------------------------------


def test_a_stopped_run_resumes_to_the_same_numbers(trained, tmp_path):
    run_dir = runs.create_run(fewshot_config(), tmp_path / "runs")
    calls = []

    def stop_at_step_7() -> bool:  # the middle of epoch 2
        calls.append(1)
        return len(calls) == 7

    first = fewshot.run(runs.load_config(run_dir), run_dir, should_stop=stop_at_step_7)
    assert first["epochs_done"] == 1 and "test_1shot" not in first
    assert load_checkpoint(RunLayout(run_dir).last_checkpoint)["progress"]["step_in_epoch"] == 2
    resumed = fewshot.run(runs.load_config(run_dir), run_dir, resume=True)
    straight = summary_of(trained.dir)
    assert resumed["epochs_done"] == 2
    assert resumed["best_val_acc"] == pytest.approx(straight["best_val_acc"], abs=1e-9)
    for k in (1, 5):
        for key in ("acc", "ci95"):
            got, want = resumed[f"test_{k}shot"][key], straight[f"test_{k}shot"][key]
            assert got == pytest.approx(want, abs=1e-9)

    def logged(run_dir) -> dict:
        return {
            (e["name"], e["split"], e["epoch"], e["step"]): e["value"]
            for e in events(run_dir)
            if "seconds" not in e["name"]  # wall time: the one value that may differ
        }

    assert len(events(run_dir)) == len(events(trained.dir))  # nothing logged twice
    assert logged(run_dir) == pytest.approx(logged(trained.dir), abs=1e-6)
    np.testing.assert_allclose(
        np.load(RunLayout(run_dir).embedding_file(2))["features"],
        np.load(RunLayout(trained.dir).embedding_file(2))["features"],
        atol=1e-6,
    )


# --- other distances, other data ---------------------------------------------------------------


def test_a_parametric_run_trains_5_shot_and_tests_on_the_same_episodes(splits, runs_dir):
    cfg = fewshot_config(distance="parametric", seed=3, epochs=1, episodes_per_epoch=3, val_episodes=3,
               train_way=5, train_shot=5, test_shots=[1, 5], test_episodes=10)  # fmt: skip
    run_dir = runs.create_run(cfg, runs_dir)
    s = executor.execute(run_dir)
    assert runs.read_status(run_dir)["state"] == "finished"
    assert s["distance"] == "parametric"
    net = PrototypicalNetwork("parametric", True, 28)
    assert s["trainable_params"] == sum(p.numel() for p in net.parameters())
    assert s["test_acc"] == s["test_5shot"]["acc"]  # trained 5-shot: its K is the headline
    for k in (1, 5):  # the test episodes every run gets: drawn by hand, the same numbers
        acc, ci = evaluate_by_hand(run_dir, splits, k)
        assert s[f"test_{k}shot"]["acc"] == pytest.approx(acc)
        assert s[f"test_{k}shot"]["ci95"] == pytest.approx(ci)


COLOURS = [
    (200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40), (40, 200, 200),
    (200, 40, 200), (120, 120, 120), (250, 250, 250), (10, 10, 10), (90, 160, 30),
]  # fmt: skip


@pytest.fixture(scope="module")
def mini_imagenet(tmp_path_factory):
    """train/ 3 classes x 20, val/ 2 x 16, test/ 5 x 16 noisy solid colours, 12x12 PNGs."""
    root = tmp_path_factory.mktemp("mini")
    rng = np.random.default_rng(0)
    layout = {"train": (["n01", "n02", "n03"], 20), "val": (["n04", "n05"], 16),
              "test": (["n06", "n07", "n08", "n09", "n10"], 16)}  # fmt: skip
    c = 0
    for split, (names, n) in layout.items():
        for name in names:
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(np.array(COLOURS[c]) + rng.normal(0, 30, (12, 12, 3)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / name / f"{i}.png")
            c += 1
    return root


def _folder_cfg(root) -> FewShotConfig:
    return fewshot_config(data=DataConfig(name="folder", path=str(root), image_size=16), epochs=1,
                episodes_per_epoch=2, val_episodes=2, test_episodes=3, test_shots=[1],
                snapshot_size=10)  # fmt: skip


def test_a_mini_imagenet_style_folder_trains(mini_imagenet, runs_dir, capsys):
    run_dir = runs.create_run(_folder_cfg(mini_imagenet), runs_dir)
    s = executor.execute(run_dir)
    assert runs.read_status(run_dir)["state"] == "finished"
    assert s["train_way"] == 3 and "the meta-train classes are 3" in capsys.readouterr().out
    assert s["data"].startswith(f"few-shot folders {mini_imagenet} (train/, test/, val/)")
    assert 0 < s["test_1shot"]["acc"] <= 1
    classes = s["classes"]
    labels = np.load(RunLayout(run_dir).embedding_file(1))["labels"]
    assert {classes[c] for c in labels} <= {"n06", "n07", "n08", "n09", "n10"}


def test_the_cli_trains_on_a_mini_imagenet_style_folder(mini_imagenet, runs_dir, capsys):
    argv = ["--runs-dir", str(runs_dir), "train", "--kind", "fewshot", "--dataset", "folder",
            "--data-path", str(mini_imagenet), "--image-size", "16", "--epochs", "1",
            "--episodes-per-epoch", "2", "--test-shots", "1", "--test-episodes", "3"]  # fmt: skip
    code = main(argv)
    assert code == 0, capsys.readouterr().err


def test_too_few_meta_test_classes_fail_before_training(runs_dir):
    cfg = fewshot_config(meta_test_classes=["7", "8", "9"], epochs=1, episodes_per_epoch=2,
               val_episodes=2, test_episodes=3, test_shots=[1])  # fmt: skip
    run_dir = runs.create_run(cfg, runs_dir)
    try:
        summary = executor.execute(run_dir)
    except DataError as e:  # refused, as it should be: but before any training
        assert "5-way episodes need 5 classes" in str(e)
        assert not RunLayout(run_dir).last_checkpoint.exists()
    else:  # or tested 3-way, as training is capped
        assert 0 < summary["test_1shot"]["acc"] <= 1


# --- the CLI -----------------------------------------------------------------------------------


def test_a_tiny_run_through_the_cli_prints_each_k_with_its_ci(runs_dir, capsys):
    argv = ["--runs-dir", str(runs_dir), "train", "--kind", "fewshot", "--image-size", "28",
            "--epochs", "1", "--episodes-per-epoch", "3", "--train-way", "3", "--train-shot", "1",
            "--test-shots", "5,1", "--test-episodes", "10", "--distance", "cosine",
            "--cosine-scale", "learned", "--no-mlp-head", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    line = out.strip().splitlines()[-1]
    assert re.search(r"1shot \d+\.\d\d% ± \d+\.\d\d%", line), out
    assert re.search(r"5shot \d+\.\d\d% ± \d+\.\d\d%", line), out
    assert "-way training asked" not in out
    (run_dir,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    cfg = runs.load_config(run_dir)
    assert isinstance(cfg, FewShotConfig)
    assert (cfg.distance, cfg.mlp_head, cfg.train_way, cfg.train_shot) == ("cosine", False, 3, 1)
    assert (cfg.test_shots, cfg.test_episodes, cfg.episodes_per_epoch) == ([1, 5], 10, 3)
    s = summary_of(run_dir)
    assert runs.read_status(run_dir)["state"] == "finished"
    assert f"1shot {s['test_1shot']['acc']:.2%} ± {s['test_1shot']['ci95']:.2%}" in line
    assert s["trainable_params"] == 113_088 + 1  # Conv-4 and the cosine scale, no MLP head
    features = np.load(RunLayout(run_dir).embedding_file(1))["features"]
    assert features.shape[1] == 64  # Conv-4 alone at 28x28: 64 x 1 x 1
