"""The self-supervised monitors: the kNN classifier on backbone features, the collapse
measure of normalised projections, and the Trainer task that reports both."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from engine.data import BatchLoader, ImageSet
from engine.ssl import (
    BYOL,
    SelfSupervised,
    byol_loss,
    collapse_threshold,
    knn_predict,
    knn_probe,
    normalised_std,
)


def clusters(per_class: int, dim: int = 8, classes: int = 3, seed: int = 0):
    """Points around `classes` orthogonal directions: far apart in cosine similarity."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(per_class)
    points = 10 * torch.eye(dim)[labels] + 0.5 * torch.randn(len(labels), dim, generator=g)
    return points, labels


# --- kNN ------------------------------------------------------------------------------------------


def test_knn_is_perfect_on_well_separated_clusters():
    bank, bank_labels = clusters(20)
    queries, labels = clusters(10, seed=1)
    preds = knn_predict(bank, bank_labels, queries, 3, k=5)
    assert torch.equal(preds, labels)


def test_k_larger_than_the_bank_is_clamped():
    bank, bank_labels = clusters(2)  # 6 rows
    queries, labels = clusters(4, seed=1)
    preds = knn_predict(bank, bank_labels, queries, 3, k=200)
    assert torch.equal(preds, knn_predict(bank, bank_labels, queries, 3, k=6))
    assert preds.shape == labels.shape


def test_votes_are_weighted_by_similarity_over_the_temperature():
    # Two class-0 neighbours at 60 degrees, one class-2 neighbour right on the query.
    s60 = math.sin(math.pi / 3)
    bank = torch.tensor([[0.5, s60], [0.5, -s60], [1.0, 0.001]])
    bank_labels = torch.tensor([0, 0, 2])
    query = torch.tensor([[1.0, 0.0]])
    # sharp: the one close neighbour outweighs two far ones; flat: the majority wins
    assert knn_predict(bank, bank_labels, query, 3, k=3, temperature=0.07).item() == 2
    assert knn_predict(bank, bank_labels, query, 3, k=3, temperature=100.0).item() == 0


def test_knn_handles_more_queries_than_one_chunk():
    bank, bank_labels = clusters(10)
    queries, labels = clusters(400, seed=2)  # 1200 rows: two chunks of at most 1024
    assert torch.equal(knn_predict(bank, bank_labels, queries, 3, k=3), labels)


# --- collapse -------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [16, 64])
def test_normalised_std_of_gaussian_rows_is_about_one_over_sqrt_d(d):
    z = torch.randn(20_000, d, generator=torch.Generator().manual_seed(d))
    assert normalised_std(z) == pytest.approx(1 / math.sqrt(d), rel=0.03)
    assert normalised_std(5 * z) == pytest.approx(normalised_std(z), rel=1e-4)  # scale-free


def test_normalised_std_of_identical_rows_is_zero():
    row = torch.randn(1, 32)
    assert normalised_std(row.repeat(500, 1)) == pytest.approx(0.0, abs=1e-6)
    # rows on one ray, at different lengths, are just as collapsed
    assert normalised_std(row * (0.1 + torch.rand(500, 1))) == pytest.approx(0.0, abs=1e-6)


def test_collapse_threshold_is_a_quarter_of_a_healthy_spread():
    for d in (32, 256):
        assert collapse_threshold(d) == pytest.approx(0.25 / math.sqrt(d))
        healthy = normalised_std(torch.randn(5000, d, generator=torch.Generator().manual_seed(0)))
        assert collapse_threshold(d) < healthy / 3


# --- the task the Trainer uses --------------------------------------------------------------------


class MeanColour(nn.Module):
    """A 'backbone' whose features are each image's mean colour: enough for coloured images."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))  # (B, 3)


def coloured(n_per_class: int, seed: int) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    colours = torch.tensor([[220, 20, 20], [20, 220, 20], [20, 20, 220]], dtype=torch.float32)
    labels = torch.arange(3).repeat_interleave(n_per_class)
    images = colours[labels].view(-1, 3, 1, 1) + 20 * torch.randn(len(labels), 3, 8, 8, generator=g)
    return ImageSet(images.clamp(0, 255).to(torch.uint8), labels, torch.arange(len(labels)))


def test_knn_probe_labels_held_out_images_by_their_features():
    model = BYOL(MeanColour(), 3, hidden_dim=16, projection_dim=8)
    bank = BatchLoader(coloured(6, 0), 5, [0.0] * 3, [1.0] * 3)
    query = BatchLoader(coloured(4, 1), 5, [0.0] * 3, [1.0] * 3)
    probe = knn_probe(model, bank, query, 3, k=3)
    assert probe.features.shape == (12, 3)
    assert torch.equal(probe.labels, torch.arange(3).repeat_interleave(4))
    assert probe.accuracy == 1.0
    probe.predictions = (probe.labels + 1) % 3
    assert probe.accuracy == 0.0


def test_the_task_reports_loss_collapse_and_knn_accuracy():
    torch.manual_seed(0)
    model = BYOL(MeanColour(), 3, hidden_dim=16, projection_dim=8)
    bank = BatchLoader(coloured(6, 0), 5, [0.0] * 3, [1.0] * 3)
    query = BatchLoader(coloured(4, 1), 5, [0.0] * 3, [1.0] * 3)
    task = SelfSupervised(model, bank, query, num_classes=3, k=3)
    assert (task.score_name, task.train_accuracy) == ("knn_acc", False)
    tally = task.tally(torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    outs, losses, sizes = [], [], (3, 5)
    for n in sizes:
        with torch.no_grad():  # as the Trainer evaluates
            out = model(torch.rand(n, 2, 3, 8, 8, generator=g))
            loss = byol_loss(out)
        tally.add(out, torch.zeros(n, dtype=torch.long), loss)
        outs.append(out)
        losses.append(loss.item())
        right, counted = task.counts(out, torch.zeros(n, dtype=torch.long))
        assert (int(right), counted) == (0, n)  # no training accuracy to count
    result = tally.result()
    assert result.loss == pytest.approx((3 * losses[0] + 5 * losses[1]) / 8, rel=1e-5)
    spread = normalised_std(torch.cat([o.projections for o in outs]))
    assert result.metrics["collapse_std"] == pytest.approx(spread)
    assert result.acc == result.metrics["knn_acc"] == 1.0 == result.score
    assert task.last_probe is not None and task.last_probe.accuracy == result.acc
