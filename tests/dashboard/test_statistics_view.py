"""The statistics of a comparison on a page (dashboard/components/statistics.py), here on the
Long tail page: each row's score with its interval over seeds, the chart with error bars and
each seed, every pair's verdict; a damaged outcomes file is named, the page stays up."""

import json

import pytest

from engine.config import DataConfig, RunConfig
from engine.store.layout import RunLayout
from tests.support.helpers import plotly_values
from tests.support.pages import page, private_copy, train_group


@pytest.fixture(scope="session")
def repeated_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("repeats-template") / "runs"
    base = RunConfig(data=DataConfig(image_size=16, imbalance_ratio=50), epochs=1,
                     batch_size=64, device="cpu", snapshot_size=20)  # fmt: skip
    return train_group(root, "long-tail", base, repeats=3)


@pytest.fixture
def comparison(runs_dir, repeated_template):
    private_copy(runs_dir, repeated_template[0])
    return runs_dir, repeated_template[1]


def _frame_with(at, column):
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_rows_show_mean_and_interval_over_three_seeds_and_every_pair_a_verdict(comparison):
    at = page("longtail").run()
    assert not at.exception and not at.error
    scores = _frame_with(at, "test accuracy")
    assert list(scores["seeds"]) == [3, 3, 3]
    assert all("(3 seeds)" in text for text in scores["test accuracy"])
    assert all(len(seeds.split(", ")) == 3 for seeds in scores["each seed"])
    pairs = _frame_with(at, "verdict")
    assert len(pairs) == 3  # 3 rows: 3 pairs
    assert all(v.startswith(("differs (p", "within noise (p")) for v in pairs["verdict"])
    assert all("paired t over 3 seeds" in t for t in pairs["test"])
    chart = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                 if "95% interval" in json.loads(c.proto.spec)["layout"]["title"]["text"])  # fmt: skip
    scores = [t for t in chart["data"] if t.get("error_y")]
    seeds = [t for t in chart["data"] if not t.get("error_y")]
    assert len(scores) == 3 and all(s["error_y"].get("array") for s in scores)
    assert len(seeds) == 3  # one trace of circles per row, a circle per seed
    assert all(len(plotly_values(s["y"])) == 3 for s in seeds)


def test_a_damaged_outcomes_file_is_named_and_the_page_stays_up(comparison):
    runs_dir, group = comparison
    damaged = RunLayout(runs_dir / group.rows[1].run_id).test_outcomes
    damaged.write_text('{"kind": "accuracy", "ids": [1, 2], "correct": [1]}')
    at = page("longtail").run()
    assert not at.exception
    scores = _frame_with(at, "test accuracy")
    assert list(scores["seeds"]) == [3, 2, 3]  # the other two seeds of that row still count
    assert str(damaged) in scores["note"][1] and "damaged" in scores["note"][1]
    assert list(scores["note"][[0, 2]]) == ["", ""]
