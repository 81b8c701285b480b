"""Classification metrics computed from label and prediction arrays."""

from __future__ import annotations

import numpy as np


def _class_indices(values: np.ndarray, name: str, num_classes: int) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {values.shape}")
    if values.size and not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got dtype {values.dtype}")
    values = values.astype(np.int64, copy=False)
    bad = (values < 0) | (values >= num_classes)
    if bad.any():
        raise ValueError(
            f"{name} holds class {values[bad][0]}, outside 0..{num_classes - 1} "
            f"(num_classes={num_classes})"
        )
    return values


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts; rows are true classes, columns predicted classes."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    labels = _class_indices(labels, "labels", num_classes)
    predictions = _class_indices(predictions, "predictions", num_classes)
    if labels.shape != predictions.shape:
        raise ValueError(
            f"labels and predictions differ in length: {labels.shape[0]} vs {predictions.shape[0]}"
        )
    # Each (true, predicted) pair becomes one flat cell index, so one bincount counts them all.
    flat = labels * num_classes + predictions
    counts = np.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _row_sums(cm: np.ndarray) -> np.ndarray:
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square (C, C), got shape {cm.shape}")
    return cm.sum(axis=1)


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each true class; NaN for a class with no samples (no evidence either way)."""
    totals = _row_sums(cm).astype(np.float64)
    correct = np.diagonal(np.asarray(cm)).astype(np.float64)
    out = np.full(totals.shape, np.nan)
    np.divide(correct, totals, out=out, where=totals > 0)
    return out


def normalise_rows(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its sum, so a cell reads as P(predicted | true); empty rows stay 0."""
    totals = _row_sums(cm).astype(np.float64)
    out = np.zeros(np.shape(cm), dtype=np.float64)
    np.divide(np.asarray(cm, dtype=np.float64), totals[:, None], out=out, where=totals[:, None] > 0)
    return out


def accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Fraction of predictions equal to the label; NaN when there are no samples."""
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    if labels.shape != predictions.shape:
        raise ValueError(
            f"labels and predictions differ in shape: {labels.shape} vs {predictions.shape}"
        )
    if labels.size == 0:
        return float("nan")
    return float(np.mean(labels == predictions))
