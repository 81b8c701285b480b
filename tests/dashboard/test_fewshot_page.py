"""AppTest tests of the Few-shot page: the episode viewer, the K x distance grid, and
episodes of uploaded images, on tiny runs trained once per session."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from engine.config import DataConfig, FewShotConfig
from engine.data.episodes import load_fewshot
from engine.execution import executor
from engine.experiments.fewshot import evaluation_loader
from engine.store import runs
from tests.support.helpers import plotly_values
from tests.support.pages import page, private_copy, train_group

TINY = dict(data=DataConfig(image_size=28), epochs=1, episodes_per_epoch=3, val_episodes=3,
            test_episodes=8, snapshot_size=40, device="cpu")  # fmt: skip


@pytest.fixture(scope="session")
def fewshot_template(tmp_path_factory):
    """One run tested at K = 1 and 5, and a finished K x distance grid of tiny runs."""
    root = tmp_path_factory.mktemp("fewshot-template") / "runs"
    run_dir = runs.create_run(FewShotConfig(test_shots=[1, 5], **TINY), root)
    executor.execute(run_dir)
    _, group = train_group(root, "fewshot-grid", FewShotConfig(**TINY))
    return root, run_dir.name, group


@pytest.fixture
def trained(runs_dir, fewshot_template):
    root, run_id, group = fewshot_template
    private_copy(runs_dir, root)
    return runs_dir, run_id, group


def charts(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def pick_run(at, run_id):
    next(s for s in at.selectbox if s.label == "Run").set_value(run_id).run()


def test_without_runs_the_page_offers_the_form(runs_dir):
    at = page("fewshot").run()
    assert not at.exception
    assert any("No few-shot run has a checkpoint yet" in i.value for i in at.info)
    labels = [b.label for b in at.button]
    assert "▶ Train this network" in labels and "▶ Train the K × distance grid (9 runs)" in labels


def test_the_episode_viewer_shows_support_queries_and_prototypes(trained):
    runs_dir, run_id, _ = trained
    at = page("fewshot").run()
    pick_run(at, run_id)
    assert not at.exception and not at.error
    assert next(s for s in at.selectbox if s.label == "K (shots)").options == ["1", "5"]
    # the episode is the run's own test episode 0: same classes, same accuracy
    cfg = runs.load_config(runs_dir / run_id)
    splits = load_fewshot(cfg)
    episode, labels, ix = evaluation_loader(cfg, splits, 1, [0.5] * 3, [0.5] * 3, "cpu").get(0)
    names = [splits.classes[int(c)] for c in ix.classes]
    proj = charts(at)[0]
    prototypes = [t for t in proj["data"] if t["name"].endswith(" · prototype")]
    assert [t["name"] for t in prototypes] == [f"{n} · prototype" for n in names]
    queries = [t for t in proj["data"] if t["name"].endswith("queries")]
    assert sum(len(plotly_values(t["x"])) for t in queries) == len(labels)
    lines = next(t for t in proj["data"] if t["name"] == "query → prototype")
    assert len(plotly_values(lines["x"])) == 3 * len(labels)  # one segment per query
    headline = next(m.value for m in at.markdown if "-shot episode 0" in m.value)
    right = int(headline.split("**: ")[1].split("%")[0])
    assert 0 <= right <= 100 and "of 75 queries" in headline  # 5-way x 15 queries
    # support images: one st.image per class, K images each
    support = [el for el in at.get("image") if el.proto.imgs and el.proto.imgs[0].caption in names]
    assert len(support) == len(names)


def test_another_k_and_episode_changes_the_support_set(trained):
    runs_dir, run_id, _ = trained
    at = page("fewshot").run()
    pick_run(at, run_id)
    next(s for s in at.selectbox if s.label == "K (shots)").set_value(5).run()
    at.number_input(key="fs_episode").set_value(3).run()
    assert not at.exception and not at.error
    assert any("5-shot episode 3" in m.value for m in at.markdown)
    support = [el for el in at.get("image") if len(el.proto.imgs) == 5]
    assert len(support) == 5  # five classes of five shots


def test_the_grid_tabulates_accuracy_with_confidence_intervals(trained):
    runs_dir, _, group = trained
    at = page("fewshot").run()
    assert not at.exception and not at.error
    frames = [d.value for d in at.dataframe]
    table = next(f for f in frames if "distance" in f.columns)
    assert list(table["distance"]) == ["euclidean", "cosine", "parametric"]
    assert list(table.columns) == ["distance", "K = 1", "K = 5", "K = 10"]
    summary = runs.read_status(runs_dir / group.rows[0].run_id)["summary"]  # 1-shot euclidean
    r = summary["test_1shot"]
    assert table["K = 1"][0] == f"{r['acc']:.2%} ± {r['ci95']:.2%}"
    chart = next(c for c in charts(at) if "vs K" in c["layout"].get("title", {}).get("text", ""))
    assert [t["name"] for t in chart["data"]] == ["cosine", "euclidean", "parametric"]
    assert all(len(t["error_y"]["array"]) == 3 for t in chart["data"])


def png_upload(colour, name):
    buf = io.BytesIO()
    Image.fromarray(np.full((20, 20, 3), colour, np.uint8)).save(buf, format="PNG")
    return name, buf.getvalue()


def test_try_your_own_classifies_uploaded_queries(trained, monkeypatch):
    """Uploads go through the page's own reader; here the uploader hands over files."""
    runs_dir, run_id, _ = trained
    files = {
        "fs_own_0": [png_upload((250, 250, 250), "white.png")],
        "fs_own_1": [png_upload((5, 5, 5), "black.png")],
        "fs_own_queries": [png_upload((240, 240, 240), "q1.png"), png_upload((10, 10, 10), "q2.png")],
    }  # fmt: skip

    class Upload:
        def __init__(self, name, data):
            self.name, self.size, self._data = name, len(data), data

        def getvalue(self):
            return self._data

    import streamlit as st
    from streamlit.delta_generator import DeltaGenerator

    real = DeltaGenerator.file_uploader

    def fake(self, label, *a, key=None, **kw):
        return [Upload(*f) for f in files.get(key, [])] or real(self, label, *a, key=key, **kw)

    # in a column (the support sets) and at the top level (the queries)
    monkeypatch.setattr(DeltaGenerator, "file_uploader", fake)
    monkeypatch.setattr(st, "file_uploader", lambda *a, **kw: fake(None, *a, **kw))
    at = page("fewshot").run()
    pick_run(at, run_id)
    at.number_input(key="fs_own_n").set_value(2).run()
    assert not at.exception and not at.error
    captions = [im.caption for el in at.get("image") for im in el.proto.imgs
                if im.caption.startswith(("class 1", "class 2"))]  # fmt: skip
    assert len(captions) == 2
    assert all("%" in c for c in captions)
