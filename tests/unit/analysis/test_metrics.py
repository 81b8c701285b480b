import math

import numpy as np
import pytest

from engine.analysis.metrics import accuracy, confusion_matrix, normalise_rows, per_class_accuracy


def _loop_confusion(labels, predictions, num_classes):
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for t, p in zip(labels, predictions, strict=True):
        cm[t, p] += 1
    return cm


def test_confusion_matrix_matches_loop_on_random_data():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, size=500)
    predictions = rng.integers(0, 7, size=500)
    cm = confusion_matrix(labels, predictions, 7)
    assert cm.dtype == np.int64
    assert cm.shape == (7, 7)
    np.testing.assert_array_equal(cm, _loop_confusion(labels, predictions, 7))
    assert cm.sum() == 500


def test_confusion_matrix_rows_are_true_columns_predicted():
    cm = confusion_matrix(np.array([0, 0, 1]), np.array([1, 0, 1]), 3)
    # One sample of class 0 predicted as 1; class 2 never seen.
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [0, 0, 0]])


def test_confusion_matrix_empty_input_is_all_zero():
    cm = confusion_matrix(np.array([], dtype=np.int64), np.array([], dtype=np.int64), 4)
    np.testing.assert_array_equal(cm, np.zeros((4, 4)))


@pytest.mark.parametrize(
    "labels, predictions, match",
    [
        ([0, 3], [0, 1], "labels holds class 3"),
        ([0, 1], [0, -1], "predictions holds class -1"),
        ([0, 1, 2], [0, 1], "differ in length"),
        ([0.0, 1.0], [0, 1], "integer class indices"),
    ],
)
def test_confusion_matrix_rejects_bad_input(labels, predictions, match):
    with pytest.raises(ValueError, match=match):
        confusion_matrix(np.array(labels), np.array(predictions), 3)


def test_per_class_accuracy_is_recall_with_nan_for_absent_class():
    cm = np.array([[3, 1, 0], [0, 0, 0], [2, 0, 2]])
    acc = per_class_accuracy(cm)
    assert acc[0] == pytest.approx(0.75)
    assert math.isnan(acc[1])
    assert acc[2] == pytest.approx(0.5)


def test_per_class_accuracy_agrees_with_direct_count():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, size=300)
    predictions = np.where(rng.random(300) < 0.7, labels, rng.integers(0, 5, size=300))
    acc = per_class_accuracy(confusion_matrix(labels, predictions, 5))
    for c in range(5):
        assert acc[c] == pytest.approx(np.mean(predictions[labels == c] == c))


def test_normalise_rows_sums_to_one_and_keeps_empty_rows_zero():
    cm = np.array([[3, 1, 0], [0, 0, 0], [2, 0, 2]])
    norm = normalise_rows(cm)
    assert norm.dtype == np.float64
    np.testing.assert_allclose(norm.sum(axis=1), [1.0, 0.0, 1.0])
    np.testing.assert_allclose(norm[0], [0.75, 0.25, 0.0])
    assert np.isfinite(norm).all()


def test_non_square_matrix_is_rejected():
    with pytest.raises(ValueError, match="square"):
        per_class_accuracy(np.zeros((2, 3)))


def test_accuracy():
    assert accuracy(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2])) == pytest.approx(0.75)
    assert math.isnan(accuracy(np.array([]), np.array([])))
    with pytest.raises(ValueError, match="differ in shape"):
        accuracy(np.array([0, 1]), np.array([0]))
