"""The Long tail page: the class counts, many / medium / few accuracy, accuracy per class
against its training images, two confusion matrices side by side, the drift to the head."""

import pytest

from engine.config import DataConfig, RunConfig
from engine.execution import comparisons
from engine.store import groups
from tests.support.helpers import plotly_values
from tests.support.pages import page, private_copy, train_group


@pytest.fixture(scope="session")
def long_tail_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("longtail-template") / "runs"
    base = RunConfig(data=DataConfig(image_size=16, imbalance_ratio=50), epochs=2,
                     batch_size=32, device="cpu", snapshot_size=20)  # fmt: skip
    return train_group(root, "long-tail", base)


@pytest.fixture
def comparison(runs_dir, long_tail_template):
    private_copy(runs_dir, long_tail_template[0])
    return runs_dir, long_tail_template[1]


def _charts(at) -> dict[str, dict]:
    import json

    out = {}
    for c in at.get("plotly_chart"):
        spec = json.loads(c.proto.spec)
        out[spec["layout"]["title"]["text"]] = spec
    return out


def test_the_page_draws_every_view_of_a_finished_comparison(comparison):
    at = page("longtail").run()
    assert not at.exception and not at.error
    charts = _charts(at)
    counts = list(plotly_values(charts["Training images per class (sorted)"]["data"][0]["y"]))
    assert counts == sorted(counts, reverse=True) and counts[0] >= 40 * counts[-1]
    table = next(d.value for d in at.dataframe if "loss" in d.value.columns)
    assert list(table["loss"]) == ["cross-entropy", "Balanced Softmax",
                                   "class-weighted cross-entropy"]  # fmt: skip
    assert any(c.startswith("few (") for c in table.columns)
    per_class = charts["Test accuracy per class against its training images"]["data"]
    assert len(per_class) == 3 and all(len(plotly_values(t["x"])) == 10 for t in per_class)
    heatmaps = [t for t, spec in charts.items() if spec["data"][0]["type"] == "heatmap"]
    assert heatmaps == ["cross-entropy", "Balanced Softmax"]
    drift = next(s for t, s in charts.items() if t.startswith("Drift to the head"))
    assert len(drift["data"]) == 3


def test_the_thresholds_move_classes_between_groups(comparison):
    at = page("longtail").run()
    before = next(d.value for d in at.dataframe if "loss" in d.value.columns).columns
    at.slider[0].set_value(5).run()  # many-shot: more than 5 images
    after = next(d.value for d in at.dataframe if "loss" in d.value.columns).columns
    assert list(before) != list(after) and not at.exception


def test_the_smallest_thresholds_do_not_break_the_page(comparison):
    at = page("longtail").run()
    at.slider[0].set_value(2).run()  # many-shot: more than 2; few-shot then in [1, 2]
    assert not at.exception
    assert at.slider[1].max == 2


def test_without_a_comparison_the_page_says_how_to_start_one(runs_dir):
    at = page("longtail").run()
    assert not at.exception
    assert any("No long-tail comparison yet" in i.value for i in at.info)


def test_the_form_refuses_a_balanced_split_and_makes_nothing(runs_dir, monkeypatch):
    monkeypatch.setattr(comparisons, "launch_group", lambda *a, **k: pytest.fail("launched"))
    at = page("longtail").run()
    at.number_input[0].set_value(1.0)  # ρ = 1: no long tail
    [start] = [b for b in at.button if b.label.startswith("▶ Train")]
    start.click().run()
    assert any("needs a long-tailed training split" in e.value for e in at.error)
    assert groups.list_groups(runs_dir) == []
