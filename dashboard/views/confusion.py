"""Confusion matrix of the validation set at each snapshot epoch, and per-class accuracy."""

import json

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from dashboard.components import cache, charts, inputs, picking, pictures
from dashboard.embedding_views import embedding
from engine.analysis import normalise_rows, per_class_accuracy
from engine.store import runs
from engine.store.layout import RunLayout

st.title("🧮 Confusion matrix")


@st.cache_data(show_spinner=False, max_entries=64)
def load_confusion(path: str, stamp: int) -> np.ndarray:
    return np.load(path, allow_pickle=False)


# Segmentation (pixels) and few-shot runs (episodes) have their own pages.
run = picking.run_picker(classifiers_only=True)
if run is None:
    picking.no_runs_message()
    st.stop()
layout = RunLayout(run.path)
epochs = layout.confusion_epochs()
if not epochs:
    st.info("This run has no snapshot yet: the first one is written at the end of epoch 1.")
    st.stop()

c1, c2 = st.columns([3, 1])
epoch = c1.select_slider("Snapshot epoch", options=epochs, value=epochs[-1])
normalised = c2.toggle("Row-normalised", value=True, help="Each row sums to 1: recall per class.")
path = layout.confusion_file(epoch)
try:
    cm = load_confusion(str(path), path.stat().st_mtime_ns)
except (OSError, ValueError, EOFError) as e:
    inputs.show_error(ValueError(f"cannot read {path}: {e}"))
    st.stop()
if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
    st.error(f"{path} is not a square confusion matrix (shape {cm.shape})")
    st.stop()

n = cm.shape[0]
classes = pictures.class_names(run.status, n)
z = normalise_rows(cm) if normalised else cm
text = [[f"{v:.2f}" if normalised else str(int(v)) for v in row] for row in z]
heat = go.Figure(
    go.Heatmap(
        z=z, x=classes, y=classes, text=text, texttemplate="%{text}", colorscale="Blues",
        hovertemplate="true %{y} → predicted %{x}: %{text}<extra></extra>",
        zmin=0, zmax=1 if normalised else None,
    )
)  # fmt: skip
# Heatmap cells do not report clicks; an invisible marker on each cell does.
heat.add_trace(
    go.Scatter(
        x=[c for _ in classes for c in classes], y=[r for r in classes for _ in classes],
        mode="markers", marker=dict(size=max(8, 400 // max(n, 1)), color="rgba(0,0,0,0.01)"),
        hoverinfo="none", showlegend=False,  # "none", not "skip": skipped points get no clicks
    )
)  # fmt: skip
heat.update_layout(
    height=560, margin=dict(l=10, r=10, t=30, b=10),
    xaxis=dict(title="predicted class", side="bottom", type="category"),
    yaxis=dict(title="true class", autorange="reversed", type="category"),
)  # fmt: skip

acc = per_class_accuracy(cm)
bars = go.Figure(
    go.Bar(
        x=acc, y=classes, orientation="h", marker_color=charts.PALETTE[0],
        text=[f"{a:.1%}" if np.isfinite(a) else "no samples" for a in acc], textposition="auto",
    )
)  # fmt: skip
bars.update_layout(
    height=560, margin=dict(l=10, r=10, t=30, b=10),
    xaxis=dict(title="accuracy (recall)", range=[0, 1]),
    yaxis=dict(title=None, autorange="reversed", type="category"),
)  # fmt: skip

left, right = st.columns([3, 2])
event = charts.chart(left, heat, key="confusion", on_select="rerun", selection_mode=("points",))
charts.chart(right, bars, key="per_class")
total = int(cm.sum())
st.caption(
    f"Epoch {epoch}: {int(np.trace(cm))} of {total} validation images right "
    f"({np.trace(cm) / max(total, 1):.2%}). Rows: true class; columns: predicted class."
)


# --- the images of one cell, with Grad-CAM ------------------------------------------------------
def worst_cell(cm: np.ndarray) -> tuple[int, int]:
    off = cm.astype(float).copy()
    np.fill_diagonal(off, -1)
    return tuple(int(v) for v in np.unravel_index(off.argmax(), off.shape))


@st.cache_data(show_spinner="Grad-CAM of the cell's images…", max_entries=32)
def cell_grad_cams(run_dir: str, stamp: int, ids: tuple, targets: tuple):
    """Grad-CAM maps of the images `ids` for classes `targets`, from the run's best.pt."""
    from engine.analysis.attribution import attribute
    from engine.data.images import preprocess
    from engine.inspect.loading import load_run_model

    lm = load_run_model(run_dir)
    data = cache.dataset(json.dumps(runs.load_config(run_dir).data.__dict__, sort_keys=True))
    images = data.images_by_id(np.array(ids))
    out = []
    for im, t in zip(images, targets, strict=True):
        x = preprocess(im, lm.image_size)
        cam = attribute(lm.model, x, lm.mean, lm.std, target=int(t), methods=("grad_cam",))
        out.append(((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8),
                    cam.maps["grad_cam"]))  # fmt: skip
    return out


st.subheader("Images of a cell")
points = (event.selection or {}).get("points", []) if event else []
if points and points[0].get("x") in classes and points[0].get("y") in classes:
    st.session_state["cell_true"] = classes.index(points[0]["y"])
    st.session_state["cell_pred"] = classes.index(points[0]["x"])
for name, default in zip(("cell_true", "cell_pred"), worst_cell(cm), strict=True):
    if st.session_state.get(name) not in range(n):  # first visit, or another run's classes
        st.session_state[name] = default
c1, c2, c3 = st.columns([1, 1, 2])
true_c = c1.selectbox("True class", range(n), format_func=classes.__getitem__, key="cell_true")
pred_c = c2.selectbox("Predicted class", range(n), format_func=classes.__getitem__,
                      key="cell_pred")  # fmt: skip
c3.caption("Click a cell of the matrix, or pick one here (it starts on the most frequent "
           "mistake). Grad-CAM shows where the run's best model looks for the predicted class.")  # fmt: skip
emb_path = layout.embedding_file(epoch)
if not emb_path.exists() or not layout.best_checkpoint.exists():
    st.info("The images of a cell need this epoch's embedding snapshot and the run's best.pt.")
    st.stop()
try:
    emb = embedding(str(run.path), epoch, cache.file_stamp(emb_path))  # cached, read whole
    rows = np.flatnonzero((emb["labels"] == true_c) & (emb["predictions"] == pred_c))[:12]
    ids = tuple(int(i) for i in emb["sample_ids"][rows])
    if not ids:
        st.caption(f"None of the {len(emb['labels'])} validation images in this epoch's "
                   f"snapshot of class {classes[true_c]} was predicted as {classes[pred_c]}.")  # fmt: skip
        st.stop()
    cams = cell_grad_cams(str(run.path), layout.best_checkpoint.stat().st_mtime_ns, ids,
                          (pred_c,) * len(ids))  # fmt: skip
except inputs.LOAD_ERRORS as e:  # a damaged snapshot or checkpoint: say so, keep the page
    inputs.show_error(e)
    st.stop()
from engine.analysis.attribution import overlay  # noqa: E402

cols = st.columns(6)
scale = max(1, 96 // cams[0][0].shape[0])
for k, ((img, heat), sid) in enumerate(zip(cams, ids, strict=True)):
    cols[k % 6].image(pictures.png_bytes(overlay(img, heat), scale=scale),
                      caption=f"sample {sid}")  # fmt: skip
in_cell = int(((emb["labels"] == true_c) & (emb["predictions"] == pred_c)).sum())
st.caption(f"{len(ids)} of the validation images of class **{classes[true_c]}** predicted as "
           f"**{classes[pred_c]}** at epoch {epoch} (at most 12; {in_cell} of the "
           f"{len(emb['labels'])} images in this epoch's snapshot are in the cell), with "
           "Grad-CAM of the best model for the predicted class.")  # fmt: skip
