"""Embeddings: penultimate-layer features of a fixed validation subset, projected to 2-D
at every snapshot epoch, animated across epochs; click a point to see it and its neighbours."""

import json

import streamlit as st

from dashboard import embedding_explorer as explorer
from dashboard.components import cache, charts, inputs, picking, pictures, presenter
from dashboard.embedding_views import (
    METHOD_LABELS,
    cached_figure,
    quality_panel,
    selection_panel,
    selection_rows,
    snapshot_layouts,
    trajectories_panel,
)
from engine.analysis import DEFAULT_PARAMS, nearest_neighbours
from engine.store import runs
from engine.store.layout import RunLayout

st.title("🌌 Embeddings")
presenter.focus_toggle("embeddings")  # the scatter takes the screen's width


def neighbour_gallery(run_cfg, emb, row: int, classes, k: int) -> None:
    near = nearest_neighbours(emb["features"], row, k)
    rows = [row, *near.tolist()]
    try:  # the data may have moved or changed since the run (ids it no longer holds)
        data = cache.dataset(json.dumps(run_cfg["data"], sort_keys=True))
        images = data.images_by_id(emb["sample_ids"][rows]).numpy()
    except inputs.LOAD_ERRORS as e:
        st.warning(f"Cannot show images: the run's dataset does not load here ({e}).")
        return
    cols = st.columns(max(len(rows), 7))
    for i, (col, r) in enumerate(zip(cols, rows, strict=True)):
        true, pred = classes[emb["labels"][r]], classes[emb["predictions"][r]]
        mark = "✓" if true == pred else "✗"
        title = "selected" if i == 0 else f"#{i}"
        col.image(
            pictures.png_bytes(images[i], scale=3),
            caption=f"{title} · {true}→{pred} {mark}",
            width=96,
        )


run = picking.run_picker(require_snapshots=True)
if run is None:
    picking.no_runs_message("embedding snapshots")
    st.stop()

layout = RunLayout(run.path)
epochs = layout.embedding_epochs()
c1, c2, c3 = st.columns([2, 2, 3])
method = c1.radio("Projection", list(METHOD_LABELS), format_func=METHOD_LABELS.get, horizontal=True)
colour_by = c2.radio("Colour by", ["true label", "predicted label"], horizontal=True)
params = dict(DEFAULT_PARAMS[method])
with c3:
    if method == "tsne":
        params["perplexity"] = st.slider("Perplexity", 5.0, 50.0, float(params["perplexity"]), 1.0)
    elif method == "umap":
        a, b = st.columns(2)
        params["n_neighbors"] = a.slider("Neighbours", 2, 100, int(params["n_neighbors"]))
        params["min_dist"] = b.slider("Min. distance", 0.0, 1.0, float(params["min_dist"]), 0.05)
    else:
        st.caption("PCA: the two directions of largest variance. Linear and fast; t-SNE and "
                   "UMAP show local clusters better.")  # fmt: skip

epoch = st.select_slider("Snapshot epoch", options=epochs, value=epochs[-1])
try:
    found = snapshot_layouts(run.path, method, params)
    run_cfg = runs.load_config(run.path).to_dict()
except (OSError, ValueError, EOFError) as e:  # ConfigError is a ValueError
    inputs.show_error(e)
    st.stop()
if found is None:  # computing in the background; its progress is shown, and the page
    st.stop()  # draws itself again when it is done
layouts, embs, version = found

n_classes = int(max(max(e["labels"].max(), e["predictions"].max()) for e in embs.values())) + 1
classes = pictures.class_names(run.status, n_classes)
emb = embs[epoch]
wrong = int((emb["labels"] != emb["predictions"]).sum())
st.caption(
    f"{len(emb['labels'])} validation images · {emb['features'].shape[1]}-d features · "
    f"epoch {epoch}: {wrong} misclassified (×). Drag to zoom, click a point to inspect it, "
    f"▶ Play animates the snapshots (aligned so that the layout does not flip between epochs)."
)
row_key = f"row:{run.run_id}"
n_points = len(emb["labels"])
if st.session_state.get(row_key, 0) >= n_points:
    st.session_state[row_key] = 0
# Set before the scatter is drawn: the inspected point's ring is part of the figure, and a
# figure that changes between reruns is a new chart whose box selection is lost.
st.session_state.setdefault(row_key, 0)
selected = st.session_state.get(row_key)
kept = explorer.kept_ids(run.run_id)
kept_key = () if kept is None else tuple(int(i) for i in kept)
event = charts.chart(st,
    cached_figure(version, epoch, tuple(classes), colour_by, selected, layouts, embs, kept_key),
    on_select="rerun", selection_mode=("points", "box", "lasso"),
    key=f"scatter:{run.run_id}:{method}",
)  # fmt: skip
picked = explorer.brushed_rows(event)
if len(picked) > 1:  # a box or lasso: the selection below holds them
    explorer.take_brush(run.run_id, f"scatter:{method}", picked)
elif picked and picked[0] != selected:
    st.session_state[row_key] = picked[0]  # the number input below follows the click
    st.rerun()

quality_panel(version, epoch, layouts, embs)

st.subheader("Inspect a point")
a, b = st.columns([1, 3])
row = a.number_input("Row (or click a point)", 0, n_points - 1, key=row_key)
k = b.slider("Nearest neighbours (in the original feature space)", 1, 12, 6)
neighbour_gallery(run_cfg, emb, int(row), classes, k)

st.subheader("Select")
brushed = explorer.brushed(run.run_id, n_points)
kept_rows = explorer.kept_rows(run.run_id, emb)
a, b = st.columns([2, 1])
how = explorer.how_widget(a, run.run_id, len(brushed), None if kept is None else len(kept))
label = b.selectbox("Label", range(len(classes)), format_func=lambda i: classes[i],
                    disabled=how != "label")  # fmt: skip
rows = kept_rows if how == "kept" else selection_rows(how, emb, brushed, int(row), int(label), k)
selection_panel(run_cfg, emb, rows, classes, key=f"sel:{run.run_id}")
explorer.keep_buttons(run.run_id, emb, rows)
if len(rows) and st.toggle("Isolate: project only the selection, on its own",
                           key=f"isolate:{run.run_id}"):  # fmt: skip
    explorer.isolate_panel(version, epoch, emb, rows, classes, method, params,
                           key=f"iso:{run.run_id}")  # fmt: skip
with st.expander("Trajectories of the selection across the epochs"):
    trajectories_panel(layouts, embs, rows, classes, key=f"traj:{run.run_id}")
with st.expander("Two views, linked: this epoch beside another epoch or another run"):
    explorer.linked_views_panel(run, epoch, layouts, embs, run_cfg["data"], classes, rows,
                                method, params, key=f"link:{run.run_id}")  # fmt: skip
