"""The Embeddings page's views, shared with the pages that show a run's embedding snapshots
(Self-supervised): cached projections of every snapshot epoch, and the animated scatter."""

import json

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from dashboard import projection_jobs
from dashboard.components import cache, charts, inputs, pictures
from engine.analysis import DEFAULT_PARAMS
from engine.inspect.snapshots import load_embedding
from engine.store.layout import RunLayout

METHOD_LABELS = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}


@st.cache_data(show_spinner=False, max_entries=64)
def embedding(run_dir: str, epoch: int, stamp: tuple[int, int]):
    return load_embedding(run_dir, epoch)


def standardise(xy: np.ndarray) -> np.ndarray:
    """Centre a layout and scale it to unit RMS radius (rotation, hence alignment, kept)."""
    xy = xy - xy.mean(0)
    return xy / max(float(np.sqrt((xy**2).sum(1).mean())), 1e-12)


def scatter_traces(xy, emb, classes, colour_by: str, selected: int | None,
                   kept: np.ndarray | None = None) -> list[dict]:  # fmt: skip
    """WebGL traces, two per class (the legend toggles both): points classified right as
    circles, misclassified ones as x. Numbers travel as numpy arrays (plotly sends them
    base64-encoded, and validates them without a Python loop); only the misclassified points
    carry a text each, their predicted class, so 50,000 points cost no 50,000 strings.
    `kept`: the sample ids of a selection kept across epochs, ringed wherever they are."""
    labels, preds = emb["labels"], emb["predictions"]
    colour = labels if colour_by == "true label" else preds
    wrong = labels != preds
    xy = np.asarray(xy, dtype=np.float32)
    rows_ids = np.column_stack([np.arange(len(labels)), emb["sample_ids"]]).astype(np.int32)
    names = np.asarray(classes, dtype=object)
    traces = []
    for c, name in enumerate(classes):
        colour_hex = charts.PALETTE[c % len(charts.PALETTE)]
        for miss in (False, True):
            idx = np.flatnonzero((colour == c) & (wrong == miss))
            if miss:  # true and predicted differ: say both
                text = (
                    ("true " + names[labels[idx]]) + " · predicted " + names[preds[idx]]
                ).tolist()
                hover = "sample %{customdata[1]}<br>%{text}<extra></extra>"
            else:
                text = None
                hover = (
                    f"sample %{{customdata[1]}}<br>true {name} · predicted {name}<extra></extra>"
                )
            traces.append(dict(
                type="scattergl", x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=name,
                legendgroup=name, showlegend=not miss, customdata=rows_ids[idx], text=text,
                hovertemplate=hover,
                marker=dict(color=colour_hex, size=9 if miss else 6,
                            symbol="x" if miss else "circle", line=dict(width=0)),
            ))  # fmt: skip
    kept = None if kept is None else np.flatnonzero(np.isin(emb["sample_ids"], kept))
    if kept is not None and len(kept):
        traces.append(dict(
            type="scattergl", x=xy[kept, 0], y=xy[kept, 1], mode="markers",
            name="kept selection", hoverinfo="skip",
            marker=dict(size=11, color="rgba(0,0,0,0)", line=dict(width=1.5, color="black")),
        ))  # fmt: skip
    if selected is not None:
        traces.append(dict(
            type="scattergl", x=[float(xy[selected, 0])], y=[float(xy[selected, 1])],
            mode="markers", name="selected",
            marker=dict(size=18, color="rgba(0,0,0,0)", line=dict(width=2, color="black")),
            hoverinfo="skip",
        ))  # fmt: skip
    return traces


def figure(layouts, embs, epoch, classes, colour_by, selected, kept=None):
    frames_epochs = sorted(layouts)
    all_xy = np.concatenate([layouts[e] for e in frames_epochs])
    pad = 0.05 * (all_xy.max(0) - all_xy.min(0) + 1e-9)
    lo, hi = all_xy.min(0) - pad, all_xy.max(0) + pad
    fig = go.Figure(
        data=scatter_traces(layouts[epoch], embs[epoch], classes, colour_by, selected, kept)
    )
    fig.frames = [
        go.Frame(
            data=scatter_traces(layouts[e], embs[e], classes, colour_by, selected, kept),
            name=str(e),
        )
        for e in frames_epochs
    ]
    fig.update_layout(
        height=620, margin=dict(l=10, r=10, t=30, b=10), uirevision="embeddings",
        xaxis=dict(range=[lo[0], hi[0]], showticklabels=False, title=None),
        yaxis=dict(range=[lo[1], hi[1]], showticklabels=False, title=None),
        legend=dict(title=colour_by, itemsizing="constant"),
        **charts.animation_controls([str(e) for e in frames_epochs], frames_epochs.index(epoch)),
    )  # fmt: skip
    return fig


def snapshot_layouts(run_dir, method: str, params: dict) -> tuple[dict, dict, tuple] | None:
    """(2-D layout per epoch, embedding snapshot per epoch, a key naming that version of
    both) of a run, cached; None, with the projection's progress drawn, while it is still
    computing in the background."""
    layout = RunLayout(run_dir)
    epochs = layout.embedding_epochs()
    stamps = {e: cache.file_stamp(layout.embedding_file(e)) for e in epochs}
    # The stamps ((epoch, mtime) of every snapshot) key the job: a rewritten one is re-read.
    job = projection_jobs.worker().submit(str(run_dir), method, params, tuple(stamps.items()))
    try:
        layouts = job.future.result(timeout=projection_jobs.wait_seconds())
    except TimeoutError:
        projection_jobs.show_pending(job.key, f"Projecting with {METHOD_LABELS[method]}",
                                     lambda p: draw_partial(str(run_dir), stamps, p))  # fmt: skip
        return None
    embs = {e: embedding(str(run_dir), e, stamps[e]) for e in epochs}
    if method != "pca":  # t-SNE/UMAP distances have no absolute scale: show each epoch at
        layouts = {e: standardise(xy) for e, xy in layouts.items()}  # one size, still aligned
    return layouts, embs, job.key


def class_traces(xy: np.ndarray, labels: np.ndarray, customdata: np.ndarray | None = None,
                 group: str = "", **marker) -> list[go.Scattergl]:  # fmt: skip
    """One WebGL trace per class present, in its colour: numbers only (no per-point strings,
    which plotly validates one by one: 10,000 colour names cost 0.2 s a figure)."""
    traces = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        traces.append(go.Scattergl(
            x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=f"{group}{c}", showlegend=False,
            customdata=None if customdata is None else customdata[idx],
            hoverinfo="skip" if customdata is None else None,
            hovertemplate=None if customdata is None else "sample %{customdata[1]}<extra></extra>",
            marker={"color": charts.PALETTE[int(c) % len(charts.PALETTE)], "line": {"width": 0},
                    **marker},
        ))  # fmt: skip
    return traces


def partial_figure(xy: np.ndarray, labels: np.ndarray) -> go.Figure:
    """A layout still optimising, each point in its true class's colour."""
    fig = go.Figure(class_traces(xy, labels, size=5))
    fig.update_layout(height=520, margin=dict(l=10, r=10, t=10, b=10), showlegend=False)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    return fig


def draw_partial(run_dir: str, stamps: dict, partial: tuple) -> None:
    """t-SNE's layout of one snapshot while it converges, drawn as the projection runs."""
    epoch, iteration, total, xy = partial
    labels = embedding(run_dir, epoch, stamps[epoch])["labels"]
    if len(labels) != len(xy):  # the snapshot was rewritten meanwhile; the next one will do
        return
    phase = "early exaggeration: clusters form" if iteration <= 250 else "refining"
    st.caption(f"t-SNE converging in front of you: epoch {epoch}, iteration {iteration} of "
               f"{total} ({phase}). The final layouts are aligned from epoch to epoch and "
               "cached.")  # fmt: skip
    charts.chart(st, partial_figure(xy, labels), key="tsne_partial")


@st.cache_resource(show_spinner=False, max_entries=8)
def cached_figure(version: tuple, epoch, classes: tuple, colour_by, selected, _layouts, _embs,
                  kept: tuple = ()):  # fmt: skip
    """`figure(...)`, built once per (version of the layouts, epoch, colouring, selection,
    kept sample ids): a rerun that changes none of them (another widget, a click elsewhere) reuses
    it."""
    kept_ids = np.asarray(kept, dtype=np.int64) if kept else None
    return figure(_layouts, _embs, epoch, list(classes), colour_by, selected, kept_ids)


def compact_projection(run_dir, classes: list[str], key: str) -> None:
    """Method, epoch and the animated scatter of a run's snapshots, in little space."""
    epochs = RunLayout(run_dir).embedding_epochs()
    if not epochs:
        st.info("No embedding snapshot yet: the first one is written at the end of epoch 1.")
        return
    c1, c2 = st.columns([1, 2])
    method = c1.radio("Projection", list(METHOD_LABELS), format_func=METHOD_LABELS.get,
                      horizontal=True, key=f"{key}_method")  # fmt: skip
    epoch = c2.select_slider("Snapshot epoch", options=epochs, value=epochs[-1], key=f"{key}_epoch")
    try:
        found = snapshot_layouts(run_dir, method, dict(DEFAULT_PARAMS[method]))
    except (OSError, ValueError, EOFError) as e:
        inputs.show_error(e)
        return
    if found is None:  # still computing: its progress is shown
        return
    layouts, embs, version = found
    fig = cached_figure(version, epoch, tuple(classes), "true label", None, layouts, embs)
    charts.chart(st, fig, key=f"{key}_scatter")


@st.cache_data(show_spinner="Measuring how faithful the picture is…", max_entries=256)
def quality(version: tuple, epoch: int, _layouts, _embs) -> dict:
    """Trustworthiness and continuity of the epoch's layout, and its features' kNN accuracy
    (engine.analysis.layout_quality), once per version of the layouts."""
    from dataclasses import asdict

    from engine.analysis.layout_quality import layout_quality

    emb = _embs[epoch]
    return asdict(layout_quality(emb["features"], _layouts[epoch], emb["labels"]))


def quality_panel(version: tuple, epoch: int, layouts: dict, embs: dict) -> None:
    """The numbers beside the scatter, and their curve over the snapshot epochs."""
    try:
        q = quality(version, epoch, layouts, embs)
    except ValueError as e:  # too few points to measure: said, not raised
        st.caption(f"How much to trust this picture: {e}")
        return
    c1, c2, c3 = st.columns(3)
    c1.metric("Trustworthiness", f"{q['trustworthiness']:.3f}",
              help=f"are the picture's {q['k']} nearest neighbours neighbours in the original "
              "features? 1: all of them; about 0.5: a random picture")  # fmt: skip
    c2.metric(
        "Continuity",
        f"{q['continuity']:.3f}",
        help="are the original neighbours kept together in the picture?",
    )
    c3.metric("kNN accuracy of the features", f"{q['knn_accuracy']:.1%}",
              help=f"leave-one-out, {q['k']} neighbours, in the original feature space: how "
              "separable the classes are before any projection")  # fmt: skip
    with st.expander("How much to trust the picture, epoch by epoch"):
        rows = {e: quality(version, e, layouts, embs) for e in sorted(layouts)}
        fig = go.Figure()
        for name, label in (("trustworthiness", "trustworthiness"), ("continuity", "continuity"),
                            ("knn_accuracy", "kNN accuracy (features)")):  # fmt: skip
            fig.add_trace(go.Scatter(x=list(rows), y=[r[name] for r in rows.values()],
                                     mode="lines+markers", name=label))  # fmt: skip
        fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10),
                          xaxis_title="epoch", yaxis=dict(range=[0, 1.02]))  # fmt: skip
        charts.chart(st, fig, key=f"quality:{version}")
        st.caption(f"Measured on {q['points']} points (a seeded subsample above 2,000).")


SELECTION_GRID = 64  # images per page of a selection's grid


def selection_rows(
    how: str, emb: dict, brushed: list[int], inspected: int, label: int, k: int
) -> np.ndarray:
    """The rows a selection holds: brushed in the scatter (box or lasso), one true label, the
    misclassified images, or the inspected point with its k nearest neighbours."""
    from engine.analysis import nearest_neighbours

    if how == "brushed":
        return np.asarray(sorted(set(brushed)), dtype=int)
    if how == "label":
        return np.flatnonzero(emb["labels"] == label)
    if how == "misclassified":
        return np.flatnonzero(emb["labels"] != emb["predictions"])
    return np.asarray([inspected, *nearest_neighbours(emb["features"], inspected, k).tolist()])


def composition(emb: dict, rows: np.ndarray, classes: list[str]):
    """Per class: how many of the selection are truly of it, and predicted as it."""
    import pandas as pd

    n = len(classes)
    true = np.bincount(emb["labels"][rows], minlength=n)
    pred = np.bincount(emb["predictions"][rows], minlength=n)
    keep = (true + pred) > 0
    return pd.DataFrame({"class": np.asarray(classes)[keep], "true label": true[keep],
                         "predicted": pred[keep]})  # fmt: skip


def selection_csv(emb: dict, rows: np.ndarray, classes: list[str]) -> bytes:
    """sample_id,label,prediction (names) of the selection, as the export's CSV."""
    names = np.asarray(classes, dtype=object)
    lines = ["sample_id,label,prediction"] + [
        f"{int(emb['sample_ids'][r])},{names[emb['labels'][r]]},{names[emb['predictions'][r]]}"
        for r in rows
    ]
    return ("\n".join(lines) + "\n").encode()


def selection_panel(run_cfg: dict, emb: dict, rows: np.ndarray, classes: list[str],
                    key: str) -> None:  # fmt: skip
    """What a selection holds: its size, label / prediction composition, an image grid of its
    members (64 a page) and a CSV of its ids, labels and predictions."""
    if len(rows) == 0:
        st.info("The selection is empty: drag a box or lasso over points in the scatter (the "
                "tools above it), or choose another way to select.")  # fmt: skip
        return
    wrong = int((emb["labels"][rows] != emb["predictions"][rows]).sum())
    st.caption(f"{len(rows)} images selected, {wrong} of them misclassified")
    left, right = st.columns([1, 2])
    left.dataframe(composition(emb, rows, classes), hide_index=True, width="stretch")
    left.download_button("⬇ the selection as CSV", selection_csv(emb, rows, classes),
                         file_name="selection.csv", mime="text/csv", key=f"{key}_csv")  # fmt: skip
    pages = max(1, -(-len(rows) // SELECTION_GRID))
    page_no = right.number_input("Page", 1, pages, 1, key=f"{key}_page") if pages > 1 else 1
    shown = rows[(page_no - 1) * SELECTION_GRID : page_no * SELECTION_GRID]
    names = np.asarray(classes, dtype=object)
    try:
        png = grid_png(json.dumps(run_cfg["data"], sort_keys=True),
                       tuple(emb["sample_ids"][shown].tolist()),
                       tuple(str(names[p]) for p in emb["predictions"][shown]),
                       tuple((emb["labels"][shown] == emb["predictions"][shown]).tolist()))  # fmt: skip
    except inputs.LOAD_ERRORS as e:  # the data moved: the numbers still stand
        right.warning(f"Cannot show the images: the run's dataset does not load here ({e}).")
        return
    right.image(png, width="stretch" if len(shown) >= 8 else 96 * len(shown),
                caption=f"page {page_no} of {pages}: each image framed green when predicted "
                "right, red when wrong, with its prediction")  # fmt: skip


@st.cache_data(show_spinner=False, max_entries=32)
def grid_png(data_key: str, ids: tuple, predicted: tuple, ok: tuple) -> bytes:
    """The selection grid's PNG (8 a row, each image framed by right or wrong and labelled with
    its prediction), made once per page of a selection: 64 framed images take ~70 ms."""
    images = cache.dataset(data_key).images_by_id(np.asarray(ids)).numpy()
    grid = pictures.tile_grid(images, rows=-(-len(ids) // 8), labels=list(predicted),
                              ok=list(ok), scale=max(1, 64 // images.shape[-1]))  # fmt: skip
    return pictures.png_bytes(grid)


MAX_TRAJECTORIES = 200  # paths drawn; a larger selection draws its first 200


def trajectories_figure(layouts: dict, embs: dict, rows: np.ndarray, classes: list[str]):
    """Each selected point's path through the aligned snapshot layouts, a line per point in
    its true class's colour, the last epoch marked."""
    epochs = sorted(layouts)
    rows = rows[:MAX_TRAJECTORIES]
    labels = embs[epochs[-1]]["labels"][rows]
    fig = go.Figure()
    for c in np.unique(labels):
        mine = rows[labels == c]
        xs, ys = [], []
        for r in mine:  # one line per point, broken by None between points
            xs += [float(layouts[e][r, 0]) for e in epochs] + [None]
            ys += [float(layouts[e][r, 1]) for e in epochs] + [None]
        colour = charts.PALETTE[int(c) % len(charts.PALETTE)]
        fig.add_trace(go.Scattergl(x=xs, y=ys, mode="lines", name=classes[int(c)],
                                   line=dict(color=colour, width=1), opacity=0.6))  # fmt: skip
        last = layouts[epochs[-1]][mine]
        fig.add_trace(go.Scattergl(x=last[:, 0], y=last[:, 1], mode="markers", showlegend=False,
                                   marker=dict(color=colour, size=7), hoverinfo="skip"))  # fmt: skip
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=30, b=10),
                      title=f"Paths from epoch {epochs[0]} to {epochs[-1]} (dot: the last)")  # fmt: skip
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    return fig


def movers(layouts: dict, embs: dict, rows: np.ndarray, classes: list[str], a: int, b: int):
    """The selected points that moved most between epochs a and b: how far in the (aligned)
    layout, and their predicted class at each."""
    import pandas as pd

    names = np.asarray(classes, dtype=object)
    moved = np.linalg.norm(layouts[b][rows] - layouts[a][rows], axis=1)
    order = rows[np.argsort(-moved, kind="stable")][:20]
    return pd.DataFrame({
        "sample": embs[b]["sample_ids"][order],
        "true": names[embs[b]["labels"][order]],
        f"predicted at {a}": names[embs[a]["predictions"][order]],
        f"predicted at {b}": names[embs[b]["predictions"][order]],
        "moved": np.linalg.norm(layouts[b][order] - layouts[a][order], axis=1).round(3),
    })  # fmt: skip


def trajectories_panel(layouts: dict, embs: dict, rows: np.ndarray, classes: list[str],
                       key: str) -> None:  # fmt: skip
    epochs = sorted(layouts)
    if len(rows) == 0 or len(epochs) < 2:
        st.caption("Trajectories need a selection and at least two snapshot epochs.")
        return
    sizes = {len(embs[e]["labels"]) for e in epochs}
    if len(sizes) > 1:  # snapshots of different sizes are not the same points
        st.warning(f"The snapshots hold different numbers of points ({sorted(sizes)}): their "
                   "points cannot be followed from epoch to epoch.")  # fmt: skip
        return
    charts.chart(st, trajectories_figure(layouts, embs, rows, classes), key=f"{key}_paths")
    a, b = st.select_slider("Moved most between epochs", options=epochs,
                            value=(epochs[0], epochs[-1]), key=f"{key}_ab")  # fmt: skip
    if a != b:
        st.dataframe(movers(layouts, embs, rows, classes, a, b), hide_index=True, width="stretch")
