"""How much to trust a 2-D picture of embeddings, as numbers.

- Trustworthiness (Venna & Kaski): are the layout's neighbours neighbours in the original
  features? 1 when every 2-D neighbourhood is a true one; about 0.5 for a random layout.
- Continuity: the reverse question (are the original neighbours kept together in 2-D?),
  trustworthiness with the two spaces swapped.
- kNN accuracy of the original features (leave-one-out, k neighbours, majority vote): how
  separable the classes are before any projection, so "the clusters separated" is a number.

Both neighbourhood measures compare all pairs (O(n²) memory): above `max_points` a seeded
subsample is measured, and the result says how many points it used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_POINTS = 2000  # 2,000² distances: 32 MB; 10,000² would be 800 MB
K = 10


@dataclass(frozen=True)
class LayoutQuality:
    trustworthiness: float
    continuity: float
    knn_accuracy: float
    k: int
    points: int  # measured (a subsample above MAX_POINTS)


def knn_accuracy(features: np.ndarray, labels: np.ndarray, k: int = K) -> float:
    """Leave-one-out kNN accuracy of `features` (Euclidean, majority vote, ties to the nearest
    neighbour's class)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(features) - 1)
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(features).kneighbors(features)
    neighbours = labels[idx[:, 1:]]  # drop each point itself
    votes = np.zeros((len(labels), int(labels.max()) + 1))
    for j in range(k):  # nearer neighbours weigh a little more: ties go to the nearest
        np.add.at(votes, (np.arange(len(labels)), neighbours[:, j]), 1.0 + (k - j) * 1e-6)
    return float((votes.argmax(1) == labels).mean())


def layout_quality(
    features: np.ndarray, layout: np.ndarray, labels: np.ndarray, k: int = K,
    max_points: int = MAX_POINTS, seed: int = 0,
) -> LayoutQuality:  # fmt: skip
    """Trustworthiness, continuity and kNN accuracy of one snapshot's layout."""
    from sklearn.manifold import trustworthiness

    features, layout = np.asarray(features, np.float64), np.asarray(layout, np.float64)
    labels = np.asarray(labels)
    if len(features) != len(layout) or len(features) != len(labels):
        raise ValueError(f"{len(features)} feature rows, {len(layout)} layout rows and "
                         f"{len(labels)} labels: they must be the same points")  # fmt: skip
    if len(features) > max_points:
        pick = np.sort(np.random.default_rng(seed).choice(len(features), max_points, False))
        features, layout, labels = features[pick], layout[pick], labels[pick]
    n = len(features)
    k = min(k, (n - 1) // 2)  # scikit-learn's bound for trustworthiness
    if k < 1:
        raise ValueError(f"{n} points are too few to measure neighbourhoods")
    return LayoutQuality(
        trustworthiness=float(trustworthiness(features, layout, n_neighbors=k)),
        continuity=float(trustworthiness(layout, features, n_neighbors=k)),
        knn_accuracy=knn_accuracy(features, labels, k),
        k=k, points=n,
    )  # fmt: skip
