"""2-D projections of embedding snapshots (engine.analysis.projections, engine.inspect): the
parameters, PCA, Procrustes alignment, reading snapshots, and the per-run chain and its cache.
t-SNE and UMAP fits (a numba compile of several seconds on the first UMAP call):
tests/integration/analysis/test_projections_nonlinear.py."""

import json
import os

import numpy as np
import pytest

from engine.analysis.projections import (
    DEFAULT_PARAMS,
    METHODS,
    align_procrustes,
    project,
    resolve_params,
)
from engine.inspect import projection_cache
from engine.inspect.projection_cache import project_run, projection_cache_dir
from engine.inspect.snapshots import load_embedding
from engine.store.layout import RunLayout
from tests.support.projections import blobs, fake_run, forbid_projecting, write_snapshot


def centroid_accuracy(points, labels):
    centroids = np.stack([points[labels == c].mean(axis=0) for c in np.unique(labels)])
    nearest = np.argmin(np.linalg.norm(points[:, None] - centroids[None], axis=2), axis=1)
    return np.mean(nearest == labels)


class CountingProject:
    """Wraps `project` to record how often the chain really computes a layout."""

    def __init__(self):
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return project(*args, **kwargs)


# --- parameters ---------------------------------------------------------------------------


def test_defaults_and_merging():
    assert METHODS == ("pca", "tsne", "umap")
    assert resolve_params("pca") == {}
    assert resolve_params("tsne") == DEFAULT_PARAMS["tsne"]
    merged = resolve_params("umap", {"n_neighbors": 30.0})
    assert merged == {"n_neighbors": 30, "min_dist": 0.1}
    assert isinstance(merged["n_neighbors"], int)


def test_unknown_method_is_named():
    with pytest.raises(ValueError) as err:
        resolve_params("isomap")
    assert str(err.value) == "unknown projection method 'isomap'; choose one of pca, tsne, umap"
    with pytest.raises(ValueError, match="unknown projection method"):
        project(blobs()[0], "isomap")


def test_unknown_param_lists_valid_names():
    with pytest.raises(ValueError, match="perplxity.*valid names: perplexity, n_iter"):
        resolve_params("tsne", {"perplxity": 5})
    with pytest.raises(ValueError, match="valid names: none"):
        resolve_params("pca", {"whiten": True})


@pytest.mark.parametrize(
    "method, params, match",
    [
        ("tsne", {"perplexity": 0}, "perplexity must be > 0"),
        ("tsne", {"perplexity": -3.0}, "perplexity must be > 0"),
        ("tsne", {"perplexity": float("nan")}, "perplexity must be finite"),
        ("tsne", {"n_iter": 0}, "n_iter must be >= 1"),
        ("tsne", {"n_iter": 2.5}, "n_iter must be an integer"),
        ("tsne", {"n_iter": True}, "n_iter must be an integer"),
        ("umap", {"n_neighbors": 1}, "n_neighbors must be >= 2"),
        ("umap", {"min_dist": -0.1}, r"min_dist must be in \[0, 1\]"),
        ("umap", {"min_dist": 1.5}, r"min_dist must be in \[0, 1\]"),
        ("umap", {"min_dist": "0.1"}, "min_dist must be a number"),
    ],
)
def test_bad_param_values_are_rejected(method, params, match):
    with pytest.raises(ValueError, match=match):
        resolve_params(method, params)


# --- project ------------------------------------------------------------------------------


def test_pca_separates_blobs():
    features, labels = blobs()
    points = project(features, "pca")
    assert points.shape == (90, 2) and points.dtype == np.float32
    assert centroid_accuracy(points, labels) == 1.0


@pytest.mark.parametrize(
    "features, match",
    [
        (np.zeros((2, 5)), "at least 3 samples"),
        (np.zeros((10, 1)), "at least 2 dimensions"),
        (np.zeros(10), "2-D array"),
        (np.full((10, 4), np.nan), "NaN or infinite"),
    ],
)
def test_unprojectable_features_raise(features, match):
    with pytest.raises(ValueError, match=match):
        project(features, "pca")


def test_identical_samples():
    features = np.ones((10, 4), dtype=np.float32)
    np.testing.assert_array_equal(project(features, "pca"), np.zeros((10, 2)))
    with pytest.raises(ValueError, match="identical features"):
        project(features, "tsne")


# --- Procrustes ---------------------------------------------------------------------------


def test_align_procrustes_recovers_rotated_reflected_translated_copy():
    reference = np.random.default_rng(0).normal(size=(60, 2)).astype(np.float32)
    angle = 1.1
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    reflection = np.diag([1.0, -1.0])
    moving = (reference @ rotation @ reflection + [7.0, -3.0]).astype(np.float32)
    aligned = align_procrustes(reference, moving)
    assert aligned.dtype == np.float32
    assert np.abs(aligned - reference).max() < 1e-5


def test_align_procrustes_keeps_the_moving_scale():
    reference = np.random.default_rng(1).normal(size=(30, 2))
    aligned = align_procrustes(reference, 3.0 * reference)
    np.testing.assert_allclose(aligned - aligned.mean(0), 3.0 * (reference - reference.mean(0)))
    np.testing.assert_allclose(aligned.mean(0), reference.mean(0), atol=1e-12)


def test_align_procrustes_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        align_procrustes(np.zeros((5, 2)), np.zeros((6, 2)))


# --- snapshots ----------------------------------------------------------------------------


def test_load_embedding_round_trip(tmp_path):
    features, labels = blobs(n_per_class=5)
    write_snapshot(tmp_path, 2, features, labels)
    snapshot = load_embedding(tmp_path, 2)
    assert set(snapshot) == {"features", "labels", "sample_ids", "predictions"}
    np.testing.assert_array_equal(snapshot["features"], features)


def test_load_embedding_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="epoch_0007.npz"):
        load_embedding(tmp_path, 7)


def test_load_embedding_missing_key_names_file_and_key(tmp_path):
    path = RunLayout(tmp_path).embedding_file(1)
    path.parent.mkdir(parents=True)
    np.savez(path, features=np.zeros((4, 3)), labels=np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match=r"epoch_0001\.npz is missing sample_ids, predictions"):
        load_embedding(tmp_path, 1)


def test_load_embedding_corrupt_file_names_it(tmp_path):
    path = RunLayout(tmp_path).embedding_file(1)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(ValueError, match=r"epoch_0001\.npz is not a readable"):
        load_embedding(tmp_path, 1)


def test_load_embedding_rejects_inconsistent_lengths(tmp_path):
    features, labels = blobs(n_per_class=5)
    write_snapshot(tmp_path, 1, features, labels[:-1])
    with pytest.raises(ValueError, match=r"epoch_0001\.npz: labels must have shape \(15,\)"):
        load_embedding(tmp_path, 1)


# --- cache folder -------------------------------------------------------------------------


def test_cache_dir_depends_on_canonical_params_and_seed(tmp_path):
    default = projection_cache_dir(tmp_path, "umap")
    assert default.parent == RunLayout(tmp_path).projections
    assert default.name.startswith("umap-")
    assert projection_cache_dir(tmp_path, "umap", {"n_neighbors": 15.0}) == default
    assert projection_cache_dir(tmp_path, "umap", {"n_neighbors": 16}) != default
    assert projection_cache_dir(tmp_path, "umap", seed=1) != default
    assert projection_cache_dir(tmp_path, "tsne").name.startswith("tsne-")
    described = json.loads((default / "params.json").read_text())
    assert described["method"] == "umap"
    assert described["params"] == {"n_neighbors": 15, "min_dist": 0.1}
    assert described["seed"] == 0


# --- the per-run chain --------------------------------------------------------------------


def test_project_run_computes_then_reads_cache(tmp_path, monkeypatch):
    run = fake_run(tmp_path)
    seen = []
    first = project_run(run, "pca", progress=lambda *a: seen.append(a))
    assert list(first) == [1, 2, 3]
    assert seen == [(1, 3, 1), (2, 3, 2), (3, 3, 3)]
    for points in first.values():
        assert points.shape == (60, 2) and points.dtype == np.float32
    cache = projection_cache_dir(run, "pca")
    assert sorted(p.name for p in cache.glob("epoch_*.npy")) == [
        "epoch_0001.npy",
        "epoch_0002.npy",
        "epoch_0003.npy",
    ]

    monkeypatch.setattr(projection_cache, "project", forbid_projecting)
    second = project_run(run, "pca")
    assert list(second) == [1, 2, 3]
    for epoch in first:
        np.testing.assert_array_equal(second[epoch], first[epoch])


def test_project_run_computes_only_the_chain_it_needs(tmp_path, monkeypatch):
    run = fake_run(tmp_path)
    counting = CountingProject()
    monkeypatch.setattr(projection_cache, "project", counting)
    only_two = project_run(run, "pca", epochs=[2])
    assert list(only_two) == [2]
    assert counting.calls == 2
    cache = projection_cache_dir(run, "pca")
    assert not (cache / "epoch_0003.npy").exists()

    # Extending the chain later computes just the new epoch.
    everything = project_run(run, "pca")
    assert counting.calls == 3
    np.testing.assert_array_equal(everything[2], only_two[2])


def test_project_run_aligns_successive_epochs(tmp_path):
    # Epoch 2 holds the same features mirrored: PCA flips its axes, alignment undoes it.
    features, labels = blobs(n_per_class=20)
    write_snapshot(tmp_path, 1, features, labels)
    write_snapshot(tmp_path, 2, -features, labels)
    raw = project(-features, "pca")
    layouts = project_run(tmp_path, "pca")
    assert np.abs(raw - layouts[1]).max() > 1.0
    assert np.abs(layouts[2] - layouts[1]).max() < 1e-3


def test_rewritten_snapshot_invalidates_the_rest_of_the_chain(tmp_path, monkeypatch):
    run = fake_run(tmp_path)
    project_run(run, "pca")
    features, labels = blobs(n_per_class=20, seed=42)
    path = write_snapshot(run, 2, features, labels)
    later = os.stat(path).st_mtime_ns + 10**9
    os.utime(path, ns=(later, later))
    counting = CountingProject()
    monkeypatch.setattr(projection_cache, "project", counting)
    project_run(run, "pca")
    assert counting.calls == 2  # epochs 2 and 3; epoch 1 still valid


def test_corrupt_cache_file_is_recomputed(tmp_path):
    run = fake_run(tmp_path, epochs=1)
    first = project_run(run, "pca")
    (projection_cache_dir(run, "pca") / "epoch_0001.npy").write_bytes(b"garbage")
    np.testing.assert_array_equal(project_run(run, "pca")[1], first[1])


def test_project_run_errors_name_the_file(tmp_path):
    run = fake_run(tmp_path, epochs=2)
    with pytest.raises(FileNotFoundError, match="epoch_0005.npz"):
        project_run(run, "pca", epochs=[5])
    RunLayout(run).embedding_file(2).write_bytes(b"not an npz")
    with pytest.raises(ValueError, match=r"epoch_0002\.npz"):
        project_run(run, "pca")
    with pytest.raises(ValueError, match="unknown projection method"):
        project_run(run, "mds")


def test_project_run_without_snapshots_is_empty(tmp_path):
    assert project_run(tmp_path, "pca") == {}
