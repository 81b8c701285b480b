"""Synthetic embedding snapshots shared by the projection tests (tests/unit/analysis and
tests/integration/analysis): blobs of features and run folders holding them."""

import numpy as np

from engine.store.layout import RunLayout


def blobs(n_per_class=30, dim=16, spread=1.0, seed=0):
    """Three well separated Gaussian blobs: (3 * n_per_class, dim) features and labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 6.0, size=(3, dim))
    labels = np.repeat(np.arange(3), n_per_class)
    features = centres[labels] + rng.normal(0.0, spread, size=(labels.size, dim))
    return features.astype(np.float32), labels


def write_snapshot(run_dir, epoch, features, labels):
    path = RunLayout(run_dir).embedding_file(epoch)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = features.shape[0]
    np.savez(
        path,
        features=features,
        labels=labels.astype(np.int64),
        sample_ids=np.arange(n, dtype=np.int64),
        predictions=labels.astype(np.int64),
    )
    return path


def fake_run(tmp_path, epochs=3, n_per_class=20):
    """A run folder whose blobs tighten epoch by epoch, as features do while a net learns."""
    for epoch in range(1, epochs + 1):
        features, labels = blobs(n_per_class, spread=2.0 / epoch, seed=epoch)
        write_snapshot(tmp_path, epoch, features, labels)
    return tmp_path


def forbid_projecting(*args, **kwargs):
    raise AssertionError("project() was called although the cache should have been used")
