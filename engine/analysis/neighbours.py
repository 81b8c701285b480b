"""Nearest neighbours of one sample in feature space (what the model thinks looks alike)."""

from __future__ import annotations

import numpy as np


def nearest_neighbours(features: np.ndarray, index: int, k: int) -> np.ndarray:
    """Indices of the k samples closest to `features[index]` by Euclidean distance.

    Nearest first, ties broken by the lower index, the sample itself excluded; k is clamped
    to N - 1. Distances are taken in the original feature space, not a 2-D projection,
    because projections distort neighbourhoods.
    """
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"features must be a 2-D array (N, D), got shape {features.shape}")
    n = features.shape[0]
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise ValueError(f"index must be an integer, got {index!r}")
    if not 0 <= index < n:
        raise ValueError(f"index {index} is out of range for {n} samples")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    k = min(int(k), n - 1)

    # float64: float32 squared distances lose the ordering of near-ties in high dimensions.
    diffs = features.astype(np.float64) - features[index].astype(np.float64)
    distances = np.einsum("nd,nd->n", diffs, diffs)  # (N,) squared distances
    distances[index] = np.inf
    order = np.argsort(distances, kind="stable")
    return order[:k].astype(np.int64)
