"""Confusion matrix of the validation set at each snapshot epoch, and per-class accuracy."""

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from dashboard import widgets
from engine.analysis import normalise_rows, per_class_accuracy
from engine.layout import RunLayout

widgets.through_app()
st.title("🧮 Confusion matrix")


@st.cache_data(show_spinner=False, max_entries=64)
def load_confusion(path: str, stamp: int) -> np.ndarray:
    return np.load(path, allow_pickle=False)


run = widgets.run_picker()
if run is None:
    widgets.no_runs_message()
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
    widgets.show_error(ValueError(f"cannot read {path}: {e}"))
    st.stop()
if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
    st.error(f"{path} is not a square confusion matrix (shape {cm.shape})")
    st.stop()

n = cm.shape[0]
classes = widgets.class_names(run.status, n)
z = normalise_rows(cm) if normalised else cm
text = [[f"{v:.2f}" if normalised else str(int(v)) for v in row] for row in z]
heat = go.Figure(
    go.Heatmap(
        z=z, x=classes, y=classes, text=text, texttemplate="%{text}", colorscale="Blues",
        hovertemplate="true %{y} → predicted %{x}: %{text}<extra></extra>",
        zmin=0, zmax=1 if normalised else None,
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
        x=acc, y=classes, orientation="h", marker_color=widgets.PALETTE[0],
        text=[f"{a:.1%}" if np.isfinite(a) else "no samples" for a in acc], textposition="auto",
    )
)  # fmt: skip
bars.update_layout(
    height=560, margin=dict(l=10, r=10, t=30, b=10),
    xaxis=dict(title="accuracy (recall)", range=[0, 1]),
    yaxis=dict(title=None, autorange="reversed", type="category"),
)  # fmt: skip

left, right = st.columns([3, 2])
left.plotly_chart(heat, key="confusion")
right.plotly_chart(bars, key="per_class")
total = int(cm.sum())
st.caption(
    f"Epoch {epoch}: {int(np.trace(cm))} of {total} validation images right "
    f"({np.trace(cm) / max(total, 1):.2%}). Rows: true class; columns: predicted class."
)
