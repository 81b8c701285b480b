"""The embeddings scatter (issue 12): every point drawn in WebGL, no down-sampling, and the
hover text only where it says something (misclassified points)."""

from __future__ import annotations

import numpy as np

from dashboard.embedding_views import figure


def _snapshot(n: int, classes: int, seed: int):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    wrong = rng.random(n) < 0.1
    preds = np.where(wrong, (labels + rng.integers(1, classes, n)) % classes, labels)
    return {"labels": labels, "predictions": preds, "sample_ids": np.arange(n) + 1000}


def test_fifty_thousand_points_are_all_drawn_in_webgl_with_text_only_on_mistakes():
    n, classes = 50_000, 10
    names = [f"class {c}" for c in range(classes)]
    embs = {e: _snapshot(n, classes, e) for e in (1, 2)}
    layouts = {e: np.random.default_rng(e).normal(size=(n, 2)) for e in (1, 2)}
    fig = figure(layouts, embs, 2, names, "true label", selected=7)
    points = [t for t in fig.data if t.name != "selected"]
    assert {t.type for t in fig.data} == {"scattergl"}
    assert sum(len(t.x) for t in points) == n  # no down-sampling
    for frame in fig.frames:
        assert sum(len(t.x) for t in frame.data if t.name != "selected") == n
    emb = embs[2]
    rows = np.concatenate([np.asarray(t.customdata)[:, 0] for t in points])
    assert sorted(rows.tolist()) == list(range(n))  # each point once, with its row
    mistakes = [t for t in points if t.marker.symbol == "x"]
    assert sum(len(t.x) for t in mistakes) == int((emb["labels"] != emb["predictions"]).sum())
    for t in mistakes:
        first = int(np.asarray(t.customdata)[0, 0])
        true, pred = names[emb["labels"][first]], names[emb["predictions"][first]]
        assert t.text[0] == f"true {true} · predicted {pred}"
        assert len(t.text) == len(t.x)
    assert all(t.text is None for t in points if t.marker.symbol == "circle")
    assert [t.name for t in points if t.showlegend] == names  # one legend entry per class


def test_a_brushed_selection_shows_its_composition_grid_and_csv(finished_run):
    from pathlib import Path

    from tests.support.pages import page

    at = page("embeddings")
    at.session_state[f"brushed:{Path(finished_run).name}"] = [0, 1, 2, 5]  # a box's points
    at.run()
    assert not at.exception
    assert any(c.value.startswith("4 images selected") for c in at.caption)
    [table] = [d.value for d in at.dataframe if "true label" in d.value.columns]
    assert table["true label"].sum() == 4 and table["predicted"].sum() == 4
    assert at.get("download_button")  # the selection as CSV


def test_selection_rows_and_csv():
    from dashboard.embedding_views import selection_csv, selection_rows

    emb = {"labels": np.array([0, 1, 1, 2]), "predictions": np.array([0, 2, 1, 2]),
           "sample_ids": np.array([10, 11, 12, 13]),
           "features": np.array([[0.0], [1.0], [1.1], [5.0]])}  # fmt: skip
    assert selection_rows("brushed", emb, [3, 1, 1], 0, 0, 1).tolist() == [1, 3]
    assert selection_rows("label", emb, [], 0, 1, 1).tolist() == [1, 2]
    assert selection_rows("misclassified", emb, [], 0, 0, 1).tolist() == [1]
    assert selection_rows("neighbours", emb, [], 1, 0, 1).tolist() == [1, 2]
    csv = selection_csv(emb, np.array([1]), ["a", "b", "c"]).decode()
    assert csv == "sample_id,label,prediction\n11,b,c\n"


def test_an_empty_selection_says_how_to_make_one(finished_run):
    from tests.support.pages import page

    at = page("embeddings").run()  # nothing brushed in the scatter yet
    at.radio(key=f"how:{finished_run.name}").set_value("brushed").run()
    assert not at.exception
    assert any("The selection is empty" in i.value for i in at.info)


def test_trajectories_follow_each_point_and_list_the_movers():
    from dashboard.embedding_views import movers, trajectories_figure

    layouts = {1: np.zeros((4, 2)), 2: np.array([[0, 0], [3, 4], [1, 0], [0, 0]], float)}
    emb = {"labels": np.array([0, 1, 1, 0]), "predictions": np.array([0, 0, 1, 0]),
           "sample_ids": np.array([10, 11, 12, 13])}  # fmt: skip
    embs = {1: emb, 2: {**emb, "predictions": np.array([0, 1, 1, 0])}}
    table = movers(layouts, embs, np.array([0, 1, 2]), ["a", "b"], 1, 2)
    assert table["sample"].tolist() == [11, 12, 10]  # moved 5, 1, 0
    assert table["predicted at 1"].tolist()[0] == "a" and table["predicted at 2"].tolist()[0] == "b"
    fig = trajectories_figure(layouts, embs, np.array([1, 2]), ["a", "b"])
    line = next(t for t in fig.data if t.mode == "lines")
    assert list(line.x) == [0.0, 3.0, None, 0.0, 1.0, None]  # each point: epoch 1, then 2


def test_snapshots_of_different_sizes_are_said_not_followed():
    from streamlit.testing.v1 import AppTest

    def page():
        import numpy as np

        from dashboard.embedding_views import trajectories_panel

        embs = {1: {"labels": np.zeros(3, int)}, 2: {"labels": np.zeros(4, int)}}
        layouts = {1: np.zeros((3, 2)), 2: np.zeros((4, 2))}
        trajectories_panel(layouts, embs, np.array([0]), ["a"], key="t")

    at = AppTest.from_function(page).run()
    assert not at.exception
    assert any("different numbers of points" in w.value for w in at.warning)
