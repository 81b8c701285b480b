import numpy as np
import pytest
import torch

from engine.config import DataConfig
from engine.data import load_dataset
from engine.experiments.fit import snapshot_subset


@pytest.fixture(scope="module")
def val():
    return load_dataset(DataConfig(image_size=8)).val


def test_snapshot_subset_is_a_fixed_sorted_sample_of_the_validation_set(val):
    size = 50
    assert len(val) > size
    subset = snapshot_subset(val, size, seed=0)
    ids = subset.ids.numpy()
    assert len(subset) == len(ids) == size
    assert (np.diff(ids) > 0).all()  # sorted, no repeats
    assert set(ids) <= set(val.ids.numpy())
    # Images and labels travel with their ids.
    pos = np.searchsorted(val.ids.numpy(), ids)
    assert torch.equal(subset.images, val.images[pos])
    assert torch.equal(subset.labels, val.labels[pos])
    # Every epoch's snapshot (and a resumed run's) embeds the same samples.
    for _ in range(3):
        np.testing.assert_array_equal(snapshot_subset(val, size, seed=0).ids.numpy(), ids)
    assert not np.array_equal(snapshot_subset(val, size, seed=1).ids.numpy(), ids)


def test_snapshot_subset_of_a_small_validation_set_is_all_of_it(val):
    assert snapshot_subset(val, len(val), seed=0) is val
    assert snapshot_subset(val, 10 * len(val), seed=0) is val
