"""Segmentation models: shapes, FCN-32s's bilinear upsampling and its VGG-16 weights, and
what each model's ImageNet backbone starts from."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from engine.config.registry import SEGMENTATION
from engine.models.backbones import get_backbone
from engine.models.segmentation import (
    FCN32s,
    TorchvisionSegmentation,
    bilinear_kernel,
    build_segmentation_model,
)
from engine.models.weights import WeightsError


@pytest.mark.parametrize("name", list(SEGMENTATION))
def test_every_model_maps_images_to_per_pixel_logits_of_the_same_size(name):
    torch.manual_seed(0)
    model, report = build_segmentation_model(name, 6, 64, "none", fc_channels=16)
    assert report == "random initialisation"
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 6, 64, 64)
    assert torch.isfinite(out).all()
    with torch.no_grad():  # not a square: H and W are kept apart
        assert model(torch.randn(1, 3, 64, 96)).shape == (1, 6, 64, 96)


def _parameters_without_gradient(name: str) -> list[str]:
    torch.manual_seed(0)
    model, _ = build_segmentation_model(name, 6, 64, fc_channels=8)
    model.train()
    logits = model(torch.randn(2, 3, 64, 64))
    nn.functional.cross_entropy(logits, torch.randint(0, 6, (2, 64, 64))).backward()
    return [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]


@pytest.mark.parametrize("name", ["unet_small", "fcn32s"])
def test_gradients_reach_every_trainable_parameter(name):
    assert _parameters_without_gradient(name) == []


def test_fcn8s_lite0_has_no_unused_trainable_parameters():
    assert _parameters_without_gradient("fcn8s_lite0") == []


def test_the_registry_names_each_model_s_backbone():
    backbones = {name: spec.backbone for name, spec in SEGMENTATION.items()}
    assert backbones == {
        "fcn32s": "vgg16",
        "fcn8s_lite0": "efficientnet_lite0",
        "deeplabv3_resnet50": "resnet50",
        "fcn_resnet50": "resnet50",
        "unet_small": None,
    }


def test_an_unknown_model_name_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"unknown segmentation model 'fcn99'.*unet_small"):
        build_segmentation_model("fcn99", 6, 64)


# --- FCN-32s ---------------------------------------------------------------------------------


def test_bilinear_kernel_is_the_fcn_paper_s_filter():
    k = bilinear_kernel(2, 4)  # factor 2: the paper's upsample_filt(4)
    row = torch.tensor([0.25, 0.75, 0.75, 0.25])
    torch.testing.assert_close(k[0, 0], row[:, None] * row[None, :])
    torch.testing.assert_close(k[1, 1], k[0, 0])
    assert (k[0, 1] == 0).all() and (k[1, 0] == 0).all()  # channels stay apart
    big = bilinear_kernel(3, 64)
    assert big.shape == (3, 3, 64, 64)
    centre = 31.5  # (size + 1) // 2 - 0.5 for an even size
    filt = 1 - (torch.arange(64.0) - centre).abs() / 32
    torch.testing.assert_close(big[2, 2], filt[:, None] * filt[None, :])


def test_bilinear_transposed_convolution_upsamples_a_constant_to_a_constant():
    up = nn.ConvTranspose2d(2, 2, 64, stride=32, padding=16, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(2, 64))
        x = torch.stack([torch.full((4, 4), 3.0), torch.full((4, 4), -1.0)])[None]
        out = up(x)
    assert out.shape == (1, 2, 128, 128)
    # Away from the border every output pixel has two taps per axis, weights summing to 1.
    torch.testing.assert_close(out[0, 0, 16:112, 16:112], torch.full((96, 96), 3.0))
    torch.testing.assert_close(out[0, 1, 16:112, 16:112], torch.full((96, 96), -1.0))
    # And a ramp stays a ramp: bilinear interpolation between the input pixels' centres.
    ramp = torch.arange(4.0).repeat(4, 1)[None, None].expand(1, 2, 4, 4)
    with torch.no_grad():
        line = up(ramp.contiguous())[0, 0, 64]
    steps = line[32:96].diff()
    torch.testing.assert_close(steps, torch.full_like(steps, 1 / 32))


@pytest.fixture(scope="module")
def fcn32s_pair():
    """FCN-32s with narrow fc6/fc7 (building one takes about a second): learned and fixed
    upsampling."""
    torch.manual_seed(0)
    learned, _ = build_segmentation_model("fcn32s", 6, 64, fc_channels=16)
    fixed, _ = build_segmentation_model("fcn32s", 6, 64, fc_channels=16, learn_upsampling=False)
    return learned, fixed


def test_fcn32s_starts_from_zero_scores_and_a_bilinear_upsampling(fcn32s_pair):
    model = fcn32s_pair[0]
    torch.testing.assert_close(model.upscore.weight, bilinear_kernel(6, 64))
    assert model.upscore.weight.requires_grad
    assert model.upscore.bias is None
    assert (model.score.weight == 0).all() and (model.score.bias == 0).all()
    assert (model.fc6.kernel_size, model.fc7.kernel_size) == ((7, 7), (1, 1))
    assert model.fc6.out_channels == model.fc7.out_channels == 16
    model.eval()
    with torch.no_grad():
        assert (model(torch.randn(1, 3, 64, 64)) == 0).all()


def test_fixed_upsampling_is_left_out_of_training(fcn32s_pair):
    from engine.config import OptimConfig
    from engine.train import build_optimizer

    learned, fixed = fcn32s_pair
    assert fixed.upscore.weight.requires_grad is False
    torch.testing.assert_close(fixed.upscore.weight, bilinear_kernel(6, 64))
    optimizer, _ = build_optimizer(fixed, OptimConfig(), epochs=1)
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert id(fixed.upscore.weight) not in in_optimizer
    assert id(fixed.score.weight) in in_optimizer
    assert learned.upscore.weight.requires_grad is True


@pytest.fixture(scope="module")
def fake_vgg16():
    """A VGG-16 state dict whose every tensor holds values a fresh model would not."""
    torch.manual_seed(7)
    state = torchvision.models.vgg16(weights=None).state_dict()
    for i, value in enumerate(state.values()):
        value.uniform_(-1, 1).add_(i)
    return state


def test_fcn32s_load_imagenet_reshapes_the_classifier_into_fc6_and_fc7(fake_vgg16):
    model = FCN32s(6, fc_channels=4096)
    score_before = model.score.weight.clone()
    report = model.load_imagenet(fake_vgg16)
    assert report == "ImageNet VGG-16: 30 tensors (convolutions, fc6, fc7)"
    own = model.state_dict()
    convs = [k for k in fake_vgg16 if k.startswith("features.")]
    assert len(convs) == 26  # 13 convolutions
    for key in convs:
        assert torch.equal(own[key], fake_vgg16[key]), key
    # fc6 as a 7x7 convolution over pool5's (512, 7, 7): Linear's input is flattened C, H, W.
    assert own["fc6.weight"].shape == (4096, 512, 7, 7)
    assert torch.equal(own["fc6.weight"].flatten(1), fake_vgg16["classifier.0.weight"])
    assert torch.equal(
        own["fc6.weight"][5, 300, 2, 4], fake_vgg16["classifier.0.weight"][5, 300 * 49 + 2 * 7 + 4]
    )
    assert torch.equal(own["fc6.bias"], fake_vgg16["classifier.0.bias"])
    assert torch.equal(own["fc7.weight"][:, :, 0, 0], fake_vgg16["classifier.3.weight"])
    assert torch.equal(own["fc7.bias"], fake_vgg16["classifier.3.bias"])
    assert torch.equal(model.score.weight, score_before)  # ImageNet's classes are not ours
    torch.testing.assert_close(model.upscore.weight, bilinear_kernel(6, 64))


def test_fcn32s_narrower_than_vgg_loads_only_the_convolutions(fake_vgg16):
    model = FCN32s(6, fc_channels=64)
    fc6_before = model.fc6.weight.clone()
    report = model.load_imagenet(fake_vgg16)
    assert report == "ImageNet VGG-16: 26 tensors (convolutions)"
    assert torch.equal(model.features[0].weight, fake_vgg16["features.0.weight"])
    assert torch.equal(model.features[28].bias, fake_vgg16["features.28.bias"])
    assert torch.equal(model.fc6.weight, fc6_before)


# --- ImageNet backbones ----------------------------------------------------------------------


def test_fcn8s_lite0_starts_from_every_imagenet_body_tensor():
    imagenet = get_backbone("efficientnet_lite0").imagenet_state_dict()
    model, report = build_segmentation_model("fcn8s_lite0", 6, 64, "imagenet")
    body = model.body.state_dict()
    expected = {k: v for k, v in imagenet.items() if not k.startswith("_fc.")}
    assert set(body) <= set(expected)  # nothing left at its random initialisation
    unused_head = ("_conv_head.", "_bn1.")  # after stride 32: not part of the FCN-8s body
    assert all(k.startswith(unused_head) for k in set(expected) - set(body))
    for key, value in body.items():
        assert torch.equal(value, expected[key]), key
    assert report.startswith("ImageNet EfficientNet-Lite0: ")
    random, _ = build_segmentation_model("fcn8s_lite0", 6, 64, "none")
    stem = "_conv_stem.weight"
    assert not torch.equal(random.body.state_dict()[stem], imagenet[stem])


def test_fcn8s_lite0_taps_strides_8_16_and_32():
    model, _ = build_segmentation_model("fcn8s_lite0", 6, 64)
    shapes = {}
    for name in ("score8", "score16", "score32"):
        getattr(model, name).register_forward_hook(
            lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[-2:]))
        )
    model.eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert shapes == {"score8": (8, 8), "score16": (4, 4), "score32": (2, 2)}


def test_torchvision_models_load_an_imagenet_resnet50_into_their_backbone():
    torch.manual_seed(3)
    state = torchvision.models.resnet50(weights=None).state_dict()
    for value in state.values():
        if value.is_floating_point():
            value.uniform_(0.5, 1.5)
    model = TorchvisionSegmentation("fcn_resnet50", 6)
    head_before = model.net.classifier[-1].weight.clone()
    report = model.load_imagenet(state)
    backbone = model.net.backbone.state_dict()
    body = {k: v for k, v in state.items() if not k.startswith("fc.")}
    assert set(backbone) == set(body)
    for key in ("conv1.weight", "layer4.2.conv3.weight", "layer2.0.bn1.running_var"):
        assert torch.equal(backbone[key], state[key])
    assert torch.equal(model.net.classifier[-1].weight, head_before)
    assert report == f"ImageNet ResNet-50: {len(body)} backbone tensors"


@pytest.mark.parametrize(
    "name, backbone", [("fcn32s", "vgg16"), ("deeplabv3_resnet50", "resnet50")]
)
def test_imagenet_weights_missing_from_the_cache_say_where_to_put_the_file(
    name, backbone, weight_cache
):
    with pytest.raises(WeightsError) as e:
        build_segmentation_model(name, 6, 64, "imagenet", fc_channels=8)
    message = str(e.value)
    wf = get_backbone(backbone).weight_file()
    assert f"ImageNet weights for {backbone}" in message
    assert f"place it at {weight_cache / wf.filename}" in message
    assert f"python -m engine weights fetch {backbone}" in message


def test_unet_small_ignores_imagenet():
    model, report = build_segmentation_model("unet_small", 6, 64, "imagenet")
    assert report == "random initialisation"
    assert sum(p.numel() for p in model.parameters()) < 600_000


def test_fcn32s_starts_from_cached_vgg16_weights(weight_cache):
    from torchvision.models.vgg import cfgs, make_layers

    from engine.config import DataConfig, ModelConfig, SegmentConfig
    from engine.experiments.segment import preprocessing

    torch.manual_seed(5)
    features = make_layers(cfgs["D"]).state_dict()  # VGG-16's convolutions only: 59 MB
    state = {f"features.{k}": v.uniform_(-1, 1) for k, v in features.items()}
    wf = get_backbone("vgg16").weight_file()
    weight_cache.mkdir(parents=True)
    torch.save(state, wf.path())

    model, report = build_segmentation_model("fcn32s", 6, 64, "imagenet", fc_channels=8)
    assert report == "ImageNet VGG-16: 26 tensors (convolutions)"
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state.items())

    cfg = SegmentConfig(data=DataConfig(name="landcover", image_size=64),
                        model=ModelConfig(name="fcn32s"), fc_channels=8)  # fmt: skip
    cfg.validate().resolve_for_run()
    assert cfg.backbone_weights == "imagenet"  # cached: nothing to record
    mean, std = preprocessing(cfg, splits=None)  # the weights' own normalisation
    assert (tuple(mean), tuple(std)) == (get_backbone("vgg16").mean, get_backbone("vgg16").std)


def test_fcn_resnet50_trains_its_auxiliary_classifier_with_weight_0_4():
    from engine.config.kinds import SegmentConfig
    from engine.experiments.segment import pixel_cross_entropy, prepare

    torch.manual_seed(0)
    model, _ = build_segmentation_model("fcn_resnet50", 6, 64, aux_loss=True)
    assert model.net.aux_classifier is not None and model.aux_weight == 0.4
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 6, (2, 64, 64))
    model.train()
    out = model(x)
    assert out.shape == (2, 6, 64, 64) and model.aux.shape == (2, 6, 64, 64)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 6, 64, 64)
    assert model.aux is None and model.net.aux_classifier is not None  # not run, still there
    plain, _ = build_segmentation_model("fcn_resnet50", 6, 64)
    assert plain.net.aux_classifier is None and plain.aux_weight == 0.0
    # A run's loss adds 0.4 x the auxiliary head's cross-entropy in training (the prepared
    # loss, on the model prepare builds); validation's is the main head's alone.
    from engine.config import DataConfig, ModelConfig
    from engine.data import load_dataset

    cfg = SegmentConfig(model=ModelConfig(name="fcn_resnet50"), backbone_weights="none",
                        data=DataConfig(name="landcover", image_size=64))  # fmt: skip
    assert cfg.aux_loss
    stored = cfg.to_dict()
    del stored["aux_loss"]  # a run from before: no auxiliary head in its checkpoints
    assert not SegmentConfig.from_dict(stored).aux_loss
    p = prepare(cfg, load_dataset(cfg.data), torch.device("cpu"))
    p.model.train()
    logits = p.model(x)
    expected = pixel_cross_entropy(logits, y) + 0.4 * pixel_cross_entropy(p.model.aux, y)
    torch.testing.assert_close(p.loss_fn(logits, y), expected)
    assert p.eval_loss_fn is pixel_cross_entropy
