"""The transfer config: its defaults, its errors and its JSON round trip. Trained runs:
tests/integration/experiments/test_transfer_run.py."""

import json

import pytest

from engine.config import ConfigError, ModelConfig, RunConfig, TransferConfig

# --- the config ------------------------------------------------------------------------------------


def test_transfer_config_defaults_validate():
    cfg = TransferConfig().validate()
    assert (cfg.kind, cfg.model.name, cfg.mode, cfg.weights) == (
        "transfer",
        "efficientnet_lite0",
        "finetune",
        "imagenet",
    )
    assert cfg.backbone_weights == "imagenet"
    cfg.mode = "frozen"
    assert cfg.backbone_weights == "imagenet"
    cfg.mode = "scratch"
    assert cfg.backbone_weights == "none"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"model": ModelConfig(name="small_cnn")}, "model.name must be one of efficientnet_lite0"),
        ({"mode": "partial"}, "mode must be one of scratch, finetune, frozen, got 'partial'"),
        ({"weights": ""}, "weights must be 'imagenet' or a weight file's path"),
        ({"backbone_lr_scale": 0.0}, r"backbone_lr_scale must be in \(0, 1\], got 0"),
        ({"backbone_lr_scale": 1.5}, r"backbone_lr_scale must be in \(0, 1\], got 1.5"),
        ({"kind": "classify"}, "kind must be 'transfer', got 'classify'"),
    ],
)
def test_transfer_config_errors_say_what_is_wrong(changes, message):
    cfg = TransferConfig()
    for key, value in changes.items():
        setattr(cfg, key, value)
    with pytest.raises(ConfigError, match=message):
        cfg.validate()


def test_transfer_config_round_trips_through_json_by_its_kind(tmp_path):
    cfg = TransferConfig(
        model=ModelConfig(name="resnet18"),
        mode="frozen",
        weights="/w/best.pt",
        backbone_lr_scale=0.5,
        precompute_features=False,
        label="D: supervised, frozen",
    ).validate()
    again = RunConfig.from_json(cfg.to_json())
    assert type(again) is TransferConfig and again == cfg
    path = tmp_path / "config.json"
    path.write_text(cfg.to_json())
    assert RunConfig.load(path) == cfg
    # A file without "kind" is a classification run; the transfer fields do not belong in it.
    classify = json.loads(RunConfig().to_json())
    del classify["kind"]
    assert type(RunConfig.from_json(json.dumps(classify))) is RunConfig
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['mode'\]"):
        RunConfig.from_json(json.dumps({**classify, "mode": "frozen"}))
    with pytest.raises(
        ConfigError,
        match="kind must be one of classify, transfer, dynamic_filter, segment, fewshot, ssl, got "
        "'gan'",
    ):
        RunConfig.from_json(json.dumps({**classify, "kind": "gan"}))
