"""The embedding explorer (issue 24): selection events from the real scatter, a selection kept
across epochs, isolated, and two linked views; each bad case said in the page."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np

from engine.inspect.snapshots import load_embedding
from engine.store.layout import RunLayout
from tests.support.pages import page


def _event(rows: list[int]) -> dict:
    """What the browser sends when a box selects these rows' points: the scatter's 2-D numpy
    customdata (row, sample) comes back per point as a dict of a typed array's entries."""
    points = [{"customdata": {"0": r, "1": 1000 + r}, "point_index": i} for i, r in enumerate(rows)]
    return {"selection": {"points": points, "point_indices": list(range(len(rows))),
                          "box": [{"x": [0, 1], "y": [0, 1]}], "lasso": []}}  # fmt: skip


def _count(array) -> int:
    """How many numbers a plotly JSON array holds (a list, or numpy's base64 `bdata`)."""
    if isinstance(array, list):
        return len(array)
    return len(base64.b64decode(array["bdata"])) // np.dtype(array["dtype"]).itemsize


def _chart(at, title_part: str, exact: bool = False):
    """The plotly chart whose figure's title holds `title_part` (or is it, `exact`)."""
    for c in at.get("plotly_chart"):
        spec = json.loads(c.proto.spec)
        title = spec.get("layout", {}).get("title", {})
        text = title.get("text", "") if isinstance(title, dict) else str(title)
        if text == title_part or (not exact and title_part in text):
            return spec
    raise AssertionError(f"no chart titled {title_part!r}")


def test_a_box_in_the_scatter_becomes_the_selection_and_its_grid(finished_run):
    run_id = Path(finished_run).name
    at = page("embeddings").run()
    at.session_state[f"scatter:{run_id}:pca"] = _event([0, 2, 4, 6, 8])
    at.run()
    assert not at.exception
    assert at.radio(key=f"how:{run_id}").value == "brushed"  # the radio followed the brush
    assert any(c.value.startswith("5 images selected") for c in at.caption)
    [table] = [d.value for d in at.dataframe if "true label" in d.value.columns]
    emb = load_embedding(finished_run, RunLayout(finished_run).embedding_epochs()[-1])
    true = np.bincount(emb["labels"][[0, 2, 4, 6, 8]], minlength=10)
    assert table["true label"].tolist() == true[true > 0].tolist()
    captions = [i.caption for el in at.get("image") for i in el.proto.imgs]
    assert any(c.startswith("page 1 of 1") for c in captions)  # the selection's image grid


def test_a_kept_selection_is_ringed_in_every_epoch_and_selectable(finished_run):
    run_id = Path(finished_run).name
    at = page("embeddings")
    at.session_state[f"brushed:{run_id}"] = [1, 3, 5]
    at.run()
    at.button(key=f"kept:{run_id}_keep").click().run()
    assert not at.exception
    assert at.radio(key=f"how:{run_id}").value == "kept"
    emb = load_embedding(finished_run, 1)
    assert sorted(at.session_state[f"kept:{run_id}"].tolist()) == sorted(
        emb["sample_ids"][[1, 3, 5]].tolist()
    )
    at.select_slider[0].set_value(1).run()  # another epoch: the same images stay selected
    assert any(c.value.startswith("3 images selected") for c in at.caption)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    rings = [t for t in spec["data"] if t.get("name") == "kept selection"]  # fmt: skip
    assert len(rings) == 1
    for frame in spec["frames"]:  # ringed in every frame of the animation
        assert sum(t.get("name") == "kept selection" for t in frame["data"]) == 1
    at.button(key=f"kept:{run_id}_drop").click().run()
    assert f"kept:{run_id}" not in at.session_state


def test_isolating_a_selection_projects_it_alone(finished_run):
    run_id = Path(finished_run).name
    at = page("embeddings")
    at.session_state[f"brushed:{run_id}"] = list(range(0, 40, 2))
    at.run()
    at.toggle(key=f"isolate:{run_id}").set_value(True).run()
    assert not at.exception
    spec = _chart(at, "The selection alone")
    drawn = sum(len(t["customdata"]["bdata"]) if isinstance(t["customdata"], dict)
                else len(t["customdata"]) for t in spec["data"])  # fmt: skip
    assert drawn > 0
    assert "20 images" in spec["layout"]["title"]["text"]


def test_two_epochs_linked_highlight_the_same_images_and_a_box_in_either_selects(finished_run):
    run_id = Path(finished_run).name
    at = page("embeddings")
    at.session_state[f"brushed:{run_id}"] = [0, 1, 2, 3]
    at.run()
    left, right = _chart(at, "this run · epoch 3"), _chart(at, "epoch 1", exact=True)
    for spec in (left, right):
        sel = [t for t in spec["data"] if t.get("name", "").startswith("selection ")]
        assert sum(_count(t["x"]) for t in sel) == 4  # the four selected images, in both views
    at.session_state[f"link:{run_id}_b"] = _event([7, 8])  # a box in the right-hand view
    at.run()
    assert not at.exception
    assert sorted(at.session_state[f"brushed:{run_id}"]) == [7, 8]
    assert any(c.value.startswith("2 images selected") for c in at.caption)


def test_another_run_on_the_same_images_links_and_one_on_other_data_is_refused(finished_run):
    run_id = Path(finished_run).name
    twin = finished_run.parent / "20990101-000000-twin"
    shutil.copytree(finished_run, twin)
    other = finished_run.parent / "20990101-000001-other"
    shutil.copytree(finished_run, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["data"]["split_seed"] = 7
    (other / "config.json").write_text(json.dumps(cfg))
    at = page("embeddings")
    at.session_state["run"] = run_id
    at.run()
    at.radio(key=f"link:{run_id}_mode").set_value("another run").run()
    at.selectbox(key=f"link:{run_id}_run").set_value(twin.name).run()
    assert not at.exception
    assert _chart(at, f"{twin.name} · epoch 3")
    at.selectbox(key=f"link:{run_id}_run").set_value(other.name).run()
    assert not at.exception
    assert any("cannot be linked" in w.value and "split_seed" in w.value for w in at.warning)


def test_snapshot_ids_the_dataset_lacks_are_said_not_raised(finished_run):
    from engine.core.atomic import save_npz

    layout = RunLayout(finished_run)
    for epoch in layout.embedding_epochs():  # the data changed since: ids it does not hold
        emb = load_embedding(finished_run, epoch)
        emb["sample_ids"] = emb["sample_ids"] + 100_000
        save_npz(layout.embedding_file(epoch), **emb)
    at = page("embeddings")
    at.session_state[f"brushed:{finished_run.name}"] = [0, 1, 2]
    at.run()
    assert not at.exception
    said = [w.value for w in at.warning]
    assert any("Cannot show images" in w for w in said)  # the neighbour gallery
    assert any("Cannot show the images" in w for w in said)  # the selection grid
    assert any(c.value.startswith("3 images selected") for c in at.caption)  # numbers stand
