"""BYOL runs (kind "ssl") on the common path, trained here: the kNN and collapse monitors per
epoch, best.pt by kNN accuracy, the backbone file that transfers, embedding snapshots, resume,
and a run from the command line. The config, data.classes, the Trainer's step hooks and the
CLI's flags: tests/unit/experiments/test_ssl_config.py."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from engine.cli.common import print_summary
from engine.cli.main import main
from engine.config import (
    DataConfig,
    SSLConfig,
)
from engine.data import BatchLoader, ImageSet, load_dataset
from engine.execution import executor
from engine.experiments import ssl
from engine.models.backbones import build_transfer_net, get_backbone
from engine.ssl import knn_predict, knn_probe
from engine.ssl.monitor import backbone_features
from engine.store import runs
from engine.store.layout import RunLayout
from engine.train import load_checkpoint, read_events
from tests.support.helpers import val_events

CLASSES = ["a", "b", "c"]  # of the folder's four: data.classes in a real run
SPEC = get_backbone("resnet18")


def _cfg(folder, **overrides) -> SSLConfig:
    """ResNet-18 at 16x16, heads of 64 -> 32, 2 epochs of 2 steps: a few seconds."""
    cfg = SSLConfig(
        data=DataConfig(name="folder", path=str(folder), image_size=16, classes=list(CLASSES),
                        val_fraction=0.25),
        epochs=2, batch_size=16, hidden_dim=64, projection_dim=32, knn_k=5, knn_bank_size=100,
        snapshot_size=20, snapshot_every=1, log_every=1, seed=0, device="cpu",
    )  # fmt: skip
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg.validate()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, folder):
    """One finished run, its stdout, and its data (classes a, b, c)."""
    cfg = _cfg(folder)
    run_dir = runs.create_run(cfg, tmp_path_factory.mktemp("runs"))
    with contextlib.redirect_stdout(io.StringIO()) as out:
        executor.execute(run_dir)
    assert runs.read_status(run_dir)["state"] == "finished"
    return SimpleNamespace(
        dir=run_dir, cfg=cfg, stdout=out.getvalue(), splits=load_dataset(cfg.data)
    )


def summary_of(run_dir) -> dict:
    return runs.read_status(run_dir)["summary"]


def events(run_dir, split: str | None = None, name: str | None = None) -> list[dict]:
    return [
        e
        for e in read_events(RunLayout(run_dir).metrics)[0]
        if split in (None, e["split"]) and name in (None, e["name"])
    ]


def per_epoch(run_dir, name: str, split: str = "val") -> dict[int, float]:
    return {e["epoch"]: e["value"] for e in events(run_dir, split, name)}


def loader(data: ImageSet) -> BatchLoader:
    return BatchLoader(data, 64, list(SPEC.mean), list(SPEC.std))


def byol_from(run_dir, checkpoint: str):
    cfg = runs.load_config(run_dir)
    model = ssl.build_byol(cfg, cfg.data.image_size)
    model.load_state_dict(load_checkpoint(RunLayout(run_dir).checkpoints / checkpoint)["model"])
    return model.eval()


# --- a finished run -------------------------------------------------------------------------------


def test_a_finished_run_summarises_what_the_backbone_learned(trained):
    s = summary_of(trained.dir)
    assert s["epochs_done"] == 2 and s["method"] == "byol" and s["backbone"] == "resnet18"
    assert (s["projection_dim"], s["input_size"], s["classes"]) == (32, 16, CLASSES)
    for key in ("knn_acc_random_init", "test_knn_acc_random_init", "best_val_knn_acc",
                "test_knn_acc"):  # fmt: skip
        assert 0 <= s[key] <= 1, key
    assert s["test_acc"] == s["test_knn_acc"]  # what tables and `list` show
    assert "best_val_acc" not in s  # scored by kNN accuracy, named so
    model = ssl.build_byol(trained.cfg, 16)
    assert s["online_params"] == sum(p.numel() for p in model.online_parameters())
    assert s["total_params"] == sum(p.numel() for p in model.parameters())
    assert s["trainable_params"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert s["backbone_file"] == str(RunLayout(trained.dir).checkpoints / ssl.BACKBONE_FILE)
    assert "classes a, b, c" in s["data"]


def test_the_random_init_baseline_is_the_untrained_backbones_knn_accuracy(trained):
    s = summary_of(trained.dir)
    torch.manual_seed(trained.cfg.seed)  # as the run: seed, data, then the model
    splits = load_dataset(trained.cfg.data)
    model = ssl.build_byol(trained.cfg, 16)
    bank, query = splits.train, splits.val  # both under knn_bank_size / snapshot_size
    assert len(bank) <= trained.cfg.knn_bank_size and len(query) <= trained.cfg.snapshot_size
    val = knn_probe(model, loader(bank), loader(query), 3, trained.cfg.knn_k).accuracy
    test = knn_probe(model, loader(bank), loader(splits.test), 3, trained.cfg.knn_k).accuracy
    assert s["knn_acc_random_init"] == pytest.approx(val)
    assert s["test_knn_acc_random_init"] == pytest.approx(test)
    info = runs.read_status(trained.dir)["model_info"]
    assert (info["knn_acc_random_init"], info["test_knn_acc_random_init"]) == (
        s["knn_acc_random_init"], s["test_knn_acc_random_init"],
    )  # fmt: skip
    line = (
        f"kNN accuracy of the randomly initialised backbone: {val:.2%} (validation), "
        f"{test:.2%} (test)"
    )
    assert line in trained.stdout


def test_validation_events_per_epoch_and_no_training_accuracy(trained):
    val_names = {e["name"] for e in events(trained.dir, "val")}
    assert val_names == {"knn_acc", "collapse_std", "loss", "acc"}
    knn = per_epoch(trained.dir, "knn_acc")
    assert sorted(knn) == [1, 2]
    assert per_epoch(trained.dir, "acc") == knn  # acc is the kNN accuracy
    for epoch, spread in per_epoch(trained.dir, "collapse_std").items():
        assert 0 < spread < 1.5 / math.sqrt(32), epoch  # under a sphere-filling spread
    for value in per_epoch(trained.dir, "loss").values():
        assert 0 <= value <= 8
    assert events(trained.dir, "train", "acc") == []  # no labels to count in training
    steps = [e["step"] for e in events(trained.dir, "train", "loss")]
    assert steps == [1, 2, 3, 4]  # 2 steps an epoch, log_every 1
    assert sorted(per_epoch(trained.dir, "loss", "train_epoch")) == [1, 2]
    test = {e["name"]: e["value"] for e in events(trained.dir, "test")}
    assert test == {"knn_acc": summary_of(trained.dir)["test_knn_acc"],
                    "acc": summary_of(trained.dir)["test_knn_acc"]}  # fmt: skip


def test_best_pt_is_chosen_by_knn_accuracy(trained):
    knn = per_epoch(trained.dir, "knn_acc")
    progress = load_checkpoint(RunLayout(trained.dir).best_checkpoint)["progress"]
    assert progress["best_score"] == pytest.approx(max(knn.values()))
    assert progress["epoch"] == min(e for e, v in knn.items() if v == max(knn.values()))
    assert summary_of(trained.dir)["best_val_knn_acc"] == pytest.approx(max(knn.values()))


def test_backbone_pt_is_the_last_epochs_online_backbone(trained):
    """No label chooses what transfers: the last epoch, not best.pt (chosen by kNN)."""
    layout = RunLayout(trained.dir)
    backbone = torch.load(layout.checkpoints / ssl.BACKBONE_FILE, weights_only=True)
    last = load_checkpoint(layout.last_checkpoint)["model"]
    online = {k.removeprefix("body."): v for k, v in last.items() if k.startswith("body.")}
    assert set(backbone) == set(online)
    assert not any(k.startswith(("fc.", "body.", "projector", "target")) for k in backbone)
    for key, value in online.items():
        assert torch.equal(backbone[key], value), key


def test_the_transferred_backbone_is_last_pt_even_when_best_pt_differs(trained, tmp_path):
    """best.pt made different from last.pt (its online body scaled): the final step, redone
    on a copy of the finished run, still writes last.pt's body to backbone.pt."""
    run_dir = shutil.copytree(trained.dir, tmp_path / trained.dir.name)
    layout = RunLayout(run_dir)
    best = load_checkpoint(layout.best_checkpoint)
    best["model"] = {k: v * 0.5 if k.startswith("body.") and v.is_floating_point() else v
                     for k, v in best["model"].items()}  # fmt: skip
    torch.save(best, layout.best_checkpoint)
    summary = ssl.run(trained.cfg, run_dir, resume=True)
    backbone = torch.load(layout.checkpoints / ssl.BACKBONE_FILE, weights_only=True)
    last = load_checkpoint(layout.last_checkpoint)["model"]
    assert torch.equal(backbone["conv1.weight"], last["body.conv1.weight"])
    assert not torch.equal(backbone["conv1.weight"], best["model"]["body.conv1.weight"])
    assert summary["test_knn_acc"] == summary_of(trained.dir)["test_knn_acc"]


def test_the_best_checkpoints_test_accuracy_is_reported_beside_it(trained):
    splits, cfg = trained.splits, trained.cfg
    net, _ = build_transfer_net(
        "resnet18", 3, 16, weights=str(RunLayout(trained.dir).best_checkpoint)
    )
    probe = knn_probe(net, loader(splits.train), loader(splits.test), 3, cfg.knn_k)
    assert summary_of(trained.dir)["test_knn_acc_best"] == pytest.approx(probe.accuracy)


def test_backbone_pt_loads_whole_into_a_transfer_net(trained):
    path = RunLayout(trained.dir).checkpoints / ssl.BACKBONE_FILE
    net, report = build_transfer_net("resnet18", 5, 16, weights=str(path))
    assert report.loaded == report.total and not report.mismatched
    state = torch.load(path, weights_only=True)
    assert torch.equal(net.body.conv1.weight, state["conv1.weight"])
    assert torch.equal(net.body.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_best_pt_loads_its_online_backbone_not_the_target(trained):
    best = load_checkpoint(RunLayout(trained.dir).best_checkpoint)["model"]
    online, target = best["body.conv1.weight"], best["target_body.conv1.weight"]
    assert not torch.equal(online, target)  # the moving average lags behind
    net, report = build_transfer_net(
        "resnet18", 3, 16, weights=str(RunLayout(trained.dir).best_checkpoint)
    )
    assert report.loaded == report.total
    assert torch.equal(net.body.conv1.weight, online)
    assert torch.equal(net.body.bn1.running_mean, best["body.bn1.running_mean"])


def test_the_test_accuracy_is_the_backbone_files_knn_accuracy_on_the_test_split(trained):
    path = RunLayout(trained.dir).checkpoints / ssl.BACKBONE_FILE
    net, _ = build_transfer_net("resnet18", 3, 16, weights=str(path))
    splits, cfg = trained.splits, trained.cfg
    probe = knn_probe(net, loader(splits.train), loader(splits.test), 3, cfg.knn_k)
    assert summary_of(trained.dir)["test_knn_acc"] == pytest.approx(probe.accuracy)


def test_the_target_network_moves_after_every_step(trained):
    # The momentum step hook: without it the target would still be the random init.
    torch.manual_seed(trained.cfg.seed)
    load_dataset(trained.cfg.data)
    init = ssl.build_byol(trained.cfg, 16)
    last = load_checkpoint(RunLayout(trained.dir).last_checkpoint)["model"]
    assert torch.equal(init.target_body.conv1.weight, init.body.conv1.weight)
    assert not torch.equal(last["target_body.conv1.weight"], init.target_body.conv1.weight)
    assert not torch.equal(last["target_projector.0.weight"], init.target_projector[0].weight)
    # ... slowly: far closer to where it started than the online network went
    moved = (last["target_body.conv1.weight"] - init.body.conv1.weight).norm()
    online_moved = (last["body.conv1.weight"] - init.body.conv1.weight).norm()
    assert 0 < moved < 0.1 * online_moved


def test_embedding_snapshots_hold_the_backbone_features_of_validation_images(trained):
    layout, splits = RunLayout(trained.dir), trained.splits
    assert layout.embedding_epochs() == layout.confusion_epochs() == [1, 2]
    first, last = (np.load(layout.embedding_file(e)) for e in (1, 2))
    assert np.array_equal(first["sample_ids"], last["sample_ids"])
    val_label = dict(zip(splits.val.ids.tolist(), splits.val.labels.tolist(), strict=True))
    ids = last["sample_ids"].tolist()
    assert len(ids) == len(splits.val) and set(ids) == set(val_label)
    assert last["labels"].tolist() == [val_label[i] for i in ids]
    assert last["features"].shape == (len(ids), 512) and last["features"].dtype == np.float32
    assert not np.allclose(first["features"], last["features"])
    # the last epoch's snapshot: last.pt's online backbone on those images
    model = byol_from(trained.dir, "last.pt")
    images = ImageSet(splits.images_by_id(ids), torch.tensor(last["labels"]), torch.tensor(ids))
    feats, _ = backbone_features(model, loader(images))
    np.testing.assert_allclose(last["features"], feats.numpy(), rtol=1e-4, atol=1e-4)
    # predictions: the kNN labels against the training images, as the logged accuracy
    bank, bank_labels = backbone_features(model, loader(splits.train))
    want = knn_predict(bank, bank_labels, feats, 3, trained.cfg.knn_k).numpy()
    assert np.array_equal(last["predictions"], want)
    knn = per_epoch(trained.dir, "knn_acc")
    for epoch, snap in ((1, first), (2, last)):
        accuracy = float(np.mean(snap["predictions"] == snap["labels"]))
        assert knn[epoch] == pytest.approx(accuracy)
        cm = np.load(layout.confusion_file(epoch))
        assert cm.shape == (3, 3) and cm.sum() == len(ids)
        assert np.trace(cm) == round(accuracy * len(ids))


# --- resume ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stop_after", [1, 2, 4], ids=["mid-epoch", "end-of-epoch-1", "end-of-the-last-epoch"]
)
def test_a_stopped_run_resumes_to_the_same_numbers(trained, folder, tmp_path, stop_after):
    cfg = _cfg(folder)
    run_dir = runs.create_run(cfg, tmp_path / "runs")
    steps = []
    first = ssl.run(
        runs.load_config(run_dir), run_dir, on_step=lambda s: steps.append(s.global_step),
        should_stop=lambda: steps[-1] == stop_after,
    )  # fmt: skip
    assert "test_knn_acc" not in first and steps == list(range(1, stop_after + 1))
    progress = load_checkpoint(RunLayout(run_dir).last_checkpoint)["progress"]
    assert progress["global_step"] == stop_after
    assert progress["step_in_epoch"] == (stop_after - 1) % 2 + 1  # 2 steps an epoch
    resumed = ssl.run(runs.load_config(run_dir), run_dir, resume=True)
    straight = summary_of(trained.dir)
    for key in ("knn_acc_random_init", "test_knn_acc_random_init", "best_val_knn_acc",
                "test_knn_acc"):  # fmt: skip
        assert resumed[key] == pytest.approx(straight[key], abs=1e-9), key
    got, want = val_events(run_dir), val_events(trained.dir)
    assert [e[:4] for e in got] == [e[:4] for e in want]  # each once, in the same order
    for a, b in zip(got, want, strict=True):
        assert a[4] == pytest.approx(b[4], abs=1e-5), a[:4]
    got, want = events(run_dir, "train", "loss"), events(trained.dir, "train", "loss")
    assert [e["step"] for e in got] == [e["step"] for e in want] == [1, 2, 3, 4]
    assert [e["value"] for e in got] == pytest.approx([e["value"] for e in want], abs=1e-5)
    a = torch.load(RunLayout(run_dir).checkpoints / ssl.BACKBONE_FILE, weights_only=True)
    b = torch.load(RunLayout(trained.dir).checkpoints / ssl.BACKBONE_FILE, weights_only=True)
    for key in b:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(
        np.load(RunLayout(run_dir).embedding_file(2))["features"],
        np.load(RunLayout(trained.dir).embedding_file(2))["features"],
        atol=1e-5,
    )


def test_train_kind_ssl_from_the_command_line(folder, runs_dir, capsys):
    argv = ["train", "--kind", "ssl", "--dataset", "folder", "--data-path", str(folder),
            "--image-size", "16", "--classes", "a,c", "--epochs", "1", "--batch-size", "16",
            "--projection-dim", "16", "--knn-k", "3", "--base-momentum", "0.99",
            "--crop-scale-min", "0.5", "--no-flip", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    run_dir = runs.resolve_run(re.search(r"^run folder: (.+)$", out, re.MULTILINE).group(1))
    cfg = json.loads(RunLayout(run_dir).config.read_text())
    assert cfg["kind"] == "ssl" and cfg["data"]["classes"] == ["a", "c"]
    assert (cfg["projection_dim"], cfg["knn_k"], cfg["base_momentum"], cfg["crop_scale_min"],
            cfg["flip"]) == (16, 3, 0.99, 0.5, False)  # fmt: skip
    s = summary_of(run_dir)
    assert s["classes"] == ["a", "c"] and s["projection_dim"] == 16
    assert f"random-init backbone knn_acc {s['knn_acc_random_init']:.4f}" in out
    assert f"test knn_acc {s['test_knn_acc']:.4f}" in out
    assert (RunLayout(run_dir).checkpoints / ssl.BACKBONE_FILE).is_file()


def test_list_shows_a_byol_runs_knn_accuracies(trained, capsys):
    assert main(["--runs-dir", str(trained.dir.parent), "list"]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith(trained.dir.name)]
    s = summary_of(trained.dir)
    assert line.split()[1:3] == ["finished", "resnet18"]
    assert f"{s['best_val_knn_acc']:.4f} knn_acc" in line
    assert line.endswith(f"{s['test_knn_acc']:.4f} knn_acc")


def test_the_summary_line_of_a_byol_run(trained, capsys):
    s = summary_of(trained.dir)
    print_summary(s)
    line = capsys.readouterr().out.strip()
    assert line == (
        f"epochs 2, best val knn_acc {s['best_val_knn_acc']:.4f}, random-init backbone "
        f"knn_acc {s['knn_acc_random_init']:.4f} (test {s['test_knn_acc_random_init']:.4f}), "
        f"test knn_acc {s['test_knn_acc']:.4f}"
    )
