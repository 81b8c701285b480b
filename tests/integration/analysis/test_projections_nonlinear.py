"""t-SNE and UMAP projections, fitted here: deterministic, finite, keeping blobs apart, from a
given start, on tiny inputs, and chained over a run's epochs. The first UMAP fit in a process
compiles numba code for several seconds, hence this tier; PCA and the rest:
tests/unit/analysis/test_projections.py."""

import numpy as np
import pytest

from engine.analysis.projections import METHODS, project
from engine.inspect import projection_cache
from engine.inspect.projection_cache import project_run
from tests.support.projections import blobs, fake_run, forbid_projecting

FAST = {"pca": {}, "tsne": {"n_iter": 250}, "umap": {}}


def one_nn_accuracy(points, labels):
    d = np.linalg.norm(points[:, None] - points[None], axis=2)
    np.fill_diagonal(d, np.inf)
    return np.mean(labels[np.argmin(d, axis=1)] == labels)


# --- project ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["tsne", "umap"])
def test_nonlinear_methods_are_finite_deterministic_and_keep_blobs_apart(method):
    features, labels = blobs()
    first = project(features, method, FAST[method], seed=3)
    again = project(features, method, FAST[method], seed=3)
    assert first.shape == (90, 2) and first.dtype == np.float32
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(first, again)
    assert one_nn_accuracy(first, labels) >= 0.95


def test_umaps_exact_neighbours_are_not_measured_a_pair_at_a_time(monkeypatch):
    """Below umap-learn's exact-neighbour threshold the distances come from BLAS: scikit-learn's
    path for a callable metric (one Python call per pair: 3.5 s of a 5 s UMAP of 2,000
    points) is never taken, and the layout still keeps the blobs apart."""
    from sklearn.metrics import pairwise

    def per_pair(*args, **kwargs):
        raise AssertionError("a callable metric: one Python call per pair of points")

    monkeypatch.setattr(pairwise, "_pairwise_callable", per_pair)
    features, labels = blobs()
    layout = project(features, "umap", seed=0)
    assert one_nn_accuracy(layout, labels) > 0.95


@pytest.mark.parametrize("method", ["tsne", "umap"])
def test_init_is_used_and_checked(method):
    features, _ = blobs(n_per_class=15)
    start = project(features, "pca")
    from_pca = project(features, method, FAST[method], init=start)
    assert np.isfinite(from_pca).all()
    assert not np.array_equal(from_pca, project(features, method, FAST[method]))
    with pytest.raises(ValueError, match=r"init must have shape \(45, 2\)"):
        project(features, method, FAST[method], init=start[:10])


@pytest.mark.parametrize("method", METHODS)
def test_tiny_inputs_still_project(method):
    features = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    points = project(features, method, {"n_iter": 50} if method == "tsne" else None)
    assert points.shape == (4, 2) and np.isfinite(points).all()


# --- the per-run chain --------------------------------------------------------------------


@pytest.mark.parametrize("method", ["tsne", "umap"])
def test_project_run_chains_nonlinear_methods(tmp_path, monkeypatch, method):
    run = fake_run(tmp_path, epochs=2, n_per_class=15)
    layouts = project_run(run, method, FAST[method], seed=1)
    assert list(layouts) == [1, 2]
    assert all(np.isfinite(p).all() and p.shape == (45, 2) for p in layouts.values())
    monkeypatch.setattr(projection_cache, "project", forbid_projecting)
    cached = project_run(run, method, FAST[method], seed=1)
    np.testing.assert_array_equal(cached[2], layouts[2])
