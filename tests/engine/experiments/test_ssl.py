"""BYOL runs (kind "ssl") on the common path: the kNN and collapse monitors per epoch, best.pt
by kNN accuracy, the backbone file that transfers, embedding snapshots, resume; the config,
data.classes, the Trainer's step hooks and the CLI."""

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
import torch.nn.functional as F
from PIL import Image

from engine.cli.common import config_from_flags, print_summary
from engine.cli.main import build_parser, main
from engine.config import (
    ConfigError,
    DataConfig,
    FewShotConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    SegmentConfig,
    SSLConfig,
)
from engine.data import BatchLoader, DataError, ImageSet, load_dataset
from engine.execution import executor
from engine.experiments import ssl
from engine.models import build_model
from engine.models.backbones import build_transfer_net, get_backbone
from engine.ssl import knn_predict, knn_probe
from engine.ssl.monitor import backbone_features
from engine.store import runs
from engine.store.layout import RunLayout
from engine.train import Trainer, build_optimizer, load_checkpoint, read_events
from tests.helpers import val_events

CLASSES = ["a", "b", "c"]  # of the folder's four: data.classes in a real run
SPEC = get_backbone("resnet18")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """4 classes x 14 noisy 16x16 images in random colours, told apart by their pattern only
    (horizontal, vertical or diagonal stripes, none): not trivial for a kNN on random
    features. Class d is left out by the runs."""
    root = tmp_path_factory.mktemp("ssl-data")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16]
    patterns = {"a": (yy // 2) % 2, "b": (xx // 2) % 2, "c": ((xx + yy) // 3) % 2,
                "d": np.zeros((16, 16))}  # fmt: skip
    for name, pattern in patterns.items():
        (root / name).mkdir()
        for i in range(14):
            fg, bg = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
            pixels = np.where(pattern[..., None] == 1, fg, bg) + rng.normal(0, 20, (16, 16, 3))
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / name / f"{i}.png")
    return root


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


# --- the Trainer's step hooks ---------------------------------------------------------------------


def _hooked_trainer(tmp_path, hook, should_stop=lambda: False) -> Trainer:
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=2)
    model.register_buffer("hook_calls", torch.zeros((), dtype=torch.long))  # in every checkpoint
    optimizer, _ = build_optimizer(model, OptimConfig(lr=1e-2, schedule="none"), 2)
    g = torch.Generator().manual_seed(0)
    data = ImageSet(torch.randint(0, 256, (24, 3, 16, 16), generator=g, dtype=torch.uint8),
                    torch.arange(24) % 2, torch.arange(24))  # fmt: skip
    return Trainer(
        model=model, optimizer=optimizer, scheduler=None,
        train_loader=BatchLoader(data, 8, [0.5] * 3, [0.25] * 3, shuffle=True, seed=1),
        val_loader=BatchLoader(data, 8, [0.5] * 3, [0.25] * 3), epochs=2,
        loss_fn=F.cross_entropy, checkpoint_dir=tmp_path, step_hooks=[hook],
        should_stop=should_stop,
    )  # fmt: skip


def test_step_hooks_run_after_each_optimizer_step(tmp_path):
    seen = []

    def hook(state) -> None:  # where the step left the progress and the weights
        weight = trainer.model.get_parameter(name)
        seen.append((state.global_step, state.step_in_epoch, weight.detach().clone()))

    trainer = _hooked_trainer(tmp_path, hook)
    name = next(n for n, _ in trainer.model.named_parameters())
    initial = trainer.model.get_parameter(name).detach().clone()
    trainer.fit()
    assert [(s, i) for s, i, _ in seen] == [(1, 1), (2, 2), (3, 3), (4, 1), (5, 2), (6, 3)]
    assert not torch.equal(seen[0][2], initial)  # the optimizer had stepped already
    assert not torch.equal(seen[1][2], seen[0][2])


def test_what_a_step_hook_changes_is_in_the_checkpoint_of_a_stop(tmp_path):
    steps = []

    def hook(state) -> None:
        steps.append(state.global_step)
        trainer.model.hook_calls += 1

    trainer = _hooked_trainer(tmp_path, hook, should_stop=lambda: len(steps) == 4)
    state = trainer.fit()
    assert state.stopped and steps == [1, 2, 3, 4]
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["model"]["hook_calls"].item() == 4 == last["progress"]["global_step"]


# --- the config -----------------------------------------------------------------------------------


def test_ssl_config_defaults_validate_and_round_trip():
    cfg = SSLConfig().validate()
    assert (cfg.kind, cfg.model.name, cfg.data.image_size, cfg.batch_size) == (
        "ssl", "resnet18", 32, 32,
    )  # fmt: skip
    assert (cfg.optim.name, cfg.optim.lr, cfg.projection_dim, cfg.hidden_dim) == (
        "adam", 5e-4, 256, 4096,
    )  # fmt: skip
    custom = SSLConfig(projection_dim=64, base_momentum=0.99, crop_scale_min=0.5, knn_k=7,
                       flip=False, data=DataConfig(classes=["0", "1", "2"])).validate()  # fmt: skip
    again = RunConfig.from_json(custom.to_json())
    assert isinstance(again, SSLConfig) and again == custom


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(batch_size=1), "batch_size must be >= 2 for BYOL (BatchNorm in the heads), got 1"),
        (dict(base_momentum=1.0), "base_momentum must be in [0, 1), got 1"),
        (dict(base_momentum=-0.1), "base_momentum must be in [0, 1), got -0.1"),
        (dict(crop_scale_min=0.0), "crop_scale_min must be in (0, 1], got 0"),
        (dict(crop_scale_min=-1.0), "crop_scale_min must be in (0, 1], got -1"),
        (dict(crop_scale_min=1.5), "crop_scale_min must be in (0, 1], got 1.5"),
        (dict(projection_dim=0), "projection_dim must be in [1, 65536], got 0"),
        (dict(hidden_dim=0), "hidden_dim must be in [1, 65536], got 0"),
        (dict(knn_k=0), "knn_k must be in [1, 100000], got 0"),
        (dict(knn_bank_size=0), "knn_bank_size must be in [1, 1e+07], got 0"),
        (dict(knn_temperature=0.0), "knn_temperature must be > 0, got 0"),
        (dict(model=ModelConfig(name="small_cnn")), "model.name must be one of"),
        (dict(model=ModelConfig(name="resnet9000")), "got 'resnet9000'"),
        (dict(data=DataConfig(name="landcover")), "images with one label each"),
    ],
)
def test_ssl_config_refuses_values_that_cannot_work(change, message):
    with pytest.raises(ConfigError) as raised:
        SSLConfig(**change).validate()
    assert message in str(raised.value)


@pytest.mark.parametrize(
    "data, crop_scale_min, flip",
    [(DataConfig(), 0.5, False), (DataConfig(name="folder", path="."), 0.08, True)],
    ids=["digits", "photos"],
)
def test_crops_and_flips_are_settled_when_the_run_is_made(tmp_path, data, crop_scale_min, flip):
    run_dir = runs.create_run(SSLConfig(data=data), tmp_path)
    cfg = runs.load_config(run_dir)
    assert (cfg.crop_scale_min, cfg.flip) == (crop_scale_min, flip)
    view_a, view_b = ssl.view_augmentations(cfg)
    for view in (view_a, view_b):
        assert view.crop_scale == (crop_scale_min, 1.0)
        assert view.flip_p == (0.5 if flip else 0.0)
    assert (view_a.blur_p, view_b.blur_p) == (1.0, 0.1)
    # given: kept as given
    given = runs.load_config(
        runs.create_run(SSLConfig(data=data, crop_scale_min=0.3, flip=not flip), tmp_path)
    )
    assert (given.crop_scale_min, given.flip) == (0.3, not flip)
    # a config not made into a run (the page's views): the same defaults, the config untouched
    fresh = SSLConfig(data=data)
    assert ssl.view_augmentations(fresh) == (view_a, view_b)
    assert (fresh.crop_scale_min, fresh.flip) == (None, None)


def test_edge_values_that_can_work_are_accepted():
    SSLConfig(batch_size=2, base_momentum=0.0, crop_scale_min=1.0, knn_k=1).validate()


@pytest.mark.parametrize("classes", [["0"], ["0", "0"]])
def test_data_classes_must_name_two_different_classes(classes):
    with pytest.raises(ConfigError, match="data.classes must name at least 2 different classes"):
        DataConfig(classes=classes).validate()


def test_a_fewshot_config_with_data_classes_is_refused():
    with pytest.raises(ConfigError, match="few-shot runs choose classes by meta_test_classes"):
        FewShotConfig(data=DataConfig(image_size=28, classes=["0", "1"])).validate()


def test_a_segmentation_config_with_data_classes_is_refused():
    with pytest.raises(ConfigError, match="data.classes selects image classes"):
        SegmentConfig(
            data=DataConfig(name="landcover", image_size=64, classes=["0", "1"])
        ).validate()


# --- data.classes ---------------------------------------------------------------------------------


def test_load_dataset_keeps_only_the_classes_relabelled_in_dataset_order(folder):
    full = load_dataset(DataConfig(name="folder", path=str(folder), image_size=16))
    part = load_dataset(DataConfig(name="folder", path=str(folder), image_size=16,
                                   classes=["d", "b"]))  # fmt: skip
    assert full.classes == ["a", "b", "c", "d"] and part.classes == ["b", "d"]
    assert part.num_classes == 2 and "classes b, d" in part.source
    for name in ("train", "val", "test"):
        whole, kept = getattr(full, name), getattr(part, name)
        mask = (whole.labels == 1) | (whole.labels == 3)
        # the split is the full dataset's: the same images, with the same ids
        assert torch.equal(kept.ids, whole.ids[mask]), name
        assert torch.equal(kept.images, whole.images[mask]), name
        assert torch.equal(kept.labels, (whole.labels[mask] == 3).to(kept.labels.dtype)), name
        assert kept.labels.dtype == whole.labels.dtype


def test_keep_classes_names_an_unknown_class(folder):
    with pytest.raises(DataError) as raised:
        load_dataset(DataConfig(name="folder", path=str(folder), image_size=16,
                                classes=["a", "zebra", "okapi"]))  # fmt: skip
    message = str(raised.value)
    assert "'zebra', 'okapi'" in message and "its classes: a, b, c, d" in message
    assert "data.classes" in message


def test_keep_classes_needs_two_classes(folder):
    splits = load_dataset(DataConfig(name="folder", path=str(folder), image_size=16))
    with pytest.raises(DataError, match="at least 2 classes"):
        splits.keep_classes(["a", "a"])


def test_digits_classes_are_their_names():
    full = load_dataset(DataConfig(image_size=8))
    part = load_dataset(DataConfig(image_size=8, classes=["7", "3"]))
    assert part.classes == ["3", "7"]
    mask = (full.test.labels == 3) | (full.test.labels == 7)
    assert torch.equal(part.test.ids, full.test.ids[mask])
    assert torch.equal(part.test.labels, (full.test.labels[mask] == 7).to(part.test.labels.dtype))


# --- the command line -----------------------------------------------------------------------------


def flags(*argv: str):
    return build_parser().parse_args(["train", *argv])


def test_ssl_flags_reach_the_config():
    cfg = config_from_flags(flags(
        "--kind", "ssl", "--projection-dim", "64", "--base-momentum", "0.99",
        "--crop-scale-min", "0.3", "--knn-k", "7", "--classes", "0, 1,2", "--epochs", "3",
        "--flip",
    ))  # fmt: skip
    assert isinstance(cfg, SSLConfig)
    assert (cfg.projection_dim, cfg.base_momentum, cfg.crop_scale_min, cfg.knn_k, cfg.flip) == (
        64, 0.99, 0.3, 7, True,
    )  # fmt: skip
    assert cfg.data.classes == ["0", "1", "2"] and cfg.epochs == 3
    # left out: the kind's defaults
    d = SSLConfig()
    cfg = config_from_flags(flags("--kind", "ssl"))
    assert (cfg.projection_dim, cfg.knn_k, cfg.model.name, cfg.data.image_size) == (
        d.projection_dim, d.knn_k, "resnet18", 32,
    )  # fmt: skip
    assert cfg.optim == d.optim and cfg.batch_size == d.batch_size
    assert (cfg.crop_scale_min, cfg.flip) == (None, None)  # settled when the run is made
    assert config_from_flags(flags("--kind", "ssl", "--no-flip")).flip is False


def test_classes_reach_any_kinds_config():
    cfg = config_from_flags(flags("--classes", "3,5"))
    assert cfg.kind == "classify" and cfg.data.classes == ["3", "5"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--knn-k", "5"],
        ["--projection-dim", "8"],
        ["--kind", "transfer", "--crop-scale-min", "0.5"],
        ["--no-flip"],
    ],
)
def test_ssl_flags_without_kind_ssl_are_refused(runs_dir, capsys, argv):
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert "--knn-k" in err and "need --kind ssl" in err and "Traceback" not in err
    assert not runs_dir.exists()


def test_fewshot_with_classes_is_refused_before_a_run_exists(runs_dir, capsys):
    assert main(["train", "--kind", "fewshot", "--classes", "0,1"]) == 2
    assert "few-shot runs choose classes by meta_test_classes" in capsys.readouterr().err
    assert not runs_dir.exists()


@pytest.mark.parametrize(
    "argv, named, listed",
    [
        (["--classes", "0,x"], "'x'", "0, 1, 2, 3, 4, 5, 6, 7, 8, 9"),
        (["--dataset", "folder", "--data-path", "FOLDER", "--classes", "a,z"], "'z'", "a, b, c, d"),
        (["--kind", "ssl", "--dataset", "cifar10", "--data-path", "CIFAR", "--classes", "cat,cow"],
         "'cow'", "airplane, automobile"),
    ],
)  # fmt: skip
def test_unknown_classes_are_refused_before_a_run_exists(
    folder, runs_dir, tmp_path, capsys, argv, named, listed
):
    cifar = tmp_path / "cifar"
    cifar.mkdir()
    for f in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (cifar / f).write_bytes(b"")  # present is all the cheap check asks
    argv = [str(folder) if a == "FOLDER" else str(cifar) if a == "CIFAR" else a for a in argv]
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert f"data.classes: {named} not among the classes" in err and listed in err
    assert not runs_dir.exists()


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
