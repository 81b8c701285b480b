import numpy as np
import pytest

from engine.analysis.neighbours import nearest_neighbours


def _brute_force(features, index, k):
    distances = np.linalg.norm(features - features[index], axis=1)
    order = [i for i in np.argsort(distances, kind="stable") if i != index]
    return np.array(order[:k])


@pytest.mark.parametrize("index", [0, 17, 79])
def test_matches_brute_force_argsort(index):
    features = np.random.default_rng(0).normal(size=(80, 16)).astype(np.float32)
    found = nearest_neighbours(features, index, 5)
    np.testing.assert_array_equal(found, _brute_force(features, index, 5))
    distances = np.linalg.norm(features[found] - features[index], axis=1)
    assert np.all(np.diff(distances) >= 0), "nearest first"


def test_excludes_the_query_but_keeps_its_duplicates():
    features = np.array([[0.0, 0.0], [5.0, 5.0], [0.0, 0.0], [1.0, 0.0]])
    np.testing.assert_array_equal(nearest_neighbours(features, 0, 2), [2, 3])


def test_k_larger_than_n_is_clamped():
    features = np.random.default_rng(1).normal(size=(6, 3))
    found = nearest_neighbours(features, 2, 100)
    assert sorted(found.tolist()) == [0, 1, 3, 4, 5]
    assert nearest_neighbours(features, 2, 0).shape == (0,)


@pytest.mark.parametrize(
    "index, k, match",
    [(6, 3, "out of range"), (-1, 3, "out of range"), (0, -1, "k must be"), (1.5, 3, "integer")],
)
def test_bad_arguments_raise(index, k, match):
    features = np.zeros((6, 3))
    with pytest.raises(ValueError, match=match):
        nearest_neighbours(features, index, k)


def test_features_must_be_2d():
    with pytest.raises(ValueError, match="2-D"):
        nearest_neighbours(np.zeros(6), 0, 2)
