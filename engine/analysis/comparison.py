"""The statistics of a comparison group: each row's score with its 95% interval, and every
pair of rows tested on the same test items ("differs (p = ...)" or "within noise").

A row of one run gets the interval of its own test (Wilson over images for accuracy, a
bootstrap over images for mIoU, a t interval over the fixed episodes for few-shot); a row of
N >= 2 seeds gets the mean and a Student-t interval over its seeds. Two rows are compared
paired: over seeds when both have three or more (seed i against seed i), else item by item
for each seed they share (exact McNemar, paired bootstrap, paired t over episodes), a pair
then "differs" only when every shared seed says so in the same direction (the largest p is
reported). The p-values of a table are Holm-adjusted over its pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

from engine.analysis import stats
from engine.store import runs
from engine.store.groups import LR_MARK, Group
from engine.store.outcomes import Outcomes, read_outcomes

SCORE_NAMES = {"accuracy": "test accuracy", "miou": "test mIoU", "episodes": "test accuracy"}


@dataclass
class RowStats:
    label: str
    kind: str | None  # the outcomes' kind; None: no finished run yet
    values: list[float] = field(default_factory=list)  # per finished seed, in seed order
    outcomes: list[Outcomes] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)  # which seed (0-based) each value is
    val_values: list[float] = field(default_factory=list)  # best validation score, per seed
    interval: stats.Interval | None = None
    problem: str = ""  # why there is no interval

    @property
    def n(self) -> int:
        return len(self.values)


@dataclass
class PairVerdict:
    a: str
    b: str
    test: stats.PairTest | None
    p_adjusted: float | None = None
    problem: str = ""

    @property
    def verdict(self) -> str:
        if self.test is None:
            return f"not compared: {self.problem}"
        p = self.test.p if self.p_adjusted is None else self.p_adjusted  # alone: unadjusted
        if p < stats.ALPHA:
            better = self.a if self.test.difference > 0 else self.b
            return f"differs ({_p(p)}): {better} higher"
        return f"within noise ({_p(p)})"


def _p(p: float | None) -> str:
    """'p = 0.032', 'p < 0.001'."""
    return "p = –" if p is None else f"p = {p:.2g}" if p >= 0.001 else "p < 0.001"


def outcome_score(o: Outcomes) -> float:
    if o.kind == "accuracy":
        return float(np.mean(o.correct))
    if o.kind == "miou":
        return stats.miou(
            *(np.asarray(getattr(o, k), float) for k in ("tp", "predicted", "actual"))
        )
    return float(np.mean(o.episode_acc))


def run_interval(o: Outcomes) -> stats.Interval:
    """One run's test score and its 95% interval over its test items."""
    if len(o) == 0:
        raise ValueError("the run was tested on no items")
    if o.kind == "accuracy":
        return stats.wilson(int(np.sum(o.correct)), len(o.correct))
    if o.kind == "miou":
        return stats.bootstrap_miou(o.tp, o.predicted, o.actual)
    iv = stats.mean_interval(o.episode_acc)
    return stats.Interval(iv.value, iv.low, iv.high, iv.n, f"Student t over {iv.n} episodes")


def row_stats(group: Group, runs_dir: Path) -> list[RowStats]:
    """Per row: every finished seed's outcomes, its score and the row's interval."""
    out = []
    for row in group.rows:
        rs = RowStats(row.label, None)
        for seed, rid in enumerate(row.run_ids):
            try:
                o = read_outcomes(runs_dir / rid)
            except runs.RunError as e:
                rs.problem = str(e)
                continue
            if o is not None:
                rs.outcomes.append(o)
                rs.values.append(outcome_score(o))
                rs.seeds.append(seed)
                rs.val_values.append(_best_val(runs_dir / rid))
        if rs.outcomes:
            rs.kind = rs.outcomes[0].kind
            try:
                rs.interval = (stats.mean_interval(rs.values) if rs.n >= 2
                               else run_interval(rs.outcomes[0]))  # fmt: skip
            except ValueError as e:
                rs.problem = str(e)
        elif not rs.problem:
            rs.problem = "no finished run yet" if row.run_ids else (row.note or "no run")
        out.append(rs)
    return out


def _best_val(run_dir: Path) -> float:
    """The run's best validation score (what best.pt was chosen by); NaN when unknown."""
    summary = runs.read_status(run_dir).get("summary")
    summary = summary if isinstance(summary, dict) else {}
    for key in ("best_val_miou", "best_val_acc"):
        v = summary.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
    return float("nan")


def tuned_choice(rows: list[RowStats]) -> list[RowStats]:
    """Rows labelled "<combination> · lr <rate>": per combination, the rate whose runs have
    the best mean validation score (the test never chooses). Other rows stay as they are."""
    best: dict[str, RowStats] = {}
    order: list[str] = []
    for r in rows:
        combo = r.label.split(LR_MARK)[0]
        if combo not in best:
            order.append(combo)
        score = float(np.mean(r.val_values)) if r.val_values else float("-inf")
        kept = best.get(combo)
        kept_score = float(np.mean(kept.val_values)) if kept and kept.val_values else float("-inf")
        if kept is None or score > kept_score:
            best[combo] = r
    return [best[c] for c in order]


def is_tuned(rows: list[RowStats]) -> bool:
    return any(LR_MARK in r.label for r in rows)


def _item_test(a: Outcomes, b: Outcomes) -> stats.PairTest:
    if a.kind == "accuracy":
        return stats.mcnemar(a.correct, b.correct)
    if a.kind == "miou":
        keys = ("tp", "predicted", "actual")
        return stats.paired_bootstrap_miou([getattr(a, k) for k in keys],
                                           [getattr(b, k) for k in keys])  # fmt: skip
    return stats.paired_t(a.episode_acc, b.episode_acc, "test episodes")


def compare_rows(a: RowStats, b: RowStats) -> PairVerdict:
    if not a.outcomes or not b.outcomes:
        return PairVerdict(a.label, b.label, None, problem="a row has no finished run")
    # Seed i of one row against seed i of the other, for the seeds both have finished.
    shared = sorted(set(a.seeds) & set(b.seeds))
    pairs = [(a.outcomes[a.seeds.index(s)], b.outcomes[b.seeds.index(s)]) for s in shared]
    if not pairs:
        return PairVerdict(a.label, b.label, None, problem="no seed finished in both rows")
    if a.kind != b.kind or not all(x.same_items(y) for x, y in pairs):
        return PairVerdict(a.label, b.label, None,
                           problem="the rows were tested on different test items (another "
                           "split, dataset, classes or K): a paired test needs the same")  # fmt: skip
    if len(pairs) >= 3:
        return PairVerdict(
            a.label,
            b.label,
            stats.paired_t(
                [outcome_score(x) for x, _ in pairs], [outcome_score(y) for _, y in pairs], "seeds"
            ),
        )
    tests = [_item_test(x, y) for x, y in pairs]
    same_sign = len({np.sign(t.difference) for t in tests}) == 1
    worst = max(tests, key=lambda t: t.p)
    p = worst.p if same_sign else 1.0
    method = worst.method + (f", each of {len(tests)} seeds" if len(tests) > 1 else "")
    mean_diff = float(np.mean([t.difference for t in tests]))
    return PairVerdict(a.label, b.label, stats.PairTest(p, method, mean_diff, worst.detail))


def pair_verdicts(rows: list[RowStats]) -> list[PairVerdict]:
    """Every pair of rows that both have results, Holm-adjusted over the table."""
    pairs = [compare_rows(a, b) for a, b in combinations(rows, 2) if a.outcomes and b.outcomes]
    tested = [v for v in pairs if v.test is not None]
    for v, p in zip(tested, stats.holm([v.test.p for v in tested]), strict=True):
        v.p_adjusted = p
    return pairs


def interval_text(rs: RowStats) -> str:
    """'97.40% ± 0.61 points (3 seeds)' or '97.40% [95.10%, 98.60%] (Wilson, over test
    images)'."""
    iv = rs.interval
    if iv is None:
        return rs.problem or "–"
    pct = rs.kind != "miou"
    fmt = "{:.2%}" if pct else "{:.4f}"
    if iv.low is None:
        return f"{fmt.format(iv.value)} (one seed)"
    if rs.n >= 2:
        symmetric = math.isclose(iv.high + iv.low, 2 * iv.value, abs_tol=1e-12)
        half = (iv.high - iv.low) / 2 if symmetric else None
        if half is None:  # clipped at 0 or 1: the bounds, not a ±
            return f"{fmt.format(iv.value)} [{fmt.format(iv.low)}, {fmt.format(iv.high)}] ({rs.n} seeds)"
        spread = f"{half * 100:.2f} points" if pct else f"{half:.4f}"
        return f"{fmt.format(iv.value)} ± {spread} ({rs.n} seeds)"
    return f"{fmt.format(iv.value)} [{fmt.format(iv.low)}, {fmt.format(iv.high)}] ({iv.method})"


@dataclass
class GroupStatistics:
    """What the pages, `compare` / `groups` and the HTML report show of a group."""

    kind: str | None  # the outcomes' kind; None: no row has a finished run yet
    rows: list[RowStats]  # as compared: a learning-rate grid's chosen rate per combination
    pairs: list[PairVerdict]
    every_rate: list[RowStats]  # a learning-rate grid: all its rows; else []

    @property
    def score_name(self) -> str:
        return SCORE_NAMES.get(self.kind, "test score")


def group_statistics(group: Group, runs_dir: Path) -> GroupStatistics:
    rows = row_stats(group, runs_dir)
    every = rows if is_tuned(rows) else []
    if every:
        rows = tuned_choice(rows)
    kind = next((r.kind for r in rows if r.kind), None)
    return GroupStatistics(kind, rows, pair_verdicts(rows) if kind else [], every)
