"""Land-cover segmentation runs, trained here: mIoU, masks of chosen validation images at every
snapshot epoch, resume, runs from the command line and the FCN-32s vs improved comparison.
The config and the CLI's flags: tests/unit/experiments/test_segment_config.py."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from engine.cli.main import main
from engine.config import (
    DataConfig,
    ModelConfig,
    SegmentConfig,
)
from engine.data import DataError, ImageSet, SegmentationLoader, landcover, load_dataset
from engine.data.landcover import CLASS_COLOURS, CLASS_NAMES, SCORED_CLASSES, labels_to_rgb
from engine.execution import comparisons, executor
from engine.experiments import segment
from engine.models.segmentation import UNetSmall
from engine.store import groups, runs
from engine.store.layout import RunLayout
from engine.train import load_checkpoint, read_events
from tests.support.experiments import segment_config, write_pairs

COUNTS = {"train": 24, "validation": 8, "test": 8}  # the synthetic default, made small
VAL_STEMS = [f"{i:04d}" for i in range(24, 32)]  # stems run on across the splits
VAL_PIXELS = 8 * 64 * 64
SCORED_COLOURS = {tuple(c) for c in CLASS_COLOURS[:6]}  # a model predicts no Unknown


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """The synthetic scenes, 24 / 8 / 8 of them, generated once for the module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_DATA_DIR", str(tmp_path_factory.mktemp("data")))
        mp.setattr(landcover, "SYNTHETIC_COUNTS", dict(COUNTS))
        yield


@pytest.fixture(scope="module")
def trained(synthetic, tmp_path_factory):
    run_dir = runs.create_run(segment_config(), tmp_path_factory.mktemp("runs"))
    executor.execute(run_dir)
    assert runs.read_status(run_dir)["state"] == "finished", RunLayout(run_dir).log
    return run_dir


@pytest.fixture(scope="module")
def val_set(synthetic):
    splits = load_dataset(DataConfig(name="landcover", image_size=64))
    stems = [splits.names[int(i)] for i in splits.val.ids]
    assert stems == VAL_STEMS
    return {s: (splits.val.images[k], splits.val.labels[k]) for k, s in enumerate(stems)}


def read_png(path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def colours(rgb: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in c) for c in np.unique(rgb.reshape(-1, 3), axis=0)}


def events(run_dir, split: str) -> list[dict]:
    return [e for e in read_events(RunLayout(run_dir).metrics)[0] if e["split"] == split]


def mask_stems(layout: RunLayout, epoch: int) -> list[str]:
    return sorted(p.stem for p in layout.mask_dir(epoch).iterdir())


# --- a finished run --------------------------------------------------------------------------


def test_a_finished_run_reports_mean_iou_and_iou_per_class(trained):
    status = runs.read_status(trained)
    summary = status["summary"]
    assert summary["epochs_done"] == 2
    assert {"best_val_miou", "test_miou", "test_acc", "test_loss", "test_per_class"} <= set(summary)
    assert "best_val_acc" not in summary  # chosen by mIoU, not accuracy
    assert 0 <= summary["test_miou"] <= 1 and 0 <= summary["best_val_miou"] <= 1
    assert set(summary["test_per_class"]) <= {f"iou/{c}" for c in SCORED_CLASSES}
    assert summary["classes"] == list(CLASS_NAMES)  # the page draws Unknown too
    assert summary["model"] == "unet_small"
    assert summary["data"].startswith(
        "synthetic land-cover scenes: 24 train / 8 val / 8 test images of 64x64, 6 classes"
    )
    test = {e["name"]: e["value"] for e in events(trained, "test")}
    assert test["miou"] == pytest.approx(summary["test_miou"])
    assert test["acc"] == pytest.approx(summary["test_acc"])
    config = runs.load_config(trained)
    assert config.backbone_weights == "none (this model has no pretrained backbone)"


def test_masks_of_three_validation_images_are_saved_at_every_snapshot_epoch(trained):
    layout = RunLayout(trained)
    assert layout.mask_epochs() == [1, 2]
    stems = mask_stems(layout, 1)
    assert len(stems) == 3 and set(stems) <= set(VAL_STEMS)
    assert mask_stems(layout, 2) == stems  # the same images every epoch
    for epoch in (1, 2):
        for stem in stems:
            rgb = read_png(layout.mask_dir(epoch) / f"{stem}.png")
            assert rgb.shape == (64, 64, 3)
            assert colours(rgb) <= SCORED_COLOURS
    inputs = sorted(p.name for p in layout.mask_inputs.iterdir())
    assert inputs == sorted([f"{s}_sat.png" for s in stems] + [f"{s}_mask.png" for s in stems])


def test_mask_inputs_are_the_validation_images_and_their_ground_truth(trained, val_set):
    layout = RunLayout(trained)
    for stem in mask_stems(layout, 1):
        image, labels = val_set[stem]
        sat = read_png(layout.mask_inputs / f"{stem}_sat.png")
        np.testing.assert_array_equal(sat, image.permute(1, 2, 0).numpy())
        truth = read_png(layout.mask_inputs / f"{stem}_mask.png")
        np.testing.assert_array_equal(truth, labels_to_rgb(labels.numpy()))


def _predict(run_dir, checkpoint: str, images: torch.Tensor) -> np.ndarray:
    ckpt = load_checkpoint(RunLayout(run_dir).checkpoints / checkpoint)
    model = UNetSmall(6)
    model.load_state_dict(ckpt["model"])
    model.eval()
    mean = torch.tensor(ckpt["extra"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(ckpt["extra"]["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        return model((images.float() / 255 - mean) / std).argmax(1).numpy()


def test_the_last_masks_and_confusion_are_the_final_model_s_predictions(trained, val_set):
    layout = RunLayout(trained)
    images = torch.stack([image for image, _ in val_set.values()])
    labels = np.stack([lab.numpy() for _, lab in val_set.values()])
    preds = _predict(trained, "last.pt", images)  # last.pt: the end of epoch 2
    for stem in mask_stems(layout, 2):
        k = VAL_STEMS.index(stem)
        png = read_png(layout.mask_dir(2) / f"{stem}.png")
        np.testing.assert_array_equal(png, labels_to_rgb(preds[k]))
    cm = np.zeros((7, 6), dtype=np.int64)
    np.add.at(cm, (labels.ravel(), preds.ravel()), 1)
    np.testing.assert_array_equal(np.load(layout.confusion_file(2)), cm)


def test_a_confusion_matrix_of_every_validation_pixel_at_every_snapshot_epoch(trained, val_set):
    layout = RunLayout(trained)
    assert layout.confusion_epochs() == [1, 2]
    truth = np.bincount(np.concatenate([lab.numpy().ravel() for _, lab in val_set.values()]),
                        minlength=7)  # fmt: skip
    for epoch in (1, 2):
        cm = np.load(layout.confusion_file(epoch))
        assert cm.shape == (7, 6)  # true classes incl. Unknown x predicted scored classes
        assert cm.sum() == VAL_PIXELS
        np.testing.assert_array_equal(cm.sum(1), truth)
    assert not layout.embeddings.exists()  # no classifier embeddings for a segmentation run


def test_metrics_log_miou_and_iou_per_class_each_epoch_and_best_pt_by_miou(trained, val_set):
    present = np.unique(np.concatenate([lab.numpy().ravel() for _, lab in val_set.values()]))
    present_names = {f"iou/{CLASS_NAMES[c]}" for c in present if c < 6}
    val = events(trained, "val")
    miou = {}
    for epoch in (1, 2):
        values = {e["name"]: e["value"] for e in val if e["epoch"] == epoch}
        assert {"miou", "acc", "loss"} <= set(values)
        ious = {k: v for k, v in values.items() if k.startswith("iou/")}
        assert present_names <= set(ious)  # a class in the truth always has an IoU
        assert values["miou"] == pytest.approx(np.mean(list(ious.values())))
        cm = np.load(RunLayout(trained).confusion_file(epoch))
        assert values["acc"] == pytest.approx(np.trace(cm[:6]) / cm[:6].sum())
        miou[epoch] = values["miou"]
    assert [e["epoch"] for e in val if e["name"] == "miou"] == [1, 2]  # once per epoch
    best = load_checkpoint(RunLayout(trained).best_checkpoint)["progress"]
    assert best["best_score"] == pytest.approx(max(miou.values()))
    assert best["epoch"] == max(miou, key=miou.get)
    summary = runs.read_status(trained)["summary"]
    assert summary["best_val_miou"] == pytest.approx(max(miou.values()))


def test_the_cli_lists_a_segmentation_run_by_miou(trained, capsys):
    assert main(["--runs-dir", str(trained.parent), "list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if trained.name in x)
    assert "finished" in line and "miou" in line


def test_mask_snapshots_write_each_image_s_own_prediction(tmp_path):
    stems = ["0030", "0024", "0027"]
    scenes = [landcover.synthetic_scene(int(s), 64) for s in stems]
    images = torch.stack([torch.from_numpy(im).permute(2, 0, 1) for im, _ in scenes])
    labels = torch.stack([torch.from_numpy(lab) for _, lab in scenes])
    mean, std = [0.5] * 3, [0.25] * 3
    loader = SegmentationLoader(ImageSet(images, labels, torch.arange(3)), 2, mean, std)
    layout = RunLayout(tmp_path)
    hook = segment.MaskSnapshots(layout, loader, stems, epochs=[2])
    for k, stem in enumerate(stems):  # the inputs are written at once
        truth = read_png(layout.mask_inputs / f"{stem}_mask.png")
        np.testing.assert_array_equal(truth, labels_to_rgb(scenes[k][1]))
    torch.manual_seed(0)
    model = nn.Conv2d(3, 6, 1)  # a class per colour: each scene gets its own mask
    model.train()
    trainer = SimpleNamespace(model=model)
    hook(trainer, 1, SimpleNamespace(confusion=None))  # not a snapshot epoch
    assert layout.mask_epochs() == []
    cm = np.arange(42).reshape(7, 6)
    hook(trainer, 2, SimpleNamespace(confusion=cm))
    assert model.training  # evaluated in eval mode, then given back as it was
    with torch.no_grad():
        want = model(loader.normalise(images)).argmax(1).numpy()
    pngs = [read_png(layout.mask_dir(2) / f"{stem}.png") for stem in stems]
    for png, pred in zip(pngs, want, strict=True):
        np.testing.assert_array_equal(png, labels_to_rgb(pred))
    assert not np.array_equal(pngs[0], pngs[1]) and not np.array_equal(pngs[1], pngs[2])
    np.testing.assert_array_equal(np.load(layout.confusion_file(2)), cm)


# --- choosing the images ---------------------------------------------------------------------


def test_mask_images_chosen_by_stem(synthetic, runs_dir, val_set):
    run_dir = runs.create_run(segment_config(epochs=1, mask_images=["0031", "0025"]), runs_dir)
    executor.execute(run_dir)
    layout = RunLayout(run_dir)
    assert mask_stems(layout, 1) == ["0025", "0031"]
    for stem in ("0025", "0031"):
        image, labels = val_set[stem]
        truth = read_png(layout.mask_inputs / f"{stem}_mask.png")
        np.testing.assert_array_equal(truth, labels_to_rgb(labels.numpy()))
        sat = read_png(layout.mask_inputs / f"{stem}_sat.png")
        np.testing.assert_array_equal(sat, image.permute(1, 2, 0).numpy())
    preds = _predict(run_dir, "last.pt", torch.stack([val_set["0031"][0]]))
    np.testing.assert_array_equal(
        read_png(layout.mask_dir(1) / "0031.png"), labels_to_rgb(preds[0])
    )


def test_an_unknown_mask_image_fails_with_examples_of_real_stems(synthetic, runs_dir):
    run_dir = runs.create_run(segment_config(epochs=1, mask_images=["0025", "9999"]), runs_dir)
    with pytest.raises(DataError) as e:
        executor.execute(run_dir)
    message = str(e.value)
    assert "mask_images: 9999 not in the validation split" in message
    assert "8 images, e.g. 0024, 0025" in message
    status = runs.read_status(run_dir)
    assert status["state"] == "failed" and "9999" in status["error"]


# --- resume ----------------------------------------------------------------------------------


def test_a_stopped_run_resumes_to_the_same_numbers_and_masks(synthetic, runs_dir):
    cfg = segment_config(epochs=3)
    stopped, straight = (
        runs.create_run(cfg, runs_dir),
        runs.create_run(segment_config(epochs=3), runs_dir),
    )
    calls = []

    def stop_at_step_3() -> bool:  # 2 batches per epoch: the middle of epoch 2
        calls.append(1)
        return len(calls) == 3

    first = segment.run(runs.load_config(stopped), stopped, should_stop=stop_at_step_3)
    layout = RunLayout(stopped)
    assert first["epochs_done"] == 1 and "test_miou" not in first
    assert layout.mask_epochs() == [1]
    # What a process killed later would leave behind: resumed, those epochs are redone.
    layout.mask_dir(3).mkdir(parents=True)
    (layout.mask_dir(3) / "stale.png").write_bytes(b"from a run that was killed")
    np.save(layout.confusion_file(3), np.zeros((7, 6)))

    resumed = segment.run(runs.load_config(stopped), stopped, resume=True)
    assert resumed["epochs_done"] == 3
    assert layout.mask_epochs() == [1, 2, 3]
    assert "stale.png" not in {p.name for p in layout.mask_dir(3).iterdir()}
    assert np.load(layout.confusion_file(3)).sum() == VAL_PIXELS

    executor.execute(straight)
    assert resumed["best_val_miou"] == pytest.approx(
        runs.read_status(straight)["summary"]["best_val_miou"]
    )
    assert resumed["test_miou"] == pytest.approx(runs.read_status(straight)["summary"]["test_miou"])

    def logged(run_dir) -> list[tuple]:
        return [
            (e["name"], e["split"], e["epoch"], e["step"])
            for e in read_events(RunLayout(run_dir).metrics)[0]
            if e["name"] != "epoch_seconds"  # wall time: the one value that may differ
        ]

    assert len(logged(stopped)) == len(set(logged(stopped)))  # no event twice
    assert sorted(logged(stopped)) == sorted(logged(straight))
    for epoch in (1, 2, 3):
        for stem in mask_stems(RunLayout(straight), epoch):
            np.testing.assert_array_equal(
                read_png(layout.mask_dir(epoch) / f"{stem}.png"),
                read_png(RunLayout(straight).mask_dir(epoch) / f"{stem}.png"),
            )


def test_fcn32s_without_cached_vgg_weights_still_trains(synthetic, runs_dir, weight_cache):
    cfg = segment_config(model=ModelConfig(name="fcn32s"), fc_channels=8, epochs=1)
    run_dir = runs.create_run(cfg, runs_dir)
    assert json.loads(RunLayout(run_dir).config.read_text())["backbone_weights"].startswith(
        "none (ImageNet weights for vgg16 were not cached at "
    )
    summary = executor.execute(run_dir)
    assert runs.read_status(run_dir)["state"] == "finished"
    assert summary["weights_report"] == "random initialisation"
    assert summary["model"] == "fcn32s" and 0 <= summary["test_miou"] <= 1
    assert RunLayout(run_dir).mask_epochs() == [1]


# --- the CLI ---------------------------------------------------------------------------------


def test_a_deepglobe_folder_trains_through_the_cli(deepglobe, runs_dir, capsys):
    argv = ["--runs-dir", str(runs_dir), "train", "--kind", "segment", "--model", "unet_small",
            "--dataset", "deepglobe", "--data-path", str(deepglobe), "--image-size", "64",
            "--epochs", "1"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "best val miou" in out and "test miou" in out
    (run_dir,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    status = runs.read_status(run_dir)
    assert status["state"] == "finished"
    assert "(no test/ folder: the test split is validation/)" in status["summary"]["data"]
    assert mask_stems(RunLayout(run_dir), 1) == ["0008", "0009", "0010"]  # all three
    config = runs.load_config(run_dir)
    assert isinstance(config, SegmentConfig) and config.data.path == str(deepglobe.resolve())


def test_a_tile_that_is_all_no_data_does_not_stop_the_run(tmp_path, runs_dir):
    write_pairs(tmp_path / "train", range(3))
    write_pairs(tmp_path / "validation", [3, 4])
    for split, stem in (("train", "0001"), ("validation", "0004")):  # black: all Unknown
        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / split / f"{stem}_mask.png")
    cfg = segment_config(data=DataConfig(name="deepglobe", path=str(tmp_path), image_size=64),
               batch_size=1, epochs=1)  # fmt: skip
    run_dir = runs.create_run(cfg, runs_dir)
    summary = executor.execute(run_dir)
    assert runs.read_status(run_dir)["state"] == "finished"
    assert np.isfinite(summary["test_loss"])
    losses = [e for e in read_events(RunLayout(run_dir).metrics)[0] if e["name"] == "loss"]
    assert len(losses) >= 4 and all(e["value"] is not None for e in losses)  # none NaN


# --- FCN-32s vs improved ---------------------------------------------------------------------


def test_fcn32s_vs_improved_makes_two_comparable_runs(deepglobe, runs_dir):
    base = SegmentConfig(
        data=DataConfig(name="deepglobe", path=str(deepglobe), image_size=64),
        epochs=1, batch_size=8, fc_channels=8, device="cpu",
    )  # fmt: skip
    group = comparisons.create_group("fcn32s-vs-improved", base, runs_dir)
    assert [r.label for r in group.rows] == ["A: FCN-32s (VGG-16)", "B: fcn8s_lite0"]
    a_dir, b_dir = group.run_dirs(runs_dir)
    a, b = runs.load_config(a_dir), runs.load_config(b_dir)
    assert (a.kind, a.model.name, b.kind, b.model.name) == (
        "segment", "fcn32s", "segment", "fcn8s_lite0",
    )  # fmt: skip
    assert a.data == b.data and (a.seed, a.epochs, a.optim) == (b.seed, b.epochs, b.optim)
    assert a.group == b.group == group.group_id
    assert a.backbone_weights.startswith("none (ImageNet weights for vgg16 were not cached")
    assert b.backbone_weights == "imagenet"

    executor.execute(b_dir)  # the improved row only: FCN-32s is the slow one
    table = groups.comparison_table(group, runs_dir)
    assert [r["label"] for r in table] == ["A: FCN-32s (VGG-16)", "B: fcn8s_lite0"]
    assert table[0]["state"] == "queued" and table[0]["best_val_miou"] is None
    summary = runs.read_status(b_dir)["summary"]
    assert table[1]["state"] == "finished"
    assert table[1]["best_val_miou"] == pytest.approx(summary["best_val_miou"])
    assert table[1]["test_miou"] == pytest.approx(summary["test_miou"])
    assert summary["weights_report"].startswith("ImageNet EfficientNet-Lite0")
