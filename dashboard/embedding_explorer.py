"""The Embeddings page's explorer beyond one scatter: a selection kept across epochs, a
selection isolated (re-projected on its own), and two projections side by side whose
selections are linked (two epochs of a run, or one epoch of two runs on the same images)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from dashboard.components import charts

# --- the selection's state, per run, in the browser session -------------------------------


def _keys(run_id: str) -> dict[str, str]:
    return {k: f"{k}:{run_id}" for k in ("brushed", "kept", "how", "how_next")}


def brushed(run_id: str, n_points: int) -> list[int]:
    """The rows last dragged over (box or lasso) in any of the page's scatters."""
    return [r for r in st.session_state.get(_keys(run_id)["brushed"], []) if r < n_points]


def take_brush(run_id: str, view: str, rows: list[int]) -> None:
    """A box or lasso selection in one scatter (`view` names it). A new one becomes the
    selection shown below the scatters, and the page reruns so that every view highlights it;
    plotly reports a view's selection on every rerun until it is cleared, so only a change in
    that view's own selection counts (a brush in another view then wins)."""
    keys = _keys(run_id)
    seen = f"seen:{view}"
    if sorted(rows) == st.session_state.get(seen):
        return
    st.session_state[seen] = sorted(rows)
    if rows and sorted(rows) != sorted(st.session_state.get(keys["brushed"], [])):
        st.session_state[keys["brushed"]] = list(rows)
        st.session_state[keys["how_next"]] = "brushed"  # applied before the radio is drawn
        st.rerun()


def kept_ids(run_id: str) -> np.ndarray | None:
    """The sample ids of the selection kept across epochs, if one is kept."""
    return st.session_state.get(_keys(run_id)["kept"])


def kept_rows(run_id: str, emb: dict) -> np.ndarray | None:
    """The kept selection's rows in this epoch's snapshot (found by sample id)."""
    ids = kept_ids(run_id)
    return None if ids is None else np.flatnonzero(np.isin(emb["sample_ids"], ids))


def how_widget(where, run_id: str, n_brushed: int, n_kept: int | None) -> str:
    """The "Select by" radio; a new brush switches it to the brushed selection."""
    keys = _keys(run_id)
    options = ["brushed", "label", "misclassified", "neighbours"] + (["kept"] if n_kept else [])
    pending = st.session_state.pop(keys["how_next"], None)
    if pending in options:
        st.session_state[keys["how"]] = pending
    elif st.session_state.get(keys["how"]) not in options:
        st.session_state[keys["how"]] = "brushed" if n_brushed else "misclassified"
    names = {"brushed": f"box / lasso in a scatter ({n_brushed})", "label": "a true label",
             "misclassified": "misclassified", "neighbours": "the inspected point's neighbours",
             "kept": f"the kept selection ({n_kept})"}  # fmt: skip
    return where.radio("Select by", options, format_func=names.get, horizontal=True,
                       key=keys["how"])  # fmt: skip


def keep_buttons(run_id: str, emb: dict, rows: np.ndarray) -> None:
    """Keep the selection (by sample id) across epochs, or let it go."""
    keys = _keys(run_id)
    a, b = st.columns(2)
    if a.button("📌 Keep this selection across epochs", disabled=len(rows) == 0,
                key=f"{keys['kept']}_keep",
                help="it stays selected, ringed in the scatter, whichever epoch you look at"):  # fmt: skip
        st.session_state[keys["kept"]] = np.asarray(emb["sample_ids"][rows])
        st.session_state[keys["how_next"]] = "kept"
        st.rerun()
    if kept_ids(run_id) is not None and b.button("Let the kept selection go",
                                                 key=f"{keys['kept']}_drop"):  # fmt: skip
        del st.session_state[keys["kept"]]
        st.rerun()


# --- isolate: the selection re-projected on its own ---------------------------------------

MIN_ISOLATED = 5  # fewer points than this have no layout worth drawing


@st.cache_data(show_spinner=False, max_entries=16)
def isolated_layout(version: tuple, epoch: int, rows: tuple, method: str, params: tuple,
                    _features: np.ndarray) -> np.ndarray:  # fmt: skip
    from engine.analysis import project

    return project(_features[list(rows)], method, dict(params))


def isolate_panel(version: tuple, epoch: int, emb: dict, rows: np.ndarray, classes: list[str],
                  method: str, params: dict, key: str) -> None:  # fmt: skip
    """The selection projected again, alone: its own structure, no longer squeezed by the
    rest of the data (TensorBoard's "isolate")."""
    from dashboard.embedding_views import METHOD_LABELS, scatter_traces

    if len(rows) < MIN_ISOLATED:
        st.caption(f"Isolating needs at least {MIN_ISOLATED} selected images.")
        return
    name = METHOD_LABELS[method]
    with st.spinner(f"Projecting the {len(rows)} selected images with {name}…"):
        try:
            xy = isolated_layout(version, epoch, tuple(int(r) for r in rows), method,
                                 tuple(sorted(params.items())), emb["features"])  # fmt: skip
        except ValueError as e:  # identical features, too few points: said, not raised
            st.warning(f"The selection cannot be projected on its own: {e}")
            return
    sub = {k: v[rows] for k, v in emb.items()}
    traces = scatter_traces(xy, sub, classes, "true label", None)
    named = set()
    for t in traces:  # a class with only mistakes here still gets its legend entry
        t["showlegend"] = len(t["x"]) > 0 and t["legendgroup"] not in named
        named |= {t["legendgroup"]} if t["showlegend"] else set()
    fig = go.Figure(traces)
    fig.update_layout(height=480, margin=dict(l=10, r=10, t=30, b=10),
                      title=f"The selection alone: {name} of its {len(rows)} images, epoch {epoch}")  # fmt: skip
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    charts.chart(st, fig, key=f"{key}_isolated")


# --- two views, linked ---------------------------------------------------------------------


def linked_figure(xy: np.ndarray, emb: dict, classes: list[str], highlight: np.ndarray | None,
                  title: str) -> go.Figure:  # fmt: skip
    """A view for linking: every point in its true class's colour, faded when a selection
    exists and it is not in it; the selection drawn on top, ringed. customdata: (row, sample)."""
    from dashboard.embedding_views import class_traces

    labels = emb["labels"]
    data = np.column_stack([np.arange(len(labels)), emb["sample_ids"]]).astype(np.int64)
    fading = highlight is not None and len(highlight) > 0
    traces = class_traces(xy, labels, data, size=5, opacity=0.2 if fading else 0.8)
    if fading:
        traces += class_traces(xy[highlight], labels[highlight], data[highlight], "selection ",
                               size=8, line=dict(width=1, color="black"))  # fmt: skip
    fig = go.Figure(traces)
    fig.update_layout(height=460, margin=dict(l=10, r=10, t=40, b=10), showlegend=False,
                      title=title, dragmode="select")  # fmt: skip
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    return fig


def _row(customdata) -> int:
    """A point's row from its customdata as the browser sends it back: a number (1-D
    customdata), a list, or, for a 2-D numpy customdata that plotly sent as a typed array,
    a dict {"0": row, "1": sample id}."""
    if isinstance(customdata, dict):
        return int(customdata["0"])
    if isinstance(customdata, (list, tuple)):
        return int(customdata[0])
    return int(customdata)


def brushed_rows(event) -> list[int]:
    """The rows (customdata, or its first entry) of the points a box or lasso selected."""
    points = ((event or {}).get("selection") or {}).get("points", [])  # PlotlyState is a dict
    return sorted({_row(p["customdata"]) for p in points if p.get("customdata") is not None})


def linked_pair(left: tuple, right: tuple, to_left: np.ndarray, classes: list[str],
                selection: np.ndarray, run_id: str, key: str) -> None:  # fmt: skip
    """Two views side by side. `left`, `right`: (layout, snapshot, title); `to_left[j]` is the
    left row of the right view's row j. The selection (rows of the left view) is highlighted
    in both; a box or lasso in either becomes the selection."""
    to_right = np.empty_like(to_left)
    to_right[to_left] = np.arange(len(to_left))
    a, b = st.columns(2)
    with a:
        ev_a = charts.chart(st, linked_figure(left[0], left[1], classes, selection, left[2]),
                            on_select="rerun", selection_mode=("box", "lasso"),
                            key=f"{key}_a")  # fmt: skip
    with b:
        ev_b = charts.chart(st, linked_figure(right[0], right[1], classes, to_right[selection],
                                              right[2]),
                            on_select="rerun", selection_mode=("box", "lasso"),
                            key=f"{key}_b")  # fmt: skip
    take_brush(run_id, f"{key}_a", brushed_rows(ev_a))
    take_brush(run_id, f"{key}_b", to_left[brushed_rows(ev_b)].tolist())


def linked_views_panel(run, epoch: int, layouts: dict, embs: dict, data: dict,
                       classes: list[str], selection: np.ndarray, method: str, params: dict,
                       key: str) -> None:  # fmt: skip
    """This epoch's view beside another: an epoch of this run, or an epoch of another run on
    the same images (fine-tuned beside frozen). A selection in one is highlighted in both."""
    from dashboard.components import picking
    from dashboard.embedding_views import snapshot_layouts
    from engine.inspect.snapshots import linked_rows
    from engine.store import runs
    from engine.store.layout import RunLayout

    mode = st.radio("Beside this view", ["another epoch of this run", "another run"],
                    horizontal=True, key=f"{key}_mode")  # fmt: skip
    emb_a = embs[epoch]
    if mode == "another run":
        others = [r for r in runs.list_runs(picking.runs_dir())
                  if r.run_id != run.run_id and RunLayout(r.path).embedding_epochs()]  # fmt: skip
        if not others:
            st.info("No other run has embedding snapshots yet. Train one on the same data "
                    "(e.g. the Transfer page's fine-tuned and frozen runs) to compare them.")  # fmt: skip
            return
        by_id = {r.run_id: r for r in others}
        c1, c2 = st.columns([2, 1])
        other = by_id[c1.selectbox("Run", list(by_id), format_func=lambda i: picking.run_label(by_id[i]),
                                   key=f"{key}_run")]  # fmt: skip
        try:
            data_b = runs.load_config(other.path).to_dict()["data"]
            found = snapshot_layouts(other.path, method, params)
        except (OSError, ValueError, EOFError) as e:
            st.warning(f"{other.run_id} cannot be shown: {e}")
            return
        if found is None:  # its projection is computing; its progress is drawn
            return
        layouts_b, embs_b, _ = found
        epochs_b = sorted(layouts_b)
        e_b = c2.selectbox("Its epoch", epochs_b, index=len(epochs_b) - 1, key=f"{key}_epoch_b")
        right = (layouts_b[e_b], embs_b[e_b], f"{other.run_id} · epoch {e_b}")
    else:
        epochs = sorted(layouts)
        if len(epochs) < 2:
            st.caption("This run has one snapshot epoch so far: another epoch appears here "
                       "once it is written.")  # fmt: skip
            return
        default = epochs[0] if epoch != epochs[0] else epochs[-1]
        e_b = st.select_slider("Epoch beside it", options=epochs, value=default, key=f"{key}_epoch")
        data_b, right = data, (layouts[e_b], embs[e_b], f"epoch {e_b}")
    try:  # for each row of the right view, the row of the left one holding the same image
        to_left = linked_rows(data_b, right[1]["sample_ids"], data, emb_a["sample_ids"])
    except ValueError as e:
        st.warning(f"These two views cannot be linked: {e}.")
        return
    st.caption("Drag a box or lasso in either view: the same images light up in both, and "
               "become the selection above.")  # fmt: skip
    left = (layouts[epoch], emb_a, f"this run · epoch {epoch}")
    linked_pair(left, right, to_left, classes, selection, run.run_id, key)
