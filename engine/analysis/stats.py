"""Uncertainty and significance for the numbers the workbench compares (scipy.stats underneath).

- One run's test accuracy: a Wilson interval over its test images.
- One run's mIoU: a bootstrap interval over its test images (the IoU of each resample summed
  over its images, as the score itself is).
- A row of N seeds: the mean and a Student-t interval over the seeds.
- Two rows: a paired test on the same test items. Accuracy: the exact McNemar test (a binomial
  test on the images one run gets right and the other wrong); mIoU: a paired bootstrap over
  images; few-shot: a paired t-test over the same episodes; and, with three or more seeds a
  row, a paired t-test over the seeds' scores (seed i of one row against seed i of the other).
- Many pairs in one table: Holm's step-down adjustment, so "differs" holds for the table as a
  whole at the 5% level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
BOOTSTRAP = 2000


@dataclass(frozen=True)
class Interval:
    value: float
    low: float | None  # None: not enough to tell (one seed)
    high: float | None
    n: int
    method: str

    def plus_minus(self) -> float | None:
        return None if self.low is None else (self.high - self.low) / 2

    def text(self, fmt: str = "{:.2%}") -> str:
        if self.low is None:
            return fmt.format(self.value)
        return f"{fmt.format(self.value)} [{fmt.format(self.low)}, {fmt.format(self.high)}]"


def wilson(correct: int, n: int, confidence: float = 0.95) -> Interval:
    """The Wilson score interval of a proportion `correct` / `n`."""
    if n <= 0:
        raise ValueError("no test items: an interval needs at least one")
    ci = stats.binomtest(int(correct), int(n)).proportion_ci(confidence, method="wilson")
    return Interval(correct / n, float(ci.low), float(ci.high), n, "Wilson, over test images")


def mean_interval(values, confidence: float = 0.95, bounds=(0.0, 1.0)) -> Interval:
    """Mean of `values` (one per seed) and its Student-t interval, clipped to `bounds` (a
    score's range: accuracy and mIoU lie in [0, 1]); none for a single value."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        raise ValueError("no values to average")
    mean = float(x.mean())
    if len(x) < 2:
        return Interval(mean, None, None, 1, "one seed: no interval over seeds")
    half = float(stats.t.ppf((1 + confidence) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Interval(mean, low, high, len(x), f"Student t over {len(x)} seeds")


# Segmentation: per test image, per class, true positives, predicted pixels and actual pixels.
def miou(tp: np.ndarray, predicted: np.ndarray, actual: np.ndarray) -> float:
    """Mean IoU of counts summed over images ((images, classes) arrays); classes neither
    present nor predicted have none and are left out of the mean."""
    t, p, a = tp.sum(0), predicted.sum(0), actual.sum(0)
    union = p + a - t
    defined = union > 0
    return float((t[defined] / union[defined]).mean()) if defined.any() else 0.0


def _resampled_miou(tp, predicted, actual, picks: np.ndarray) -> np.ndarray:
    # (B, images) indices -> (B,) mIoU, summed over each resample's images
    t, p, a = tp[picks].sum(1), predicted[picks].sum(1), actual[picks].sum(1)
    union = p + a - t
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, t / np.maximum(union, 1), np.nan)
    return np.nanmean(iou, axis=1)


def _picks(n: int, seed: int, rounds: int = BOOTSTRAP) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(rounds, n))


def bootstrap_miou(tp, predicted, actual, confidence: float = 0.95, seed: int = 0) -> Interval:
    tp, predicted, actual = (np.asarray(v, dtype=np.float64) for v in (tp, predicted, actual))
    n = len(tp)
    if n < 2:
        raise ValueError(f"{n} test image(s): a bootstrap interval needs at least 2")
    scores = _resampled_miou(tp, predicted, actual, _picks(n, seed))
    lo, hi = np.nanquantile(scores, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(miou(tp, predicted, actual), float(lo), float(hi), n,
                    f"bootstrap over {n} test images")  # fmt: skip


@dataclass(frozen=True)
class PairTest:
    p: float
    method: str
    difference: float  # row a minus row b, in the score's unit
    detail: str = ""  # e.g. McNemar's discordant counts

    @property
    def differs(self) -> bool:
        return self.p < ALPHA


def mcnemar(a_correct, b_correct) -> PairTest:
    """Exact McNemar test on the same test images: of the images exactly one run gets right,
    is each run as likely to be that one? (A two-sided binomial test at 1/2.)"""
    a, b = np.asarray(a_correct, bool), np.asarray(b_correct, bool)
    if a.shape != b.shape:
        raise ValueError(f"the runs were tested on different images ({len(a)} vs {len(b)})")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = 1.0 if only_a + only_b == 0 else float(stats.binomtest(only_a, only_a + only_b).pvalue)
    return PairTest(p, "exact McNemar over test images", float(a.mean() - b.mean()),
                    f"{only_a} images only the first gets right, {only_b} only the second")  # fmt: skip


def paired_t(a_values, b_values, over: str) -> PairTest:
    """Paired t-test (seed i with seed i, or episode i with episode i)."""
    a, b = np.asarray(a_values, np.float64), np.asarray(b_values, np.float64)
    if a.shape != b.shape or len(a) < 2:
        raise ValueError(f"a paired test needs the same {over}, at least 2 ({len(a)} vs {len(b)})")
    d = a - b
    p = 1.0 if np.allclose(d, d[0]) and d[0] == 0 else float(stats.ttest_rel(a, b).pvalue)
    if not np.isfinite(p):  # every difference the same, not zero: no spread to test against
        p = 0.0
    return PairTest(p, f"paired t over {len(a)} {over}", float(d.mean()))


def paired_bootstrap_miou(a_counts, b_counts, seed: int = 0) -> PairTest:
    """Paired bootstrap over the same test images: how often does resampling the images turn
    the sign of the mIoU difference? (Two-sided.)"""
    a = [np.asarray(v, np.float64) for v in a_counts]
    b = [np.asarray(v, np.float64) for v in b_counts]
    n = len(a[0])
    if len(b[0]) != n:
        raise ValueError(f"the runs were tested on different images ({n} vs {len(b[0])})")
    picks = _picks(n, seed)
    diffs = _resampled_miou(*a, picks) - _resampled_miou(*b, picks)
    observed = miou(*a) - miou(*b)
    diffs = diffs[np.isfinite(diffs)]
    share = min((diffs <= 0).mean(), (diffs >= 0).mean()) if len(diffs) else 0.5
    p = min(1.0, 2 * share + 1 / (len(diffs) + 1))
    return PairTest(p, f"paired bootstrap over {n} test images", observed)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted
