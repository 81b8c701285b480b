"""Training batches never hold a single sample (BatchNorm cannot train on one value per
channel); evaluation batches are left as they are."""

import pytest
import torch

from engine.data import BatchLoader, ImageSet


def _data(n: int) -> ImageSet:
    return ImageSet(
        torch.zeros(n, 3, 4, 4, dtype=torch.uint8), torch.arange(n) % 2, torch.arange(n)
    )


@pytest.mark.parametrize(
    "n, shuffle, sizes",
    [
        (9, True, [4, 5]),  # 9 = 4 + 4 + 1: the one joins the batch before it
        (9, False, [4, 4, 1]),  # evaluation: every sample once, in order, as before
        (10, True, [4, 4, 2]),
        (5, True, [5]),
        (1, True, [1]),  # nothing to join: one sample is one batch
    ],
)
def test_batch_sizes(n, shuffle, sizes):
    loader = BatchLoader(_data(n), 4, [0.0] * 3, [1.0] * 3, shuffle=shuffle, seed=1)
    batches = list(loader.batches(epoch=2))
    assert (
        [len(y) for _, y, _ in batches]
        == sizes
        == [len(loader.batch_slice(torch.arange(n), b)) for b in range(len(loader))]
    )
    seen = torch.cat([idx for _, _, idx in batches])
    assert sorted(seen.tolist()) == list(range(n))  # every sample exactly once


def test_a_resumed_epoch_starts_at_the_same_batch():
    loader = BatchLoader(_data(9), 4, [0.0] * 3, [1.0] * 3, shuffle=True, seed=1)
    full = [idx for _, _, idx in loader.batches(epoch=3)]
    tail = [idx for _, _, idx in loader.batches(epoch=3, start=1)]
    assert len(tail) == 1 and torch.equal(tail[0], full[1])
