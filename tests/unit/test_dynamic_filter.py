"""Dynamic convolutional filters (seed 002): the model's sizes, the vectorised per-class
filters against the seed's loop, the static baseline and freezing. Best-checkpoint resume, a
trained run: tests/integration/test_model_runs.py."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torchvision
from torch import nn

from engine.config import ConfigError, DynamicFilterConfig, TransferConfig
from engine.experiments import presets
from engine.models.backbones import get_backbone
from engine.models.dynamic_filter import SCALE, DynamicFilterNet, load_resnet18_layer1
from engine.store import runs
from engine.store.layout import RunLayout


def _linear_params(seq: nn.Sequential) -> list[int]:
    return [sum(p.numel() for p in m.parameters()) for m in seq if isinstance(m, nn.Linear)]


def test_sizes_match_the_seed():
    torch.manual_seed(0)
    model = DynamicFilterNet(10)
    x = torch.randn(3, 3, 32, 32)
    assert model.class_embeddings.weight.shape == (10, 128)
    assert _linear_params(model.generator) == [128 * 256 + 256, 256 * 64 + 64]
    assert isinstance(model.generator[-1], nn.Tanh)
    assert _linear_params(model.score_predictor) == [64 * 64 + 64, 64 + 1]
    assert model.backbone(x).shape == (3, 64, 8, 8)
    assert model.response_maps(x).shape == (3, 10, 8, 8)
    assert model(x).shape == (3, 10)
    assert model.forward_features(x).shape == (3, 10 * 64)


@pytest.mark.parametrize("scale, factor", [("divide", 1 / 8), ("multiply", 8.0)])
def test_filters_have_unit_norm_and_responses_are_rescaled_by_sqrt_64(scale, factor):
    torch.manual_seed(1)
    model = DynamicFilterNet(10, response_scale=scale).eval()
    norms = model.filters().norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(10))
    x = torch.randn(2, 3, 32, 32)
    feats = model.backbone(x)
    conv = nn.functional.conv2d(feats, model.filters()[3].view(1, 64, 1, 1))  # one class, by hand
    torch.testing.assert_close(model.response_maps(x)[:, 3:4], conv * factor)
    assert SCALE == math.sqrt(64) == 8.0


def test_the_lab_s_divide_is_the_default_and_older_configs_keep_multiply():
    from engine.config.kinds import DynamicFilterConfig

    assert DynamicFilterConfig().response_scale == "divide"
    stored = DynamicFilterConfig().to_dict()
    assert DynamicFilterConfig.from_dict(stored).response_scale == "divide"  # written: kept
    del stored["response_scale"]  # a run made before the option existed
    assert DynamicFilterConfig.from_dict(stored).response_scale == "multiply"
    with pytest.raises(Exception, match="response_scale must be one of divide, multiply"):
        DynamicFilterConfig(response_scale="square").validate()


@pytest.mark.parametrize("dynamic", [True, False])
def test_the_vectorised_forward_equals_the_per_class_loop(dynamic):
    torch.manual_seed(2)
    model = DynamicFilterNet(7, dynamic=dynamic).eval()
    x = torch.randn(5, 3, 32, 32)
    torch.testing.assert_close(model(x), model.forward_loop(x), rtol=1e-5, atol=1e-5)
    # Gradients agree too: the loop is what the seed trains.
    model.train()
    (model(x).sum()).backward()
    vec = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    (model.forward_loop(x).sum()).backward()
    for a, b in zip(vec, (p.grad for p in model.parameters()), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_the_static_baseline_is_an_ordinary_1x1_convolution_without_the_generator():
    torch.manual_seed(6)
    model = DynamicFilterNet(10, dynamic=False).eval()
    names = dict(model.named_parameters())
    assert not any(n.startswith(("generator", "class_embeddings")) for n in names)
    conv = model.static_conv
    assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (64, 10, (1, 1))
    assert conv.weight.requires_grad and conv.bias is not None
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model.response_maps(x), conv(model.backbone(x)))  # as it is
    dynamic = DynamicFilterNet(10)
    n_static = sum(p.numel() for p in model.parameters())
    n_dynamic = sum(p.numel() for p in dynamic.parameters())
    assert n_dynamic - n_static == 10 * 128 + 33024 + 16448 - (10 * 64 + 10)


def test_freezing_keeps_the_backbone_fixed_and_in_eval_mode():
    torch.manual_seed(3)
    model = DynamicFilterNet(10)
    model.freeze_backbone()
    model.train()
    assert not model.backbone.training and model.score_predictor.training
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    opt.step()
    for k, v in model.backbone.state_dict().items():
        torch.testing.assert_close(v, before[k])  # BatchNorm statistics included
    assert model.class_embeddings.weight.grad is not None


def test_imagenet_resnet18_weights_fill_the_backbone_up_to_layer1():
    torch.manual_seed(4)
    state = torchvision.models.resnet18(weights=None).state_dict()
    model = DynamicFilterNet(10)
    n = load_resnet18_layer1(model, state)
    assert n == len(model.backbone.state_dict())
    torch.testing.assert_close(model.backbone[0].weight, state["conv1.weight"])
    torch.testing.assert_close(model.backbone[4][1].conv2.weight, state["layer1.1.conv2.weight"])


def test_without_cached_weights_the_run_records_that_it_starts_from_random(runs_dir):
    run_dir = runs.create_run(DynamicFilterConfig(epochs=1), runs_dir)
    recorded = json.loads(RunLayout(run_dir).config.read_text())["backbone_weights"]
    assert recorded.startswith("none (ImageNet weights for resnet18 were not cached")
    assert runs.load_config(run_dir).backbone_weights == recorded  # still a valid config


def test_with_cached_weights_the_run_starts_from_them(runs_dir, weight_cache):
    weight_cache.mkdir()
    torch.manual_seed(5)
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, weight_cache / get_backbone("resnet18").weight_file().filename)
    cfg = DynamicFilterConfig(epochs=1, snapshot_size=10)
    run_dir = runs.create_run(cfg, runs_dir)
    assert runs.load_config(run_dir).backbone_weights == "imagenet"
    from engine.data import load_dataset
    from engine.experiments.dynamic_filter import prepare

    p = prepare(runs.load_config(run_dir), load_dataset(cfg.data), torch.device("cpu"))
    torch.testing.assert_close(p.model.backbone[0].weight, state["conv1.weight"])
    assert p.info["weights_report"].startswith("ImageNet ResNet-18")


def test_bad_configs_are_named():
    with pytest.raises(ConfigError, match="backbone_weights must be 'imagenet' or 'none'"):
        DynamicFilterConfig(backbone_weights="/some/file.pt").validate()
    with pytest.raises(ConfigError, match="data.image_size must be 32 for dynamic filters"):
        DynamicFilterConfig(data=DynamicFilterConfig().data.__class__(image_size=64)).validate()
    with pytest.raises(ConfigError, match="model.name must be 'dynamic_filter'"):
        DynamicFilterConfig(
            model=DynamicFilterConfig().model.__class__(name="small_cnn")
        ).validate()


def test_the_dynamic_vs_static_preset(runs_dir):
    rows = presets.preset_configs("dynamic-vs-static", DynamicFilterConfig())
    assert [(label, cfg.dynamic, cfg.freeze_backbone) for label, cfg, _ in rows] == [
        ("dynamic filters", True, False),
        ("static filters", False, False),
        ("dynamic filters, frozen backbone", True, True),
    ]
    assert len(presets.preset_configs("dynamic-vs-static", DynamicFilterConfig(),
                                     include_frozen=False)) == 2  # fmt: skip
    with pytest.raises(ConfigError, match="compares dynamic_filter runs"):
        presets.preset_configs("dynamic-vs-static", TransferConfig())
