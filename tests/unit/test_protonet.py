"""Prototypical networks: the seed's Conv-4 + MLP head parameter for parameter, prototypes as
class means, the three distances, the easyfsl-style interface and the Trainer's Episode path."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.models.protonet import (
    Conv4,
    Episode,
    MLPHead,
    ParametricDistance,
    PrototypicalNetwork,
)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def layers(module: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, kind)]


def images(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g)


def eval_net(distance: str = "euclidean", mlp_head: bool = True, size: int = 16):
    torch.manual_seed(0)
    return PrototypicalNetwork(distance, mlp_head, input_size=size).eval()


# --- the seed's tables -----------------------------------------------------------------------


def test_conv4_matches_the_seed_table_layer_by_layer():
    backbone = Conv4()
    convs, norms = layers(backbone, nn.Conv2d), layers(backbone, nn.BatchNorm2d)
    assert [n_params(c) for c in convs] == [1_792, 36_928, 36_928, 36_928]
    assert [n_params(b) for b in norms] == [128] * 4
    assert all((c.kernel_size, c.padding, c.out_channels) == ((3, 3), (1, 1), 64) for c in convs)
    assert len(layers(backbone, nn.ReLU)) == 4 and len(layers(backbone, nn.MaxPool2d)) == 4
    # Output shapes of each block, as the seed's summary prints them for 84x84 input.
    x = torch.zeros(2, 3, 84, 84)
    shapes = []
    with torch.no_grad():
        for block in list(backbone)[:4]:
            x = block(x)
            shapes.append(tuple(x.shape[1:]))
        assert shapes == [(64, 42, 42), (64, 21, 21), (64, 10, 10), (64, 5, 5)]
        assert backbone(torch.zeros(2, 3, 84, 84)).shape == (2, 1600)


def test_mlp_head_matches_the_seed_table():
    head = MLPHead()
    linears = layers(head, nn.Linear)
    assert [n_params(m) for m in linears] == [1_280_800, 640_800, 320_400]
    assert [(m.in_features, m.out_features) for m in linears] == [(1600, 800), (800, 800),
                                                                  (800, 400)]  # fmt: skip
    # Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear: nothing after the last Linear.
    assert [type(m) for m in head] == [nn.Linear, nn.ReLU, nn.Dropout] * 2 + [nn.Linear]


def test_parametric_distance_matches_the_seed_table():
    relation = ParametricDistance(400)
    assert [n_params(m) for m in layers(relation, nn.Linear)] == [320_400, 401]
    net = PrototypicalNetwork("parametric")
    assert n_params(net.relation) == 320_400 + 401
    assert net.relation.net[0].in_features == 800  # the concatenated query and prototype


@pytest.mark.parametrize(
    "distance, mlp_head, extra",
    [
        ("euclidean", True, 0),
        ("cosine", True, 0),  # the plain cosine: nothing more
        ("parametric", True, 320_400 + 401),
        ("euclidean", False, 0),
    ],
)
def test_whole_network_parameter_counts(distance, mlp_head, extra):
    conv4 = 1_792 + 3 * 36_928 + 4 * 128
    head = 1_280_800 + 640_800 + 320_400 if mlp_head else 0
    net = PrototypicalNetwork(distance, mlp_head)
    assert n_params(net.backbone) == conv4 == 113_088
    assert n_params(net) == conv4 + head + extra
    assert net.embedding_dim == (400 if mlp_head else 1600)


def test_embeddings_at_84_and_at_small_sizes():
    with torch.no_grad():
        assert eval_net(size=84).embed(images(2, 84)).shape == (2, 400)
        assert eval_net(mlp_head=False, size=84).embed(images(2, 84)).shape == (2, 1600)
        # 28x28 -> 14 -> 7 -> 3 -> 1: 64 features into the head
        net = eval_net(size=28)
        assert net.head[0].in_features == 64
        assert net.embed(images(3, 28)).shape == (3, 400)


# --- prototypes and distances ----------------------------------------------------------------


@torch.no_grad()
def test_prototypes_are_the_mean_embedding_of_each_class():
    net = eval_net()
    support = images(6)
    labels = torch.tensor([2, 0, 1, 0, 2, 2])  # any order, uneven counts
    net.process_support_set(support, labels)
    z = net.embed(support)
    want = torch.stack([z[labels == c].mean(0) for c in range(3)])
    assert net.prototypes.shape == (3, 400)
    torch.testing.assert_close(net.prototypes, want)


@torch.no_grad()
def test_euclidean_logits_are_minus_squared_distances():
    net = eval_net("euclidean")
    support, labels, query = images(6), torch.tensor([0, 0, 1, 1, 2, 2]), images(5, seed=1)
    net.process_support_set(support, labels)
    logits = net(query)
    q, p = net.embed(query), net.prototypes
    want = -((q[:, None, :] - p[None, :, :]) ** 2).sum(-1)
    assert logits.shape == (5, 3)
    torch.testing.assert_close(logits, want, rtol=1e-4, atol=1e-4)
    assert (logits <= 0).all()


@torch.no_grad()
def test_the_plain_cosine_is_the_default_and_its_logits_are_the_cosine_similarity():
    net = eval_net("cosine")
    assert net.scale is None
    support, labels, query = images(4), torch.tensor([0, 1, 0, 1]), images(3, seed=1)
    net.process_support_set(support, labels)
    q, p = net.embed(query), net.prototypes
    cosine = F.cosine_similarity(q[:, None, :], p[None, :, :], dim=-1)
    torch.testing.assert_close(net(query), cosine)
    assert net(query).abs().max() <= 1.0 + 1e-5


def test_older_fewshot_configs_keep_the_learned_temperature():
    from engine.config.kinds import FewShotConfig

    assert FewShotConfig().cosine_scale == "fixed"
    stored = FewShotConfig(distance="cosine", cosine_scale="learned").to_dict()
    assert FewShotConfig.from_dict(stored).cosine_scale == "learned"
    del stored["cosine_scale"]  # a run made before the option: it trained a temperature
    assert FewShotConfig.from_dict(stored).cosine_scale == "learned"
    with pytest.raises(ValueError, match="cosine_scale must be fixed or learned"):
        PrototypicalNetwork("cosine", cosine_scale="both")


@torch.no_grad()
def test_cosine_logits_are_a_learnable_scale_times_cosine_similarity():
    torch.manual_seed(0)
    net = PrototypicalNetwork("cosine", True, input_size=16, cosine_scale="learned").eval()
    assert n_params(net) == n_params(PrototypicalNetwork("cosine", True, 16)) + 1
    assert isinstance(net.scale, nn.Parameter) and net.scale.item() == 10.0
    assert any(p is net.scale for p in net.parameters())  # the optimiser trains it
    support, labels, query = images(4), torch.tensor([0, 1, 0, 1]), images(3, seed=1)
    net.process_support_set(support, labels)
    q, p = net.embed(query), net.prototypes
    cosine = F.cosine_similarity(q[:, None, :], p[None, :, :], dim=-1)
    torch.testing.assert_close(net(query), 10.0 * cosine)
    net.scale.fill_(3.0)
    torch.testing.assert_close(net(query), 3.0 * cosine)
    assert net(query).abs().max() <= 3.0 + 1e-5


@torch.no_grad()
def test_parametric_logits_come_from_the_mlp_on_query_and_prototype():
    net = eval_net("parametric")
    support, labels, query = images(4), torch.tensor([0, 1, 0, 1]), images(3, seed=1)
    net.process_support_set(support, labels)
    q, p = net.embed(query), net.prototypes
    want = torch.stack(
        [torch.stack([net.relation.net(torch.cat([qi, pj])).squeeze() for pj in p]) for qi in q]
    )
    torch.testing.assert_close(net(query), want)
    assert net(query).shape == (3, 2)


# --- the interface -----------------------------------------------------------------------------


@pytest.mark.parametrize("distance", ["euclidean", "cosine", "parametric"])
@torch.no_grad()
def test_an_episode_gives_the_same_logits_as_support_then_query(distance):
    net = eval_net(distance)
    support, labels, query = images(6), torch.tensor([0, 0, 1, 1, 2, 2]), images(9, seed=1)
    net.process_support_set(support, labels)
    separate = net(query)
    together = net(Episode(support, labels, query))
    torch.testing.assert_close(together, separate, rtol=1e-5, atol=1e-4)
    embedded = Episode(net.embed(support), labels, net.embed(query), embedded=True)
    torch.testing.assert_close(net(embedded), separate, rtol=1e-5, atol=1e-4)
    assert len(Episode(support, labels, query)) == 9  # the Trainer counts queries


@torch.no_grad()
def test_an_episode_replaces_the_prototypes_of_the_last_one():
    net = eval_net()
    first = Episode(images(4), torch.tensor([0, 0, 1, 1]), images(2, seed=1))
    net(first)
    assert net.prototypes.shape[0] == 2
    second = Episode(images(3, seed=2), torch.tensor([0, 1, 2]), images(2, seed=3))
    assert net(second).shape == (2, 3)
    torch.testing.assert_close(net.prototypes, net.embed(second.support))


def test_classifying_queries_before_a_support_set_is_refused():
    net = eval_net()
    with pytest.raises(RuntimeError, match="process_support_set must be called"):
        net(images(2))


def test_an_unknown_distance_is_refused():
    with pytest.raises(ValueError, match="distance must be one of euclidean, cosine, parametric"):
        PrototypicalNetwork("manhattan")


# --- learning ----------------------------------------------------------------------------------


def toy_episode(seed: int, way: int = 3, shot: int = 2, query: int = 4) -> Episode:
    """Each class a colour (R, G or B brighter) plus noise: separable by a trained network."""
    g = torch.Generator().manual_seed(seed)
    base = torch.eye(3)[:way] * 2.0  # (way, 3)

    def draw(n):
        x = torch.randn(way, n, 3, 16, 16, generator=g) * 0.5 + base[:, None, :, None, None]
        return x.reshape(way * n, 3, 16, 16)

    labels = torch.arange(way).repeat_interleave(shot)
    return Episode(draw(shot), labels, draw(query))


@pytest.mark.parametrize("distance", ["euclidean", "cosine", "parametric"])
def test_adam_steps_on_episodes_reduce_the_loss(distance):
    torch.manual_seed(0)
    net = PrototypicalNetwork(distance, input_size=16)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    targets = torch.arange(3).repeat_interleave(4)
    held_out = toy_episode(seed=100)

    def held_out_loss() -> float:
        net.eval()
        with torch.no_grad():
            return F.cross_entropy(net(held_out), targets).item()

    before = held_out_loss()
    net.train()
    for step in range(30):  # 30 steps: the parametric distance has to learn to compare first
        loss = F.cross_entropy(net(toy_episode(seed=step)), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = held_out_loss()
    assert before == pytest.approx(math.log(3), abs=0.1)  # at first: about chance
    assert after < 0.5 * before, (before, after)
