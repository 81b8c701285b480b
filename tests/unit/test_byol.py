"""BYOL's model and loss: view-major outputs, the target's stop-gradient and moving average,
the loss's range, and the cosine schedule of the target momentum."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.ssl import BYOL, BYOLOutput, MLPHead, byol_loss, target_momentum

B, FEATURES, HIDDEN, PROJ = 4, 8, 64, 32


def tiny_body() -> nn.Module:
    return nn.Sequential(  # (B, 3, 16, 16) -> (B, 8)
        nn.Conv2d(3, FEATURES, 3, padding=1), nn.BatchNorm2d(FEATURES), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )  # fmt: skip


@pytest.fixture
def model() -> BYOL:
    torch.manual_seed(0)
    return BYOL(tiny_body(), FEATURES, hidden_dim=HIDDEN, projection_dim=PROJ)


@pytest.fixture
def views() -> torch.Tensor:
    return torch.randn(B, 2, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def online(model: BYOL) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if not n.startswith("target_")]


def target(model: BYOL) -> list[tuple[str, torch.Tensor]]:
    return [(n, p) for n, p in model.named_parameters() if n.startswith("target_")]


def test_mlp_head_is_linear_batchnorm_relu_linear():
    head = MLPHead(8, 64, 32)
    assert [type(m) for m in head] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert head(torch.randn(5, 8)).shape == (5, 32)


def test_outputs_are_both_views_stacked_view_major(model, views):
    out = model(views)
    assert isinstance(out, BYOLOutput)
    for t in out:
        assert t.shape == (2 * B, PROJ)
    model.eval()  # batch statistics aside, row i is view a of image i, row B + i its view b
    out = model(views)
    with torch.no_grad():
        a = model.projector(model.body(views[:, 0]))
        b = model.projector(model.body(views[:, 1]))
    torch.testing.assert_close(out.projections, torch.cat([a, b]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.predictions, model.predictor(torch.cat([a, b])))
    # at initialisation the target is a copy of the online network
    torch.testing.assert_close(out.targets, out.projections, atol=1e-5, rtol=1e-5)


def test_forward_features_is_the_online_backbone(model, views):
    model.eval()
    x = views[:, 0]
    torch.testing.assert_close(model.forward_features(x), model.body(x))
    assert model.forward_features(x).shape == (B, FEATURES)


def test_the_target_gets_no_gradient_and_the_online_network_does(model, views):
    assert all(not p.requires_grad for _, p in target(model))
    assert len(target(model)) == len(list(model.target_parameters())) > 0
    loss = byol_loss(model(views))
    loss.backward()
    assert all(p.grad is None for _, p in target(model))
    for name, p in online(model):
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert not model(views).targets.requires_grad


def test_loss_is_0_when_each_prediction_is_the_other_views_target():
    p = torch.randn(2 * B, PROJ)
    swapped = torch.cat([p[B:], p[:B]]) * 3.0  # cosine: the scale does not matter
    out = BYOLOutput(p, swapped, p)
    assert byol_loss(out).item() == pytest.approx(0.0, abs=1e-5)
    # the prediction of the same view's target is not the objective
    same = BYOLOutput(p, p, p)
    assert byol_loss(same).item() > 0.1


def test_loss_is_4_for_orthogonal_and_8_for_opposite_unit_vectors():
    e1, e2 = torch.eye(PROJ)[0], torch.eye(PROJ)[1]
    predictions = e1.repeat(2 * B, 1)
    assert byol_loss(BYOLOutput(predictions, e2.repeat(2 * B, 1), predictions)).item() == (
        pytest.approx(4.0)
    )
    assert byol_loss(BYOLOutput(predictions, -predictions, predictions)).item() == (
        pytest.approx(8.0)
    )


def test_loss_is_the_batch_mean_of_both_directions():
    g = torch.Generator().manual_seed(2)
    p, t = torch.randn(2 * B, PROJ, generator=g), torch.randn(2 * B, PROJ, generator=g)
    cos = F.cosine_similarity
    by_hand = torch.stack([
        (2 - 2 * cos(p[i], t[B + i], dim=0)) + (2 - 2 * cos(p[B + i], t[i], dim=0))
        for i in range(B)
    ]).mean()  # fmt: skip
    out = BYOLOutput(p, t, p)
    assert byol_loss(out).item() == pytest.approx(by_hand.item(), abs=1e-5)
    assert byol_loss(out, torch.arange(B)).item() == pytest.approx(by_hand.item(), abs=1e-5)


def test_loss_of_random_vectors_lies_in_0_to_8():
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        p, t = torch.randn(2 * B, PROJ, generator=g), torch.randn(2 * B, PROJ, generator=g)
        assert 0.0 <= byol_loss(BYOLOutput(p, t, p)).item() <= 8.0


def test_target_momentum_goes_from_base_to_1_along_a_cosine():
    total, base = 100, 0.99
    values = [target_momentum(k, total, base) for k in range(total + 1)]
    assert values[0] == pytest.approx(base) and values[-1] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(values, values[1:], strict=False))
    assert values[50] == pytest.approx(1 - (1 - base) / 2)
    assert values[25] == pytest.approx(1 - (1 - base) * (math.cos(math.pi / 4) + 1) / 2)
    assert target_momentum(0, total) == pytest.approx(0.996)  # BYOL's base by default
    # outside the run: held at the ends
    assert target_momentum(-5, total, base) == pytest.approx(base)
    assert target_momentum(total + 10, total, base) == pytest.approx(1.0)


def _perturb_online(model: BYOL) -> None:
    with torch.no_grad():
        for p in model.online_parameters():
            p.add_(torch.randn_like(p))


def test_update_target_0_copies_the_online_network(model):
    _perturb_online(model)
    model.update_target(0.0)
    for t, o in zip(model.target_parameters(), model.online_parameters(), strict=True):
        assert torch.equal(t, o)


def test_update_target_1_leaves_the_target(model):
    before = [t.clone() for t in model.target_parameters()]
    _perturb_online(model)
    model.update_target(1.0)
    for t, b in zip(model.target_parameters(), before, strict=True):
        assert torch.equal(t, b)


def test_update_target_half_averages_target_and_online(model):
    before = [t.clone() for t in model.target_parameters()]
    _perturb_online(model)
    model.update_target(0.5)
    for t, b, o in zip(model.target_parameters(), before, model.online_parameters(), strict=True):
        torch.testing.assert_close(t, 0.5 * b + 0.5 * o)
    # the predictor has no target twin; the online network is untouched by the average
    names = {n.split(".")[0] for n, _ in model.named_parameters()}
    assert names == {"body", "projector", "predictor", "target_body", "target_projector"}
