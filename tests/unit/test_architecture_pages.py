"""The registry's 32x32 ResNet-50 and a large pretrained-path backbone (EfficientNetV2-L, seed
001) go through the same inspection code the pages use: layers, Grad-CAM, embeddings."""

import pytest
import torch

from engine.analysis.attribution import attribute
from engine.analysis.layers import default_cam_layer, list_layers
from engine.models import build_model
from engine.models.backbones import build_transfer_net


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    v2l, _ = build_transfer_net("efficientnet_v2_l", 4, 32, "none")  # random init: no download
    return {"resnet50": build_model("resnet50", 4).eval(), "efficientnet_v2_l": v2l.eval()}


@pytest.mark.parametrize("name, features", [("resnet50", 2048), ("efficientnet_v2_l", 1280)])
def test_layers_cam_and_features_work_alike(models, name, features):
    model = models[name]
    layers = list_layers(model, 32)
    assert layers and all(info.name for info in layers)
    cam = default_cam_layer(layers)
    x = torch.rand(3, 32, 32)
    assert model.forward_features(x[None]).shape == (1, features)
    result = attribute(model, x, [0.5] * 3, [0.25] * 3, target=0, methods=["grad_cam"],
                       cam_layer=cam)  # fmt: skip
    heat = result.maps["grad_cam"]
    assert heat.shape == (32, 32) and result.cam_layer == cam
    assert result.probabilities.shape == (4,)
