"""AppTest tests of the Dynamic filters page on a finished dynamic-vs-static comparison."""

from __future__ import annotations

import json

import pytest

from engine.config import DynamicFilterConfig
from engine.execution import executor
from engine.store import runs
from tests.support.helpers import plotly_values
from tests.support.pages import page, private_copy, train_group


@pytest.fixture(scope="session")
def dynamic_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("dynamic-template") / "runs"
    base = DynamicFilterConfig(epochs=1, batch_size=128, snapshot_size=50)
    return train_group(root, "dynamic-vs-static", base, include_frozen=False)


@pytest.fixture
def comparison(runs_dir, dynamic_template):
    private_copy(runs_dir, dynamic_template[0])
    return runs_dir, dynamic_template[1]


def test_without_runs_the_page_says_how_to_start(runs_dir):
    at = page("dynamic").run()
    assert not at.exception
    assert any("dynamic-vs-static" in i.value for i in at.info)


def test_response_maps_scores_and_the_static_comparison(comparison):
    runs_dir, group = comparison
    at = page("dynamic").run()
    assert not at.exception and not at.error
    dynamic_id, static_id = (r.run_id for r in group.rows)
    assert next(s for s in at.selectbox if s.label == "Dynamic run").value == dynamic_id
    assert next(s for s in at.selectbox if s.label == "Static run to compare").value == static_id
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    scores, maps = charts[0], charts[1]
    assert len(plotly_values(scores["data"][0]["y"])) == 10
    heatmaps = [t for t in maps["data"] if t["type"] == "heatmap"]
    assert len(heatmaps) == 10
    assert len({(t["zmin"], t["zmax"]) for t in heatmaps}) == 1  # one shared colour scale
    assert sum(bool(t.get("showscale")) for t in heatmaps) == 1
    titles = [a["text"] for a in maps["layout"]["annotations"]]
    assert sum("(true)" in t or "✓" in t for t in titles) == 1  # the true class is marked
    # the static run's scores and maps, the PCA of embeddings and filters, curves, statistics
    assert len(charts) == 7
    assert "95% interval" in charts[6]["layout"]["title"]["text"]
    pca = charts[4]
    assert [t["text"][0] for t in pca["data"]] == ["0", "0"]  # embeddings and filters, labelled
    assert all(len(plotly_values(t["x"])) == 10 for t in pca["data"])
    curves = charts[5]
    assert {t["legendgroup"] for t in curves["data"]} == {"dynamic filters", "static filters"}


def test_another_test_image_changes_the_maps(comparison):
    at = page("dynamic").run()
    before = plotly_values(json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["y"])
    next(n for n in at.number_input if n.label.startswith("Test image")).set_value(7).run()
    assert not at.exception
    after = plotly_values(json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["y"])
    assert before.shape == after.shape == (10,) and (before != after).any()


def test_a_static_run_on_other_data_is_not_offered(comparison):
    runs_dir, group = comparison
    other = DynamicFilterConfig(dynamic=False, epochs=1, snapshot_size=20)
    other.data.val_fraction = 0.2  # another split: its test images are not the same images
    executor.execute(runs.create_run(other, runs_dir))
    at = page("dynamic").run()
    box = next(s for s in at.selectbox if s.label == "Static run to compare")
    assert box.options == ["none", f"static · {group.rows[1].run_id}"]
