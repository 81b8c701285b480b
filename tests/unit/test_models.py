import pytest
import torch
from torch import nn

from engine.models import build_model, list_models
from engine.models.base import Classifier

ALL = ["small_cnn", "resnet18", "resnet34", "resnet50", "resnext18", "resnext18_basic", "resnext50", "dlresnet18",
       "dlresnet18_cat", "dlresnet18_dilated"]  # fmt: skip


def test_registry_lists_every_model():
    assert list_models() == ALL


@pytest.mark.parametrize("name, num_features", [("small_cnn", 64), ("resnet18", 512)])
def test_features_then_head_is_the_forward(name, num_features):
    torch.manual_seed(0)
    model = build_model(name, num_classes=7).eval()
    assert isinstance(model, Classifier) and model.num_features == num_features
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model(x)
    assert features.shape == (3, num_features)  # (B, D): the penultimate embedding
    assert logits.shape == (3, 7)
    assert torch.equal(logits, model.forward_head(features))


@pytest.mark.parametrize("name", ["small_cnn", "resnet18"])
def test_every_parameter_gets_a_gradient(name):
    model = build_model(name, num_classes=4).train()
    loss = nn.functional.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 3]))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


@pytest.mark.parametrize("name, num_features", [("resnet34", 512), ("resnet50", 2048)])
def test_deep_resnets_have_the_32x32_stem(name, num_features):
    model = build_model(name, num_classes=10)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    assert model.num_features == num_features
    assert model.fc.in_features == num_features and model.fc.out_features == 10


def test_resnet18_has_the_32x32_stem_too():
    model = build_model("resnet18", num_classes=10)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)


def test_unknown_model_lists_the_valid_names():
    with pytest.raises(ValueError) as e:
        build_model("vgg16", num_classes=10)
    msg = str(e.value)
    assert "'vgg16'" in msg
    assert all(name in msg for name in ALL)


def test_a_pretrained_classifier_is_refused_by_the_config_with_the_way_out():
    """No classifier has pretrained weights (ImageNet networks are transfer backbones): the
    old config field still loads as false, and true is refused up front, not at run time."""
    from engine.config import ConfigError, ModelConfig, RunConfig

    assert RunConfig.from_dict({"kind": "classify", "model": {"pretrained": False}}).model
    with pytest.raises(ConfigError, match="model.pretrained: a classify run trains from scratch"):
        RunConfig(model=ModelConfig(name="small_cnn", pretrained=True)).validate()
