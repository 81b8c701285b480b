"""engine.analysis.comparison: row intervals and paired verdicts of a comparison group, from
outcomes written straight into run folders (no training)."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from engine.analysis import comparison, stats
from engine.store.groups import Group, Row, load_group, save_group
from engine.store.outcomes import Outcomes, read_outcomes, write_outcomes
from engine.store.runs import RunError

Z = sps.norm.ppf(0.975)
IDS = list(range(100, 120))  # 20 test images


def acc(correct, ids=None):
    return Outcomes(
        "accuracy", ids=list(ids if ids is not None else IDS[: len(correct)]), correct=list(correct)
    )


def right(k, n=20):
    """n items, the first k right."""
    return [1] * k + [0] * (n - k)


def make_run(runs_dir, run_id, outcomes=None):
    (runs_dir / run_id).mkdir(parents=True, exist_ok=True)
    if outcomes is not None:
        write_outcomes(runs_dir / run_id, outcomes)
    return run_id


def group_of(runs_dir, *rows):
    """Saved to and loaded back from the runs folder, as the pages would."""
    save_group(Group("g1", "test group", "custom", 1.0, list(rows)), runs_dir)
    return load_group("g1", runs_dir)


def seeded_row(runs_dir, label, outcomes_per_seed):
    ids = [make_run(runs_dir, f"{label}-s{i}", o) for i, o in enumerate(outcomes_per_seed)]
    return Row(label, ids[0], "", ids[1:])


def stats_of(runs_dir, *rows):
    return comparison.row_stats(group_of(runs_dir, *rows), runs_dir)


# --- row_stats ------------------------------------------------------------------------------
def test_one_seed_accuracy_row_has_a_wilson_interval(tmp_path):
    (rs,) = stats_of(tmp_path, seeded_row(tmp_path, "A", [acc(right(15))]))
    assert rs.kind == "accuracy"
    assert rs.n == 1
    assert rs.values == [pytest.approx(0.75)]
    # the closed-form Wilson interval of 15 / 20
    p, n = 0.75, 20
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    assert rs.interval.value == pytest.approx(0.75)
    assert rs.interval.low == pytest.approx(centre - half, abs=1e-9)
    assert rs.interval.high == pytest.approx(centre + half, abs=1e-9)
    assert "Wilson" in rs.interval.method
    assert rs.problem == ""


def test_three_seed_row_has_a_student_t_interval_over_seeds(tmp_path):
    row = seeded_row(tmp_path, "A", [acc(right(15)), acc(right(17)), acc(right(16))])
    (rs,) = stats_of(tmp_path, row)
    assert rs.values == pytest.approx([0.75, 0.85, 0.80])
    # mean 0.8, sample sd 0.05: half width t_{0.975, 2} * 0.05 / sqrt(3)
    half = sps.t.ppf(0.975, 2) * 0.05 / math.sqrt(3)
    assert rs.interval.value == pytest.approx(0.8)
    assert rs.interval.low == pytest.approx(0.8 - half)
    assert rs.interval.high == pytest.approx(0.8 + half)
    assert rs.interval.n == 3
    assert rs.interval.method == "Student t over 3 seeds"


def test_one_seed_miou_row_has_a_bootstrap_interval(tmp_path):
    o = Outcomes(
        "miou",
        ids=[1, 2, 3, 4],
        tp=[[5, 2], [3, 4], [6, 0], [2, 2]],
        predicted=[[6, 4], [5, 4], [7, 1], [2, 3]],
        actual=[[7, 2], [3, 6], [6, 1], [3, 2]],
    )
    (rs,) = stats_of(tmp_path, seeded_row(tmp_path, "A", [o]))
    assert rs.kind == "miou"
    assert rs.values == [
        pytest.approx(stats.miou(*(np.array(getattr(o, k)) for k in ("tp", "predicted", "actual"))))
    ]
    assert rs.interval.method == "bootstrap over 4 test images"
    assert rs.interval.low <= rs.values[0] <= rs.interval.high


def test_one_seed_episodes_row_has_a_t_interval_over_episodes(tmp_path):
    o = Outcomes("episodes", episode_acc=[0.6, 0.8, 0.7, 0.9], shots=5)
    (rs,) = stats_of(tmp_path, seeded_row(tmp_path, "A", [o]))
    half = sps.t.ppf(0.975, 3) * np.std([0.6, 0.8, 0.7, 0.9], ddof=1) / 2
    assert rs.interval.value == pytest.approx(0.75)
    assert rs.interval.plus_minus() == pytest.approx(half)
    assert rs.interval.method == "Student t over 4 episodes"


def test_a_row_without_outcomes_has_no_finished_run_yet(tmp_path):
    run_id = make_run(tmp_path, "A-s0")  # the run folder exists, its test does not yet
    (rs,) = stats_of(tmp_path, Row("A", run_id))
    assert rs.kind is None
    assert rs.interval is None
    assert rs.problem == "no finished run yet"
    assert comparison.interval_text(rs) == "no finished run yet"


def test_a_placeholder_row_shows_its_note(tmp_path):
    (rs,) = stats_of(tmp_path, Row("SSL", None, "needs a BYOL backbone"))
    assert rs.interval is None
    assert rs.problem == "needs a BYOL backbone"


def test_a_damaged_outcomes_file_is_the_rows_problem(tmp_path):
    run_id = make_run(tmp_path, "A-s0")
    (tmp_path / run_id / "test_outcomes.json").write_text(
        '{"kind": "accuracy", "ids": [1], "correct": [2]}'
    )
    with pytest.raises(RunError) as e:
        read_outcomes(tmp_path / run_id)
    (rs,) = stats_of(tmp_path, Row("A", run_id))  # does not raise
    assert rs.problem == str(e.value)
    assert "test_outcomes.json" in rs.problem
    assert rs.interval is None
    assert comparison.interval_text(rs) == str(e.value)


def test_a_damaged_seed_leaves_the_other_seeds(tmp_path):
    row = seeded_row(tmp_path, "A", [acc(right(15)), None, acc(right(17))])
    (tmp_path / row.repeats[0] / "test_outcomes.json").write_text("not json")
    (rs,) = stats_of(tmp_path, row)
    assert rs.values == pytest.approx([0.75, 0.85])
    assert rs.interval.method == "Student t over 2 seeds"
    assert "damaged" in rs.problem


# --- compare_rows ---------------------------------------------------------------------------
def test_rows_on_different_test_items_are_not_compared(tmp_path):
    a = seeded_row(tmp_path, "A", [acc(right(15), ids=range(20))])
    b = seeded_row(tmp_path, "B", [acc(right(15), ids=range(1, 21))])
    ra, rb = stats_of(tmp_path, a, b)
    v = comparison.compare_rows(ra, rb)
    assert v.test is None
    assert "different test items" in v.problem
    assert v.verdict.startswith("not compared")


def test_rows_of_different_kinds_are_not_compared(tmp_path):
    a = seeded_row(tmp_path, "A", [acc(right(15))])
    b = seeded_row(tmp_path, "B", [Outcomes("episodes", episode_acc=[0.5, 0.6], shots=1)])
    v = comparison.compare_rows(*stats_of(tmp_path, a, b))
    assert v.test is None
    assert "different test items" in v.problem


def test_a_row_without_runs_is_not_compared(tmp_path):
    a = seeded_row(tmp_path, "A", [acc(right(15))])
    rows = stats_of(tmp_path, a, Row("B", None, "later"))
    v = comparison.compare_rows(*rows)
    assert v.test is None
    assert comparison.pair_verdicts(rows) == []  # no pair has results on both sides


def test_three_seeds_a_row_use_a_paired_t_over_seeds(tmp_path):
    a = seeded_row(tmp_path, "A", [acc(right(15)), acc(right(17)), acc(right(16))])
    b = seeded_row(tmp_path, "B", [acc(right(12)), acc(right(16)), acc(right(11))])
    ra, rb = stats_of(tmp_path, a, b)
    v = comparison.compare_rows(ra, rb)
    assert v.test.method == "paired t over 3 seeds"
    expected = sps.ttest_rel([0.75, 0.85, 0.80], [0.60, 0.80, 0.55]).pvalue
    assert v.test.p == pytest.approx(expected)
    assert v.test.difference == pytest.approx((0.15 + 0.05 + 0.25) / 3)


def test_one_seed_uses_mcnemar_and_finds_a_clear_difference(tmp_path):
    ids = range(200)
    a = seeded_row(tmp_path, "A", [acc([1] * 200, ids)])
    b = seeded_row(tmp_path, "B", [acc([1, 0] * 100, ids)])
    ra, rb = stats_of(tmp_path, a, b)
    v = comparison.compare_rows(ra, rb)
    assert v.test.method == "exact McNemar over test images"
    # 100 images only A gets right, none only B: two-sided binomial 2 * 0.5**100
    assert v.test.p == pytest.approx(2 * 0.5**100)
    assert v.test.difference == pytest.approx(0.5)
    assert v.test.differs
    (pv,) = comparison.pair_verdicts([ra, rb])
    assert pv.verdict == "differs (p < 0.001): A higher"
    # and the other way round: B is the lower one
    (pv,) = comparison.pair_verdicts([rb, ra])
    assert pv.verdict == "differs (p < 0.001): A higher"


def test_identical_outcomes_are_within_noise(tmp_path):
    a = seeded_row(tmp_path, "A", [acc(right(15))])
    b = seeded_row(tmp_path, "B", [acc(right(15))])
    (pv,) = comparison.pair_verdicts(stats_of(tmp_path, a, b))
    assert pv.test.p == 1.0
    assert pv.p_adjusted == 1.0
    assert pv.verdict == "within noise (p = 1)"


def test_two_seeds_in_opposite_directions_are_within_noise(tmp_path):
    # seed 0: A right on all 20, B on none; seed 1: the reverse. Each seed alone differs.
    a = seeded_row(tmp_path, "A", [acc([1] * 20), acc([0] * 20)])
    b = seeded_row(tmp_path, "B", [acc([0] * 20), acc([1] * 20)])
    ra, rb = stats_of(tmp_path, a, b)
    assert stats.mcnemar([1] * 20, [0] * 20).differs
    v = comparison.compare_rows(ra, rb)
    assert v.test.p == 1.0
    assert "each of 2 seeds" in v.test.method
    (pv,) = comparison.pair_verdicts([ra, rb])
    assert pv.verdict.startswith("within noise")


def test_two_seeds_in_the_same_direction_report_the_larger_p(tmp_path):
    a = seeded_row(tmp_path, "A", [acc([1] * 20), acc([1] * 20)])
    b = seeded_row(tmp_path, "B", [acc(right(10)), acc(right(14))])
    ra, rb = stats_of(tmp_path, a, b)
    v = comparison.compare_rows(ra, rb)
    # McNemar of each seed: 10 and 6 discordant images, all for A
    worst = max(2 * 0.5**10, 2 * 0.5**6)
    assert v.test.p == pytest.approx(worst)
    assert v.test.difference == pytest.approx((0.5 + 0.3) / 2)
    assert "each of 2 seeds" in v.test.method


def test_seeds_stay_paired_when_a_middle_seed_is_unfinished(tmp_path):
    # B's seeds score 0.2, 0.5, 0.8, 0.4; A's 0.3, (unfinished), 0.9, 0.6. Seed by seed,
    # where both finished: differences 0.1, 0.1, 0.2 (mean 0.4 / 3). Pairing A's finished
    # seeds with B's first three instead would give 0.1, 0.4, -0.2 (mean 0.1).
    b = seeded_row(tmp_path, "B", [acc(right(k, 10), range(10)) for k in (2, 5, 8, 4)])
    a = seeded_row(
        tmp_path, "A", [acc(right(k, 10), range(10)) if k else None for k in (3, 0, 9, 6)]
    )
    ra, rb = stats_of(tmp_path, a, b)
    assert ra.n == 3 and rb.n == 4
    v = comparison.compare_rows(ra, rb)
    assert v.test.method == "paired t over 3 seeds"
    assert v.test.difference == pytest.approx(0.4 / 3)
    assert v.test.p == pytest.approx(sps.ttest_rel([0.3, 0.9, 0.6], [0.2, 0.8, 0.4]).pvalue)


def test_a_later_seed_on_other_items_is_not_compared_rather_than_raising(tmp_path):
    a = seeded_row(tmp_path, "A", [acc(right(15)), acc(right(15))])
    b = seeded_row(tmp_path, "B", [acc(right(15)), acc(right(8, 10))])
    v = comparison.compare_rows(*stats_of(tmp_path, a, b))
    assert v.test is None
    assert "different test items" in v.problem


def test_rows_with_no_seed_finished_in_both_are_not_compared(tmp_path):
    a = seeded_row(tmp_path, "A", [acc(right(15)), None])
    b = seeded_row(tmp_path, "B", [None, acc(right(12))])
    ra, rb = stats_of(tmp_path, a, b)
    assert ra.n == 1 and rb.n == 1
    v = comparison.compare_rows(ra, rb)
    assert v.test is None
    assert v.verdict.startswith("not compared")


# --- pair_verdicts --------------------------------------------------------------------------
def test_pair_verdicts_are_holm_adjusted(tmp_path):
    ids = range(60)
    rows = stats_of(
        tmp_path,
        seeded_row(tmp_path, "A", [acc([1] * 60, ids)]),
        seeded_row(tmp_path, "B", [acc(right(50, 60), ids)]),
        seeded_row(tmp_path, "C", [acc(right(40, 60), ids)]),
    )
    pairs = comparison.pair_verdicts(rows)
    assert [(v.a, v.b) for v in pairs] == [("A", "B"), ("A", "C"), ("B", "C")]
    raw = [v.test.p for v in pairs]
    # McNemar by hand: A-B 10 discordant, A-C 20, B-C 10 (all one way)
    assert raw == pytest.approx([2 * 0.5**10, 2 * 0.5**20, 2 * 0.5**10])
    assert all(v.p_adjusted >= v.test.p for v in pairs)
    smallest = min(pairs, key=lambda v: v.test.p)
    assert smallest.p_adjusted == pytest.approx(min(1.0, 3 * smallest.test.p))
    assert [v.p_adjusted for v in pairs] == pytest.approx(stats.holm(raw))


def test_holm_can_turn_a_raw_difference_into_noise(tmp_path):
    # A right on all 6 images, B and C on none: A-B and A-C each have 6 discordant images
    # (McNemar p = 2 * 0.5**6 = 0.03125 < 0.05), B-C none (p = 1). Holm over 3 pairs:
    # 3 * 0.03125 = 0.09375, then max(0.09375, 2 * 0.03125), then 1.
    ids = range(6)
    rows = stats_of(
        tmp_path,
        seeded_row(tmp_path, "A", [acc([1] * 6, ids)]),
        seeded_row(tmp_path, "B", [acc([0] * 6, ids)]),
        seeded_row(tmp_path, "C", [acc([0] * 6, ids)]),
    )
    ab, ac, bc = comparison.pair_verdicts(rows)
    assert ab.test.differs and ac.test.differs
    assert [ab.p_adjusted, ac.p_adjusted, bc.p_adjusted] == pytest.approx([0.09375, 0.09375, 1.0])
    assert ab.verdict == "within noise (p = 0.094)"
    assert bc.verdict == "within noise (p = 1)"


def test_pairs_not_compared_are_left_out_of_holm(tmp_path):
    ids = range(5)
    rows = stats_of(
        tmp_path,
        seeded_row(tmp_path, "A", [acc([1] * 5, ids)]),
        seeded_row(tmp_path, "B", [acc([0] * 5, ids)]),
        seeded_row(tmp_path, "C", [Outcomes("episodes", episode_acc=[0.5, 0.6], shots=1)]),
    )
    pairs = comparison.pair_verdicts(rows)
    tested = [v for v in pairs if v.test is not None]
    assert len(tested) == 1  # C is on other items: not compared, not counted by Holm
    assert tested[0].p_adjusted == pytest.approx(2 * 0.5**5)  # m = 1: unadjusted
    assert all(v.p_adjusted is None for v in pairs if v.test is None)
    assert sum(v.test is None for v in pairs) == 2


# --- interval_text --------------------------------------------------------------------------
def test_interval_text_of_three_seeds(tmp_path):
    row = seeded_row(tmp_path, "A", [acc(right(15)), acc(right(17)), acc(right(16))])
    (rs,) = stats_of(tmp_path, row)
    half = sps.t.ppf(0.975, 2) * 0.05 / math.sqrt(3)  # mean 0.8, sd 0.05 over 3 seeds
    assert comparison.interval_text(rs) == f"80.00% ± {half * 100:.2f} points (3 seeds)"


def test_interval_text_of_one_seed(tmp_path):
    (rs,) = stats_of(tmp_path, seeded_row(tmp_path, "A", [acc(right(15))]))
    iv = stats.wilson(15, 20)
    text = comparison.interval_text(rs)
    assert text == f"75.00% [{iv.low:.2%}, {iv.high:.2%}] (Wilson, over test images)"
    assert text.startswith("75.00% [")


def test_interval_text_of_an_miou_row_is_not_a_percentage(tmp_path):
    def seg(tp_second_image):
        return Outcomes(
            "miou",
            ids=[1, 2],
            tp=[[4, 3], tp_second_image],
            predicted=[[5, 4], [6, 3]],
            actual=[[6, 4], [6, 3]],
        )

    (rs,) = stats_of(tmp_path, seeded_row(tmp_path, "A", [seg([5, 2]), seg([4, 2])]))
    # seed 0: class 0 9 / (11 + 12 - 9), class 1 5 / (7 + 7 - 5); seed 1: class 0 8 / 15
    first = (9 / 14 + 5 / 9) / 2
    second = (8 / 15 + 5 / 9) / 2
    assert rs.values == pytest.approx([first, second])
    half = sps.t.ppf(0.975, 1) * np.std([first, second], ddof=1) / math.sqrt(2)
    assert (first + second) / 2 - half > 0  # not clipped at 0 or 1
    text = comparison.interval_text(rs)
    assert "%" not in text
    assert text == f"{(first + second) / 2:.4f} ± {half:.4f} (2 seeds)"


def test_a_seed_interval_is_clipped_to_the_score_range(tmp_path):
    row = seeded_row(tmp_path, "A", [acc(right(20)), acc(right(19)), acc(right(20))])
    (rs,) = stats_of(tmp_path, row)
    # mean 59/60, sd 0.05 / sqrt(3): the t interval's top lies above 100%
    mean = 59 / 60
    half = sps.t.ppf(0.975, 2) * float(np.std([1, 0.95, 1], ddof=1)) / math.sqrt(3)
    assert mean + half > 1
    assert rs.interval.high == pytest.approx(1.0)
    assert rs.interval.low == pytest.approx(mean - half)
    assert comparison.interval_text(rs) == f"{mean:.2%} [{mean - half:.2%}, 100.00%] (3 seeds)"
