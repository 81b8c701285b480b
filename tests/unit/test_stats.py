"""engine.analysis.stats: intervals and paired tests, checked against independent formulas."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from engine.analysis import stats
from engine.train.tasks import iou_per_class

Z = sps.norm.ppf(0.975)


def closed_form_wilson(k: int, n: int, z: float = Z) -> tuple[float, float]:
    """The Wilson score interval written out: (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


# --- wilson -------------------------------------------------------------------------------
@pytest.mark.parametrize(("k", "n"), [(7, 10), (97, 100), (1, 3), (50, 50), (123, 400)])
def test_wilson_matches_the_closed_form(k, n):
    iv = stats.wilson(k, n)
    low, high = closed_form_wilson(k, n)
    assert iv.value == pytest.approx(k / n)
    assert iv.low == pytest.approx(low, abs=1e-9)
    assert iv.high == pytest.approx(high, abs=1e-9)
    assert iv.n == n
    assert iv.low <= iv.value <= iv.high


def test_wilson_of_no_correct_item_starts_at_zero():
    iv = stats.wilson(0, 20)
    assert iv.value == 0
    assert iv.low == pytest.approx(0.0, abs=1e-12)
    assert iv.high == pytest.approx(closed_form_wilson(0, 20)[1], abs=1e-9)
    assert iv.high > 0


def test_wilson_narrows_with_more_items():
    assert stats.wilson(900, 1000).plus_minus() < stats.wilson(9, 10).plus_minus()


def test_wilson_of_no_items_is_refused():
    with pytest.raises(ValueError):
        stats.wilson(0, 0)


# --- mean_interval --------------------------------------------------------------------------
def test_mean_interval_of_one_value_has_no_interval():
    iv = stats.mean_interval([0.8])
    assert iv.value == pytest.approx(0.8)
    assert iv.low is None and iv.high is None
    assert iv.plus_minus() is None
    assert iv.n == 1
    assert iv.text() == "80.00%"  # no bracket when there is no interval


def test_mean_interval_of_equal_values_has_zero_width():
    iv = stats.mean_interval([0.9, 0.9, 0.9])
    assert iv.value == pytest.approx(0.9)
    assert iv.low == pytest.approx(0.9)
    assert iv.high == pytest.approx(0.9)
    assert iv.plus_minus() == pytest.approx(0.0)


def test_mean_interval_is_the_student_t_interval():
    values = [0.91, 0.93, 0.96, 0.90]
    n = len(values)
    mean = sum(values) / n
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))  # sample sd by hand
    half = sps.t.ppf(0.975, n - 1) * s / math.sqrt(n)
    iv = stats.mean_interval(values)
    assert iv.value == pytest.approx(mean)
    assert iv.low == pytest.approx(mean - half)
    assert iv.high == pytest.approx(mean + half)
    assert iv.plus_minus() == pytest.approx(half)
    assert iv.n == n
    assert "4 seeds" in iv.method


def test_mean_interval_is_clipped_to_the_bounds():
    values = [1.0, 0.95, 1.0]
    mean = sum(values) / 3
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    half = sps.t.ppf(0.975, 2) * s / math.sqrt(3)
    assert mean + half > 1  # the plain t interval runs past 100%
    iv = stats.mean_interval(values)
    assert iv.value == pytest.approx(mean)
    assert iv.high == 1.0
    assert iv.low == pytest.approx(mean - half)
    unclipped = stats.mean_interval(values, bounds=None)
    assert unclipped.high == pytest.approx(mean + half)


def test_mean_interval_of_nothing_is_refused():
    with pytest.raises(ValueError):
        stats.mean_interval([])


# --- miou -----------------------------------------------------------------------------------
LABELS = [  # three tiny 2x3 images, classes 0..2
    np.array([[0, 0, 1], [1, 2, 2]]),
    np.array([[0, 1, 1], [1, 1, 0]]),
    np.array([[2, 2, 2], [0, 0, 1]]),
]
PREDS = [
    np.array([[0, 1, 1], [1, 2, 0]]),
    np.array([[0, 1, 0], [1, 1, 0]]),
    np.array([[2, 2, 1], [0, 2, 1]]),
]


def counts(labels, preds, classes=3):
    """Per image and class: true positives, predicted pixels, actual pixels."""
    tp = np.array(
        [
            [np.sum((y == c) & (p == c)) for c in range(classes)]
            for y, p in zip(labels, preds, strict=True)
        ]
    )
    pred = np.array([[np.sum(p == c) for c in range(classes)] for p in preds])
    act = np.array([[np.sum(y == c) for c in range(classes)] for y in labels])
    return tp, pred, act


def confusion(labels, preds, classes=3):
    cm = np.zeros((classes, classes), dtype=np.int64)
    for y, p in zip(labels, preds, strict=True):
        np.add.at(cm, (y.ravel(), p.ravel()), 1)
    return cm


def test_miou_equals_the_mean_iou_of_the_confusion_matrix():
    tp, pred, act = counts(LABELS, PREDS)
    expected = float(np.nanmean(iou_per_class(confusion(LABELS, PREDS), 3)))
    assert stats.miou(tp, pred, act) == pytest.approx(expected)


def test_miou_by_hand_on_one_image():
    # image 0 flattened: labels 0 0 1 1 2 2, predictions 0 1 1 1 2 0
    # class 0: tp 1, predicted 2, actual 2 -> union 3; class 1: tp 2, predicted 3, actual 2
    # -> union 3; class 2: tp 1, predicted 1, actual 2 -> union 2
    tp, pred, act = counts(LABELS[:1], PREDS[:1])
    assert stats.miou(tp, pred, act) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)


def test_miou_leaves_out_a_class_neither_present_nor_predicted():
    labels = [np.array([0, 0, 1, 1])]
    preds = [np.array([0, 1, 1, 1])]
    tp, pred, act = counts(labels, preds, classes=3)  # class 2 nowhere
    # class 0: tp 1 / union 2, class 1: tp 2 / union 3; class 2 not in the mean
    assert stats.miou(tp, pred, act) == pytest.approx((1 / 2 + 2 / 3) / 2)
    expected = float(np.nanmean(iou_per_class(confusion(labels, preds), 3)))
    assert stats.miou(tp, pred, act) == pytest.approx(expected)


def test_miou_of_perfect_segmentation_is_one():
    tp, pred, act = counts(LABELS, LABELS)
    assert stats.miou(tp, pred, act) == pytest.approx(1.0)


# --- bootstrap_miou -------------------------------------------------------------------------
def random_images(n, accuracy, seed, classes=3, pixels=40):
    """n images of random labels, each pixel predicted right with probability `accuracy`."""
    rng = np.random.default_rng(seed)
    labels, preds = [], []
    for _ in range(n):
        y = rng.integers(0, classes, pixels)
        wrong = rng.random(pixels) > accuracy
        p = np.where(wrong, (y + rng.integers(1, classes, pixels)) % classes, y)
        labels.append(y)
        preds.append(p)
    return labels, preds


def test_bootstrap_interval_contains_the_value():
    tp, pred, act = counts(*random_images(30, 0.7, seed=1))
    iv = stats.bootstrap_miou(tp, pred, act)
    assert iv.value == pytest.approx(stats.miou(tp, pred, act))
    assert iv.low < iv.value < iv.high
    assert iv.n == 30
    assert "30 test images" in iv.method


def test_bootstrap_interval_narrows_with_more_images():
    tp, pred, act = counts(*random_images(10, 0.7, seed=2))
    few = stats.bootstrap_miou(tp, pred, act)
    # the same images four times over: the same mIoU, from four times the evidence
    many = stats.bootstrap_miou(*(np.tile(v, (4, 1)) for v in (tp, pred, act)))
    assert many.value == pytest.approx(few.value)
    assert many.plus_minus() < few.plus_minus()


def test_bootstrap_of_one_image_is_refused():
    tp, pred, act = counts(LABELS[:1], PREDS[:1])
    with pytest.raises(ValueError):
        stats.bootstrap_miou(tp, pred, act)


# --- mcnemar --------------------------------------------------------------------------------
def test_mcnemar_of_identical_outcomes_is_p_one():
    right = [1, 0, 1, 1, 0, 1]
    t = stats.mcnemar(right, right)
    assert t.p == 1.0
    assert t.difference == 0.0
    assert not t.differs


def test_mcnemar_is_the_exact_binomial_of_the_discordant_items():
    # 10 images only A gets right, none only B, 5 both right, 5 both wrong.
    a = [1] * 10 + [1] * 5 + [0] * 5
    b = [0] * 10 + [1] * 5 + [0] * 5
    t = stats.mcnemar(a, b)
    # two-sided binomial of 10 successes in 10 at 1/2: 2 * 0.5**10
    assert t.p == pytest.approx(2 * 0.5**10)
    assert t.differs
    assert t.difference == pytest.approx(15 / 20 - 5 / 20)
    assert "10" in t.detail and "0 only the second" in t.detail


def test_mcnemar_is_symmetric():
    a = [1, 1, 1, 0, 0, 1, 0, 1]
    b = [0, 1, 0, 1, 0, 0, 0, 1]
    ab, ba = stats.mcnemar(a, b), stats.mcnemar(b, a)
    assert ab.p == pytest.approx(ba.p)
    assert ab.difference == pytest.approx(-ba.difference)


def test_mcnemar_balanced_discordance_does_not_differ():
    # 3 only A, 3 only B: binomial(3, 6) two-sided p = 1
    a = [1, 1, 1, 0, 0, 0]
    b = [0, 0, 0, 1, 1, 1]
    assert stats.mcnemar(a, b).p == pytest.approx(1.0)


def test_mcnemar_of_different_lengths_is_refused():
    with pytest.raises(ValueError):
        stats.mcnemar([1, 0, 1], [1, 0])


# --- paired_t -------------------------------------------------------------------------------
def test_paired_t_of_identical_values_is_p_one():
    t = stats.paired_t([0.9, 0.8, 0.95], [0.9, 0.8, 0.95], "seeds")
    assert t.p == 1.0
    assert t.difference == 0.0
    assert t.method == "paired t over 3 seeds"


def test_paired_t_matches_scipy():
    a = [0.91, 0.93, 0.90, 0.94, 0.92]
    b = [0.89, 0.92, 0.90, 0.90, 0.91]
    t = stats.paired_t(a, b, "episodes")
    assert t.p == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert t.difference == pytest.approx(np.mean(np.subtract(a, b)))
    assert "5 episodes" in t.method


def test_paired_t_needs_the_same_number_and_at_least_two():
    with pytest.raises(ValueError):
        stats.paired_t([0.9, 0.8, 0.7], [0.9, 0.8], "seeds")
    with pytest.raises(ValueError):
        stats.paired_t([0.9], [0.8], "seeds")


# --- paired_bootstrap_miou ------------------------------------------------------------------
def test_paired_bootstrap_finds_a_clearly_better_segmentation():
    labels, good = random_images(40, 0.95, seed=3)
    rng = np.random.default_rng(4)
    bad = [np.where(rng.random(y.shape) < 0.5, (y + 1) % 3, y) for y in labels]
    a, b = counts(labels, good), counts(labels, bad)
    t = stats.paired_bootstrap_miou(a, b)
    assert t.p < 0.05
    assert t.differs
    assert t.difference == pytest.approx(stats.miou(*a) - stats.miou(*b))
    assert t.difference > 0
    assert "40 test images" in t.method


def test_paired_bootstrap_of_identical_segmentations_is_p_near_one():
    a = counts(*random_images(20, 0.8, seed=5))
    t = stats.paired_bootstrap_miou(a, a)
    assert t.p >= 0.95
    assert t.difference == 0.0
    assert not t.differs


def test_paired_bootstrap_of_different_image_counts_is_refused():
    a = counts(LABELS, PREDS)
    b = counts(LABELS[:2], PREDS[:2])
    with pytest.raises(ValueError):
        stats.paired_bootstrap_miou(a, b)


# --- holm -----------------------------------------------------------------------------------
def test_holm_by_hand():
    # sorted: 0.005 x4 = 0.02; 0.01 x3 = 0.03; 0.03 x2 = 0.06; 0.04 x1 = 0.04 -> max so far 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_keeps_the_input_order():
    p = [0.2, 0.001, 0.04]
    # sorted: 0.001 x3 = 0.003; 0.04 x2 = 0.08; 0.2 x1 = 0.2
    assert stats.holm(p) == pytest.approx([0.2, 0.003, 0.08])
    assert stats.holm(list(reversed(p))) == pytest.approx([0.08, 0.003, 0.2])


def test_holm_is_monotone_capped_and_never_below_the_raw_p():
    rng = np.random.default_rng(6)
    p = list(rng.random(12) ** 3)
    adjusted = stats.holm(p)
    order = np.argsort(p)
    along = [adjusted[i] for i in order]
    assert all(x <= y for x, y in zip(along[:-1], along[1:], strict=True))
    assert all(q <= 1.0 for q in adjusted)
    assert all(q >= raw for q, raw in zip(adjusted, p, strict=True))
    assert stats.holm([0.6, 0.7]) == [1.0, 1.0]


def test_holm_of_one_p_is_that_p():
    assert stats.holm([0.03]) == [0.03]
    assert stats.holm([]) == []
