"""Transfer learning as torchvision's tutorial (the NTHU homework's code) does it: training
batches RandomResizedCrop + flip, evaluation CenterCrop, to 224 of 256; in frozen mode the
backbone's BatchNorm statistics frozen (ours) or updated by the training batches (the
tutorial's); and a frozen epoch timed with the backbone pass as well as on features computed
once."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch

from engine.cli.common import config_from_flags
from engine.cli.main import build_parser
from engine.config import ConfigError, DataConfig, ModelConfig, TransferConfig
from engine.data import ImageSet
from engine.data.loader import BatchLoader, _generator, center_crop, random_resized_crop
from engine.execution import executor
from engine.models.backbones import build_transfer_net
from engine.store import runs


def test_random_resized_crop_gives_the_crop_size_and_repeats_with_its_key():
    x = torch.rand(6, 3, 64, 64)
    a = random_resized_crop(x, _generator(0, 1, 2), 56)
    b = random_resized_crop(x, _generator(0, 1, 2), 56)
    c = random_resized_crop(x, _generator(0, 1, 3), 56)
    assert a.shape == (6, 3, 56, 56)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_a_whole_image_crop_without_flip_is_the_image_resized():
    x = torch.rand(2, 3, 32, 32)
    whole = random_resized_crop(x, _generator(0), 32, scale=(1.0, 1.0), ratio=(1.0, 1.0),
                                flip_p=0.0)  # fmt: skip
    assert torch.allclose(whole, x, atol=1e-5)
    flipped = random_resized_crop(x, _generator(0), 32, scale=(1.0, 1.0), ratio=(1.0, 1.0),
                                  flip_p=1.0)  # fmt: skip
    assert torch.allclose(flipped, x.flip(3), atol=1e-5)


def test_center_crop_takes_the_middle():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert center_crop(x, 2).flatten().tolist() == [5.0, 6.0, 9.0, 10.0]


def _images(n=8, size=64) -> ImageSet:
    g = torch.Generator().manual_seed(0)
    return ImageSet(torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g),
                    torch.arange(n) % 2, torch.arange(n))  # fmt: skip


def test_the_loader_crops_training_batches_at_random_and_the_others_in_the_middle():
    data = _images()
    train = BatchLoader(data, 4, [0.0] * 3, [1.0] * 3, shuffle=True, augment=True, crop=56)
    plain = BatchLoader(data, 4, [0.0] * 3, [1.0] * 3, crop=56)
    x0, x1 = next(train.batches(0))[0], next(train.batches(1))[0]
    assert x0.shape == (4, 3, 56, 56)
    assert not torch.equal(x0, x1)  # another epoch, other crops
    x, _, idx = next(plain.batches())
    expected = plain.normalise(data.images[idx])[..., 4:60, 4:60]
    assert torch.equal(x, expected)


def test_the_config_says_what_the_tutorial_means():
    cfg = TransferConfig(data=DataConfig(image_size=256), preprocess="tutorial", mode="frozen")
    cfg.validate()
    assert cfg.crop == 224
    assert not cfg.features_once  # random crops: the backbone runs every epoch
    frozen = TransferConfig(mode="frozen").validate()
    assert frozen.crop == 0 and frozen.features_once
    assert not TransferConfig(mode="frozen", batchnorm="updated").validate().features_once
    assert not TransferConfig(mode="frozen", precompute_features=False).validate().features_once


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"batchnorm": "moving"}, "batchnorm must be one of"),
        ({"preprocess": "tutorial", "data": DataConfig(augment=True)}, "leave data.augment off"),
        ({"preprocess": "imagenet"}, "preprocess must be one of"),
    ],
)
def test_contradictions_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        TransferConfig(**overrides).validate()


def _bn_state(net) -> torch.Tensor:
    bn = next(m for m in net.body.modules() if isinstance(m, torch.nn.BatchNorm2d))
    return bn.running_mean.clone()


@pytest.mark.parametrize("update", [False, True])
def test_a_frozen_backbone_updates_its_batchnorm_statistics_only_when_asked(update):
    net, _ = build_transfer_net("resnet18", 2, 32, "none")
    net.freeze_backbone(update_batchnorm=update)
    net.train()
    before = _bn_state(net)
    net(torch.randn(4, 3, 32, 32) * 3 + 1).sum().backward()
    assert not any(p.requires_grad for p in net.body.parameters())
    assert all(p.grad is None for p in net.body.parameters())
    assert net.head.weight.grad is not None
    assert torch.equal(_bn_state(net), before) is not update


def test_the_command_line_sets_them():
    a = build_parser().parse_args(["train", "--kind", "transfer", "--mode", "frozen",
                                   "--preprocess", "tutorial", "--batchnorm", "updated",
                                   "--no-precompute", "--image-size", "64"])  # fmt: skip
    cfg = config_from_flags(a)
    assert (cfg.preprocess, cfg.batchnorm, cfg.precompute_features) == ("tutorial", "updated",
                                                                         False)  # fmt: skip


def _run(cfg, runs_dir) -> dict:
    run_dir = runs.create_run(cfg, runs_dir)
    with contextlib.redirect_stdout(io.StringIO()):
        executor.execute(run_dir)
    status = runs.read_status(run_dir)
    assert status["state"] == "finished", status.get("error")
    return status


def test_a_frozen_tutorial_run_trains_through_the_backbone(pets, runs_dir, resnet18_cached):
    cfg = TransferConfig(
        model=ModelConfig(name="resnet18"), mode="frozen", preprocess="tutorial",
        batchnorm="updated", data=DataConfig(name="folder", path=str(pets), image_size=32),
        epochs=2, batch_size=8, device="cpu", snapshot_size=10, seed=3,
    ).validate()  # fmt: skip
    status = _run(cfg, runs_dir)
    info = status["model_info"]
    assert info["input_size"] == 28 and info["preprocess"] == "tutorial"
    assert info["batchnorm"] == "updated"
    assert "feature_seconds" not in info  # no features computed once: the backbone ran
    assert status["summary"]["test_acc"] >= 0


def test_features_once_are_reported_beside_the_head_epochs(pets, runs_dir, resnet18_cached):
    cfg = TransferConfig(
        model=ModelConfig(name="resnet18"), mode="frozen",
        data=DataConfig(name="folder", path=str(pets), image_size=32),
        epochs=2, batch_size=8, device="cpu", snapshot_size=10, seed=3,
    ).validate()  # fmt: skip
    info = _run(cfg, runs_dir)["model_info"]
    assert info["feature_seconds"] > 0 and info["batchnorm"] == "frozen"


def test_a_transfer_comparison_passes_the_choices_to_the_rows_they_concern():
    from engine.experiments.presets import HEAD_EPOCH_CAP, preset_configs

    base = TransferConfig(batchnorm="updated", epochs=4).validate()
    rows = {label: cfg for label, cfg, _ in preset_configs("finetune-vs-frozen", base)}
    modes = {label: (cfg.mode, cfg.batchnorm, cfg.epochs) for label, cfg in rows.items()}
    frozen = [m for m in modes.values() if m[0] == "frozen"]
    others = [m for m in modes.values() if m[0] != "frozen"]
    # frozen rows update their statistics, so they run the backbone for the base's epochs
    assert frozen and all(bn == "updated" and epochs == 4 for _, bn, epochs in frozen)
    assert others and all(bn == "frozen" for _, bn, _ in others)
    plain = preset_configs("finetune-vs-frozen", TransferConfig(epochs=4).validate())
    assert max(cfg.epochs for _, cfg, _ in plain if cfg.mode == "frozen") == HEAD_EPOCH_CAP
