"""Reading a classifier trained on long-tailed data: accuracy per class against its training
count, the usual many / medium / few-shot split (Liu et al., 2019: > 100, 20-100, < 20
training images), and where the tail classes' images go instead: to classes with more
training images (the drift toward the head)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.analysis.metrics import per_class_accuracy


@dataclass
class LongTailReport:
    train_counts: np.ndarray  # (C,)
    per_class: np.ndarray  # (C,) accuracy of each class (NaN: no evaluation images)
    groups: dict[str, list[int]]  # "many" / "medium" / "few" -> class indices
    group_accuracy: dict[str, float]  # accuracy over the images of each group's classes
    to_larger: np.ndarray  # (C,) share of each class's images given to a class with more
    # training images than it: the drift toward the head


def shot_groups(train_counts, many: int = 100, few: int = 20) -> dict[str, list[int]]:
    """Classes with more than `many` training images, `few` to `many`, fewer than `few`."""
    counts = np.asarray(train_counts)
    if few > many:
        raise ValueError(f"the few-shot threshold ({few}) must not exceed the many-shot ({many})")
    return {
        "many": np.flatnonzero(counts > many).tolist(),
        "medium": np.flatnonzero((counts >= few) & (counts <= many)).tolist(),
        "few": np.flatnonzero(counts < few).tolist(),
    }


def long_tail_report(confusion, train_counts, many: int = 100, few: int = 20) -> LongTailReport:
    """From an evaluation's (true, predicted) count matrix and the training counts."""
    cm = np.asarray(confusion, dtype=np.float64)
    counts = np.asarray(train_counts)
    if cm.shape != (len(counts), len(counts)):
        raise ValueError(
            f"the confusion matrix is {cm.shape}, the training counts are for {len(counts)} classes"
        )
    groups = shot_groups(counts, many, few)
    group_accuracy = {}
    for name, members in groups.items():
        seen = cm[members].sum()
        group_accuracy[name] = (
            float(np.trace(cm[np.ix_(members, members)]) / seen) if seen else float("nan")
        )
    rows = cm.sum(1)
    larger = counts[None, :] > counts[:, None]  # (true c, predicted k): k had more images
    to_larger = np.divide((cm * larger).sum(1), rows, out=np.full(len(rows), np.nan),
                          where=rows > 0)  # fmt: skip
    return LongTailReport(counts, per_class_accuracy(cm), groups, group_accuracy, to_larger)
