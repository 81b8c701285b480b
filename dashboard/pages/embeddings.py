"""Embeddings: penultimate-layer features of a fixed validation subset, projected to 2-D
at every snapshot epoch, animated across epochs; click a point to see it and its neighbours."""

import json

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from dashboard import widgets
from engine import runs
from engine.analysis import DEFAULT_PARAMS, load_embedding, nearest_neighbours, project_run
from engine.config import DataConfig
from engine.data import load_dataset
from engine.layout import RunLayout

METHOD_LABELS = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}

widgets.through_app()
st.title("🌌 Embeddings")


@st.cache_data(show_spinner=False, max_entries=32)
def projections(run_dir: str, method: str, params_json: str, stamps: tuple):
    # `stamps` ((epoch, mtime) of every snapshot) keys the cache: a rewritten snapshot is re-read.
    """All snapshot layouts of one (run, method, params); the run folder holds the disk cache."""
    bar = st.progress(0.0, text=f"Projecting with {METHOD_LABELS[method]}…")

    def progress(done, total, epoch):
        bar.progress(done / total, text=f"{METHOD_LABELS[method]}: epoch {epoch} ({done}/{total})")

    result = project_run(run_dir, method, json.loads(params_json), progress=progress)
    bar.empty()
    return result


@st.cache_data(show_spinner=False, max_entries=64)
def embedding(run_dir: str, epoch: int, stamp: tuple[int, int]):
    return load_embedding(run_dir, epoch)


@st.cache_resource(show_spinner="Loading the run's dataset…", max_entries=4)
def dataset(data_json: str):
    return load_dataset(DataConfig(**json.loads(data_json)))


def standardise(xy: np.ndarray) -> np.ndarray:
    """Centre a layout and scale it to unit RMS radius (rotation, hence alignment, kept)."""
    xy = xy - xy.mean(0)
    return xy / max(float(np.sqrt((xy**2).sum(1).mean())), 1e-12)


def scatter_traces(xy, emb, classes, colour_by: str, selected: int | None):
    """One WebGL trace per class (so the legend toggles classes); misclassified points as ×."""
    labels, preds = emb["labels"], emb["predictions"]
    colour = labels if colour_by == "true label" else preds
    wrong = labels != preds
    traces = []
    for c, name in enumerate(classes):
        idx = np.flatnonzero(colour == c)
        traces.append(
            go.Scattergl(
                x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=name,
                customdata=np.column_stack([idx, emb["sample_ids"][idx]]),
                text=[f"true {classes[labels[i]]} · predicted {classes[preds[i]]}" for i in idx],
                hovertemplate="sample %{customdata[1]}<br>%{text}<extra></extra>",
                marker=dict(
                    color=widgets.PALETTE[c % len(widgets.PALETTE)], size=np.where(wrong[idx], 9, 6),
                    symbol=np.where(wrong[idx], "x", "circle"), line=dict(width=0),
                ),
            )
        )  # fmt: skip
    if selected is not None:
        traces.append(
            go.Scattergl(
                x=[xy[selected, 0]], y=[xy[selected, 1]], mode="markers", name="selected",
                marker=dict(size=18, color="rgba(0,0,0,0)", line=dict(width=2, color="black")),
                hoverinfo="skip",
            )
        )  # fmt: skip
    return traces


def figure(layouts, embs, epoch, classes, colour_by, selected):
    frames_epochs = sorted(layouts)
    all_xy = np.concatenate([layouts[e] for e in frames_epochs])
    pad = 0.05 * (all_xy.max(0) - all_xy.min(0) + 1e-9)
    lo, hi = all_xy.min(0) - pad, all_xy.max(0) + pad
    fig = go.Figure(data=scatter_traces(layouts[epoch], embs[epoch], classes, colour_by, selected))
    fig.frames = [
        go.Frame(
            data=scatter_traces(layouts[e], embs[e], classes, colour_by, selected), name=str(e)
        )
        for e in frames_epochs
    ]
    fig.update_layout(
        height=620, margin=dict(l=10, r=10, t=30, b=10), uirevision="embeddings",
        xaxis=dict(range=[lo[0], hi[0]], showticklabels=False, title=None),
        yaxis=dict(range=[lo[1], hi[1]], showticklabels=False, title=None),
        legend=dict(title=colour_by, itemsizing="constant"),
        **widgets.animation_controls([str(e) for e in frames_epochs], frames_epochs.index(epoch)),
    )  # fmt: skip
    return fig


def neighbour_gallery(run_cfg, emb, row: int, classes, k: int) -> None:
    try:
        data = dataset(json.dumps(run_cfg["data"], sort_keys=True))
    except Exception as e:
        st.warning(f"Cannot show images: the run's dataset does not load here ({e}).")
        return
    near = nearest_neighbours(emb["features"], row, k)
    rows = [row, *near.tolist()]
    images = data.images_by_id(emb["sample_ids"][rows]).numpy()
    cols = st.columns(max(len(rows), 7))
    for i, (col, r) in enumerate(zip(cols, rows, strict=True)):
        true, pred = classes[emb["labels"][r]], classes[emb["predictions"][r]]
        mark = "✓" if true == pred else "✗"
        title = "selected" if i == 0 else f"#{i}"
        col.image(
            widgets.png_bytes(images[i], scale=3),
            caption=f"{title} · {true}→{pred} {mark}",
            width=96,
        )


run = widgets.run_picker(require_snapshots=True)
if run is None:
    widgets.no_runs_message("embedding snapshots")
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
    stamps = {e: widgets.file_stamp(layout.embedding_file(e)) for e in epochs}
    layouts = projections(
        str(run.path), method, json.dumps(params, sort_keys=True), tuple(stamps.items())
    )
    embs = {e: embedding(str(run.path), e, stamps[e]) for e in epochs}
    run_cfg = runs.load_config(run.path).to_dict()
    if method != "pca":  # t-SNE/UMAP distances have no absolute scale: show each epoch at
        layouts = {e: standardise(xy) for e, xy in layouts.items()}  # one size, still aligned
except (OSError, ValueError, EOFError) as e:  # ConfigError is a ValueError
    widgets.show_error(e)
    st.stop()

n_classes = int(max(max(e["labels"].max(), e["predictions"].max()) for e in embs.values())) + 1
classes = widgets.class_names(run.status, n_classes)
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
selected = st.session_state.get(row_key)
event = st.plotly_chart(
    figure(layouts, embs, epoch, classes, colour_by, selected),
    on_select="rerun", selection_mode=("points",), key=f"scatter:{run.run_id}:{method}",
)  # fmt: skip
points = (event.selection or {}).get("points", []) if event else []
picked = [p["customdata"][0] for p in points if p.get("customdata") is not None]
if picked and int(picked[0]) != selected:
    st.session_state[row_key] = int(picked[0])  # the number input below follows the click
    st.rerun()

st.subheader("Inspect a point")
a, b = st.columns([1, 3])
row = a.number_input("Row (or click a point)", 0, n_points - 1, key=row_key)
k = b.slider("Nearest neighbours (in the original feature space)", 1, 12, 6)
neighbour_gallery(run_cfg, emb, int(row), classes, k)
