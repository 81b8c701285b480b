"""Dynamic filters (ENGN8536 Lab 4): each class's generated 1x1 filter, its response map on an
image, the ten scores, and the same image through the static baseline."""

import json

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch
import torch.nn.functional as F
from plotly.subplots import make_subplots

from dashboard.components import (
    cache,
    charts,
    gallery,
    inputs,
    picking,
    pictures,
    recipes,
    statistics,
    timing,
)
from engine.analysis.projections import pca_2d
from engine.config import DataConfig, DynamicFilterConfig, OptimConfig
from engine.core.errors import WorkbenchError
from engine.execution.start import start_group
from engine.store import groups, runs
from engine.store.layout import RunLayout

st.title("🎛️ Dynamic filters")
st.caption(
    "ENGN8536 Lab 4 (Jia et al., Dynamic Filter Networks): a ResNet-18 up to layer1 encodes the "
    "image (64 x 8 x 8 for 32 x 32 input); each class's learned embedding is turned by an MLP "
    "into a 1x1 filter, whose response map a shared MLP reads into that class's score. The "
    "static baseline learns each class's filter directly."
)
recipes.show("ENGN8536 Lab 4: dynamic filters")
gallery.announce()
gallery.offer_if_empty("dynamic", "dynamic-filter run")


def new_comparison_form() -> None:
    d = DynamicFilterConfig()
    with st.container():  # not a form: the estimate follows the settings
        c1, c2, c3, c4 = st.columns(4)
        dataset = c1.selectbox("Dataset", inputs.datasets_offered(["digits", "cifar10"]))
        path = c2.text_input("Folder (for cifar10; optional for the MNIST family)", "")
        epochs = c3.number_input("Epochs", 1, 200, d.epochs)
        lr = c4.number_input("Learning rate", 1e-6, 1.0, d.optim.lr, format="%.5f")
        c1, c2 = st.columns([3, 1])
        frozen = c1.checkbox("Also dynamic with the backbone frozen", True,
                             help="The lab asks what happens then, and why")  # fmt: skip
        repeats = statistics.repeats_input(c2)
    try:
        base = DynamicFilterConfig(
            data=DataConfig(name=dataset, path=inputs.typed_path(path)),
            optim=OptimConfig(lr=float(lr), weight_decay=0.0), epochs=int(epochs),
        )  # fmt: skip
        timing.show_group_estimate("dynamic-vs-static", base, repeats, include_frozen=frozen)
    except (WorkbenchError, OSError) as e:  # said when the button is pressed
        base, problem = None, e
    if not st.button("▶ Train dynamic vs static", type="primary"):
        return
    try:
        if base is None:
            raise problem
        group = start_group("dynamic-vs-static", base, picking.runs_dir(), include_frozen=frozen,
                            repeats=repeats)  # fmt: skip
    except (WorkbenchError, OSError) as e:  # ConfigError, DataError, RunError: each says why
        inputs.show_error(e)
        return
    st.session_state["dynamic_group"] = group.group_id
    st.toast(f"Started {group.group_id}")


def dynamic_runs() -> list[runs.RunSummary]:
    return [
        r for r in runs.list_runs(picking.runs_dir())
        if (r.config or {}).get("kind") == "dynamic_filter"
        and RunLayout(r.path).best_checkpoint.exists()
    ]  # fmt: skip


def run_label(r: runs.RunSummary) -> str:
    cfg = r.config or {}
    kind = "dynamic" if cfg.get("dynamic", True) else "static"
    frozen = ", frozen backbone" if cfg.get("freeze_backbone") else ""
    return f"{kind}{frozen} · {r.run_id}"


def look(run: runs.RunSummary, image: torch.Tensor):
    """(response maps (C, H, W) upsampled, scores (C,), filters (C, 64), classes) of one run."""
    lm = cache.run_model(str(run.path), RunLayout(run.path).best_checkpoint.stat().st_mtime_ns)
    x = lm.normalise(image.float() / 255)
    with torch.no_grad():
        maps = lm.model.response_maps(x[None])  # (1, C, 8, 8)
        scores = lm.model.forward_head(maps.flatten(1))[0]
        up = F.interpolate(maps, size=image.shape[-2:], mode="bilinear", align_corners=False)[0]
    return up.numpy(), scores.numpy(), lm


def response_grid(image: torch.Tensor, maps: np.ndarray, scores: np.ndarray, classes, true: int):
    """Ten response maps over the image, one shared colour scale."""
    n = len(classes)
    cols = 5
    rows = (n + cols - 1) // cols
    pred = int(scores.argmax())
    titles = [
        f"{c}{' ✓' if k == pred and k == true else ' (pred.)' if k == pred else ''}"
        f"{' (true)' if k == true and k != pred else ''}"
        for k, c in enumerate(classes)
    ]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles,
                        horizontal_spacing=0.02, vertical_spacing=0.08)  # fmt: skip
    rgb = image.permute(1, 2, 0).numpy()
    lo, hi = float(maps.min()), float(maps.max())
    for k in range(n):
        r, c = k // cols + 1, k % cols + 1
        fig.add_trace(go.Image(z=rgb, hoverinfo="skip"), row=r, col=c)
        fig.add_trace(
            go.Heatmap(
                z=maps[k], zmin=lo, zmax=hi, colorscale="Inferno", opacity=0.6,
                showscale=(k == 0), colorbar=dict(title="response", len=0.9),
                hovertemplate=f"{classes[k]}: %{{z:.2f}}<extra></extra>",
            ),
            row=r, col=c,
        )  # fmt: skip
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed")
    fig.update_layout(height=170 * rows + 60, margin=dict(l=5, r=5, t=40, b=5))
    return fig


def score_bars(scores: np.ndarray, classes, true: int) -> go.Figure:
    pred = int(scores.argmax())
    colours = [
        "#2ca02c" if k == pred == true else "#d62728" if k == pred else
        "#1f77b4" if k == true else "#c7c7c7"
        for k in range(len(classes))
    ]  # fmt: skip
    fig = go.Figure(go.Bar(x=list(classes), y=scores, marker_color=colours,
                           text=[f"{s:.2f}" for s in scores], textposition="outside"))  # fmt: skip
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10),
                      title="Scores (green: predicted = true; red: predicted; blue: true)",
                      xaxis=dict(type="category"))  # fmt: skip
    return fig


def embedding_views(lm) -> None:
    model = lm.model
    if not getattr(model, "dynamic", False):
        return
    with torch.no_grad():
        emb = model.class_embeddings.weight.numpy()
        filt = model.filters().numpy()
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "Class embeddings (128-d), PCA", "Generated filters (64-d, L2-normalised), PCA"))  # fmt: skip
    for col, data in ((1, emb), (2, filt)):
        xy = pca_2d(data)
        fig.add_trace(go.Scatter(
            x=xy[:, 0], y=xy[:, 1], mode="markers+text", text=lm.classes,
            textposition="top center", showlegend=False,
            marker=dict(size=11, color=[charts.PALETTE[k % 10] for k in range(len(xy))]),
        ), row=1, col=col)  # fmt: skip
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=40, b=10))
    charts.chart(st, fig, key="dyn_pca")


with st.expander("New comparison", expanded=not dynamic_runs()):
    new_comparison_form()

found = dynamic_runs()
if not found:
    st.info("No dynamic-filter run has a checkpoint yet: start the comparison above "
            "(`python -m engine compare --preset dynamic-vs-static` does the same).")  # fmt: skip
    st.stop()

dyn = [r for r in found if (r.config or {}).get("dynamic", True)]
dyn.sort(
    key=lambda r: bool((r.config or {}).get("freeze_backbone"))
)  # the assignment's model first
static = [r for r in found if not (r.config or {}).get("dynamic", True)]
c1, c2, c3 = st.columns([2, 2, 1])
if not dyn:
    st.info("Only static runs so far; the dynamic one appears once it has a checkpoint.")
    st.stop()
by_id = {r.run_id: r for r in found}
run = by_id[c1.selectbox("Dynamic run", [r.run_id for r in dyn],
                         format_func=lambda i: run_label(by_id[i]))]  # fmt: skip
# Only static runs on the same data can be compared image by image; the same comparison's first.
group = (run.config or {}).get("group")
static = [r for r in static if (r.config or {}).get("data") == (run.config or {}).get("data")]
static.sort(key=lambda r: (r.config or {}).get("group") != group)
same_group = bool(static) and (static[0].config or {}).get("group") == group and group
other = c2.selectbox("Static run to compare", [None] + [r.run_id for r in static],
                     index=1 if same_group else 0,
                     format_func=lambda i: "none" if i is None else run_label(by_id[i]))  # fmt: skip
try:
    data = cache.dataset(json.dumps((run.config or {}).get("data"), sort_keys=True))
except inputs.LOAD_ERRORS as e:
    inputs.show_error(e)
    st.stop()
i = int(c3.number_input(f"Test image (0 … {len(data.test) - 1})", 0, len(data.test) - 1, 0))
image, true = data.test.images[i], int(data.test.labels[i])

try:
    maps, scores, lm = look(run, image)
except inputs.LOAD_ERRORS as e:  # a damaged checkpoint: say so, keep the page
    inputs.show_error(e)
    st.stop()
left, right = st.columns([1, 4])
left.image(pictures.png_bytes(image.permute(1, 2, 0).numpy(), scale=max(1, 128 // image.shape[-1])),
           caption=f"true: {lm.classes[true]}")  # fmt: skip
charts.chart(right, score_bars(scores, lm.classes, true), key="dyn_scores")
st.subheader("Response maps, dynamic filters")
charts.chart(st, response_grid(image, maps, scores, lm.classes, true), key="dyn_maps")
st.caption("Each class's 8x8 response map (rescaled by √64), upsampled to the image "
           "(bilinear); one colour scale for all ten.")  # fmt: skip

if other is not None:
    try:
        s_maps, s_scores, s_lm = look(by_id[other], image)
    except inputs.LOAD_ERRORS as e:
        inputs.show_error(e)
    else:
        st.subheader("The same image, static filters")
        charts.chart(st, score_bars(s_scores, s_lm.classes, true), key="static_scores")
        charts.chart(st, response_grid(image, s_maps, s_scores, s_lm.classes, true),
                        key="static_maps")  # fmt: skip

st.subheader("What the dynamic run learned per class")
embedding_views(lm)

if group:
    try:
        g = groups.load_group(group, picking.runs_dir())
    except runs.RunError as e:
        inputs.show_error(e)
    else:
        st.subheader("Training curves of the comparison")
        table = groups.comparison_table(g, picking.runs_dir())
        colours = {r["label"]: charts.PALETTE[k % 10] for k, r in enumerate(table)}
        metrics = {r["run"]: cache.load_metrics(picking.runs_dir() / r["run"])
                   for r in table if r["run"] and r["state"] != "removed"}  # fmt: skip
        charts.chart(st, charts.group_curves(table, metrics, colours), key="dyn_curves")
        st.dataframe(
            [{"row": r["label"], "state": r["state"], "params": r.get("total_params"),
              "s / epoch": r.get("seconds_per_epoch"), "best val acc": r.get("best_val_acc"),
              "test acc": r.get("test_acc")} for r in table],
            hide_index=True,
        )  # fmt: skip
        statistics.show_group_statistics(g, picking.runs_dir(), key="dynamic")
