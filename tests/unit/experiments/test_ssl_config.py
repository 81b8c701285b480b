"""BYOL runs (kind "ssl") before training: the config, data.classes, the Trainer's step hooks
and the CLI's flags. Trained runs: tests/integration/experiments/test_ssl_run.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.cli.common import config_from_flags
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
from engine.experiments import ssl
from engine.models import build_model
from engine.store import runs
from engine.train import Trainer, build_optimizer, load_checkpoint

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
