"""Layers by name: their output shapes, looking one up, Grad-CAM's default, and capturing one."""

import pytest
import torch
import torchvision
from torch import nn

from engine.analysis.layers import LayerCapture, default_cam_layer, get_layer, list_layers
from engine.models import build_model


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return build_model("small_cnn", 10)  # width 16: blocks of 16, 32, 64 channels


def test_list_layers_gives_each_feature_map_in_forward_order_with_its_shape():
    model = small_cnn()
    layers = {layer.name: layer for layer in list_layers(model, 32)}
    # Each block halves the map (max-pool 2) and doubles the channels.
    assert layers["features.0"].shape == (16, 16, 16)
    assert layers["features.1"].shape == (32, 8, 8)
    assert layers["features.2"].shape == (64, 4, 4)
    assert layers["features.0.0"].shape == (16, 32, 32)  # the first conv, before its pooling
    assert layers["features.0.0"].kind == "Conv2d" and layers["features.0.0"].channels == 16
    assert layers["pool"].shape == (64, 1, 1)
    assert "fc" not in layers, "a 2-D output is not a feature map"
    names = list(layers)
    blocks = [n for n in names if n in ("features.0", "features.1", "features.2", "pool")]
    assert blocks == ["features.0", "features.1", "features.2", "pool"]
    convs = [n for n in names if layers[n].kind == "Conv2d"]
    assert convs == ["features.0.0", "features.1.0", "features.2.0"]


def test_list_layers_shapes_follow_the_input_size_and_channels():
    model = build_model("small_cnn", 10, in_channels=1)
    layers = {layer.name: layer for layer in list_layers(model, 64, in_channels=1)}
    assert layers["features.0"].shape == (16, 32, 32)
    assert layers["features.2"].shape == (64, 8, 8)


def test_list_layers_puts_the_model_in_eval_mode_and_removes_its_hooks():
    model = small_cnn().train()
    list_layers(model, 32)
    assert not any(m.training for m in model.modules())
    assert not any(m._forward_hooks for m in model.modules())


def test_get_layer_returns_the_module_and_names_the_valid_ones_otherwise():
    model = small_cnn()
    assert get_layer(model, "features.1.0") is model.features[1][0]
    with pytest.raises(ValueError, match="no layer 'features.9'") as info:
        get_layer(model, "features.9")
    for name in ("features.0", "features.2.0", "pool", "fc"):
        assert name in str(info.value)
    with pytest.raises(ValueError, match="no layer ''"):
        get_layer(model, "")  # the model itself is not one of its layers


def test_default_cam_layer_is_the_last_block_with_a_spatial_map():
    layers = list_layers(small_cnn(), 32)
    chosen = {layer.name: layer for layer in layers}[default_cam_layer(layers)]
    # The last block's (64, 4, 4) map, not the (64, 1, 1) pooled one after it.
    assert chosen.shape == (64, 4, 4) and chosen.kind in ("Sequential", "Conv2d")

    resnet = torchvision.models.resnet18(weights=None)
    assert default_cam_layer(list_layers(resnet, 64)) == "layer4"  # layer4 is (512, 2, 2)


def test_default_cam_layer_without_a_spatial_map_raises():
    # A kernel as large as the image: every map is 1 x 1.
    model = nn.Sequential(nn.Conv2d(3, 4, 16), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ValueError, match="no layer with a spatial feature map"):
        default_cam_layer(list_layers(model, 16))


def test_capture_with_stop_returns_the_layer_output_and_skips_the_rest():
    model = small_cnn().eval()
    x = torch.randn(2, 3, 32, 32)
    later_calls = []
    model.features[2].register_forward_hook(lambda *_: later_calls.append(1))
    with LayerCapture(model, "features.1", stop=True) as capture:
        out = capture.run(x)
    assert later_calls == [], "the forward pass must end at the captured layer"
    with torch.no_grad():
        expected = model.features[1](model.features[0](x))
    torch.testing.assert_close(out, expected)
    assert out.shape == (2, 32, 8, 8)
    assert not model.features[1]._forward_hooks, "the capture hook is removed on exit"
    model(x)  # a normal forward pass afterwards runs to the end
    assert later_calls == [1]


def test_capture_without_stop_runs_the_whole_network():
    model = small_cnn().eval()
    x = torch.randn(1, 3, 32, 32)
    later_calls = []
    model.fc.register_forward_hook(lambda *_: later_calls.append(1))
    with LayerCapture(model, "features.0") as capture:
        out = capture.run(x)
    assert later_calls == [1]
    torch.testing.assert_close(out, model.features[0](x))


def test_capture_of_an_unknown_layer_raises():
    with pytest.raises(ValueError, match="no layer 'conv9'"):
        LayerCapture(small_cnn(), "conv9", stop=True)
