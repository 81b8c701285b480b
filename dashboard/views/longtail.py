"""Long tail (the Tsinghua DL HW2, task C): one long-tailed training split, trained with cross-entropy,
Balanced Softmax and class-weighted cross-entropy. The class counts, accuracy per class
against its training count, many / medium / few-shot accuracy, the confusion matrices side by
side, and how the tail classes' images drift to the head classes."""

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from dashboard.components import charts, gallery, inputs, picking, recipes, statistics, timing
from engine.analysis.long_tail import long_tail_report
from engine.config import DataConfig, ModelConfig, OptimConfig, RunConfig
from engine.core.errors import WorkbenchError
from engine.execution.start import start_group
from engine.store import groups, runs

PRESET = "long-tail"

st.title("🦎 Long tail")
st.caption(
    "Real data is rarely balanced: a few head classes have most images, many tail classes "
    "have few. Trained with plain cross-entropy on such a split, a network learns the skew and "
    "gives tail images to head classes. **Balanced Softmax** (Ren et al., NeurIPS 2020) trains "
    "on logits + log n_j (n_j: class j's training images) and predicts with the plain logits; "
    "class-weighted cross-entropy weights class j by N / (C n_j). Validation and test stay "
    "balanced, so their accuracy weighs every class alike."
)
recipes.show("Tsinghua DL HW2 task C: long-tailed training")
gallery.announce()
gallery.offer_if_empty("longtail", "long-tail comparison")


def new_comparison_form() -> None:
    with st.container():  # not a form: the estimate follows the settings
        c1, c2, c3 = st.columns([1, 2, 1])
        dataset = c1.selectbox(
            "Dataset", inputs.datasets_offered(["digits", "folder", "prefixed", "cifar10"])
        )
        path = c2.text_input("Folder (not for digits)", "")
        model = c3.selectbox("Model", ["small_cnn", "resnet18", "resnext18", "resnet34"])
        c4, c5, c6, c7 = st.columns(4)
        repeats = statistics.repeats_input(c7)
        ratio = c4.number_input("Imbalance ratio ρ (head / tail)", 1.0, 1000.0, 50.0,
                                help="class j keeps n_max · ρ^(−j/(C−1)) training images")  # fmt: skip
        epochs = c5.number_input("Epochs", 1, 500, RunConfig().epochs)
        lr = c6.number_input("Learning rate", 1e-6, 1.0, RunConfig().optim.lr, format="%.4f")
    try:
        base = RunConfig(
            data=DataConfig(name=dataset, path=inputs.typed_path(path),
                            imbalance_ratio=float(ratio)),
            model=ModelConfig(name=model), optim=OptimConfig(lr=float(lr)), epochs=int(epochs),
        )  # fmt: skip
        timing.show_group_estimate(PRESET, base, repeats)
    except (WorkbenchError, OSError) as e:  # said when the button is pressed
        base, problem = None, e
    if not st.button("▶ Train CE vs Balanced Softmax vs weighted CE", type="primary"):
        return
    try:
        if base is None:
            raise problem
        group = start_group(PRESET, base, picking.runs_dir(), repeats=repeats)
    except (WorkbenchError, OSError) as e:  # ConfigError, DataError, RunError
        inputs.show_error(e)
        return
    st.session_state["lt_group"] = group.group_id
    st.toast(f"Started {group.group_id}")


def counts_chart(counts: np.ndarray, classes: list[str]) -> go.Figure:
    order = np.argsort(-counts, kind="stable")
    fig = go.Figure(go.Bar(x=[classes[i] for i in order], y=counts[order],
                           marker_color="#1f77b4", text=counts[order], textposition="outside"))  # fmt: skip
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), title="Training images "
                      "per class (sorted)", xaxis=dict(type="category", title="class"),
                      yaxis=dict(title="images"))  # fmt: skip
    return fig


def per_class_chart(reports: dict, classes: list[str], colours: dict) -> go.Figure:
    fig = go.Figure()
    for label, rep in reports.items():
        fig.add_trace(go.Scatter(
            x=rep.train_counts, y=rep.per_class, mode="markers+text", name=label,
            text=classes, textposition="top center", marker=dict(size=10, color=colours[label]),
            hovertemplate="class %{text}: %{y:.0%} with %{x} training images<extra></extra>",
        ))  # fmt: skip
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=30, b=10),
                      title="Test accuracy per class against its training images",
                      xaxis=dict(type="log", title="training images (log)"),
                      yaxis=dict(title="accuracy", tickformat=".0%", range=[-0.05, 1.1]))  # fmt: skip
    return fig


def drift_chart(reports: dict, classes: list[str], colours: dict) -> go.Figure:
    fig = go.Figure()
    for label, rep in reports.items():
        order = np.argsort(-rep.train_counts, kind="stable")
        fig.add_trace(go.Bar(x=[classes[i] for i in order], y=rep.to_larger[order], name=label,
                             marker_color=colours[label]))  # fmt: skip
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), barmode="group",
                      title="Drift to the head: share of each class's test images given to a "
                      "class with more training images", xaxis=dict(type="category", title="class, head → "
                      "tail"), yaxis=dict(tickformat=".0%"))  # fmt: skip
    return fig


def confusion_heatmap(cm: np.ndarray, classes: list[str], title: str) -> go.Figure:
    rows = cm.sum(1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm, dtype=float), where=rows > 0)
    fig = go.Figure(go.Heatmap(z=share, x=classes, y=classes, colorscale="Blues", zmin=0, zmax=1,
                               customdata=cm, hovertemplate="true %{y} → predicted %{x}: "
                               "%{customdata} (%{z:.0%})<extra></extra>", showscale=False))  # fmt: skip
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=30, b=10), title=title,
                      xaxis=dict(title="predicted", type="category"),
                      yaxis=dict(title="true", type="category", autorange="reversed"))  # fmt: skip
    return fig


def render(group: groups.Group) -> None:
    root = picking.runs_dir()
    table = groups.comparison_table(group, root)
    st.dataframe([{"row": r["label"], "state": r["state"], "progress": r.get("progress"),
                   "test acc": r.get("test_acc")} for r in table], hide_index=True,
                 column_config={"progress": st.column_config.ProgressColumn(min_value=0, max_value=1),
                                "test acc": st.column_config.NumberColumn(format="percent")})  # fmt: skip
    statistics.show_group_statistics(group, root, key="long_tail")
    done = {}
    for r in table:
        finished = r["run"] and r["state"] == "finished"
        summary = runs.read_status(root / r["run"]).get("summary") if finished else None
        summary = summary if isinstance(summary, dict) else {}  # damaged: shown as unfinished
        if summary.get("test_confusion") and summary.get("train_counts"):
            done[r["label"]] = summary
    if not done:
        st.info("The charts fill in as the runs finish.")
        return
    first = next(iter(done.values()))
    counts = np.asarray(first["train_counts"])
    classes = [str(c) for c in first.get("classes") or range(len(counts))]
    charts.chart(st, counts_chart(counts, classes), key="lt_counts")
    top = int(counts.max())
    if top >= 3:
        c1, c2 = st.columns(2)
        many = c1.slider("Many-shot: more than … training images", 2, top, min(100, top - 1))
        few = c2.slider("Few-shot: fewer than … training images", 1, many, min(20, many))
    else:  # two images at most: nothing to slide between
        many, few = 1, 2
        st.caption("Every class has at most two training images: one many-shot group.")
    try:
        reports = {label: long_tail_report(s["test_confusion"], s["train_counts"], many, few)
                   for label, s in done.items()}  # fmt: skip
    except ValueError as e:
        inputs.show_error(e)
        return
    colours = {label: charts.PALETTE[i % 10] for i, label in enumerate(done)}
    groups_of = next(iter(reports.values())).groups
    sizes = {k: len(v) for k, v in groups_of.items()}
    st.dataframe([{"loss": label, "test acc": done[label].get("test_acc"),
                   **{f"{k} ({sizes[k]} classes)": rep.group_accuracy[k] for k in sizes}}
                  for label, rep in reports.items()], hide_index=True,
                 column_config={c: st.column_config.NumberColumn(format="percent") for c in
                                ["test acc", *(f"{k} ({sizes[k]} classes)" for k in sizes)]})  # fmt: skip
    charts.chart(st, per_class_chart(reports, classes, colours), key="lt_per_class")
    labels = list(done)
    a, b = st.columns(2)
    left = a.selectbox("Left", labels, index=0, key="lt_left")
    right = b.selectbox("Right", labels, index=min(1, len(labels) - 1), key="lt_right")
    charts.chart(a, confusion_heatmap(np.asarray(done[left]["test_confusion"]), classes, left),
                   key="lt_cm_left")  # fmt: skip
    charts.chart(b, confusion_heatmap(np.asarray(done[right]["test_confusion"]), classes, right),
                   key="lt_cm_right")  # fmt: skip
    charts.chart(st, drift_chart(reports, classes, colours), key="lt_drift")


with st.expander("New long-tail comparison", expanded=False):
    new_comparison_form()
    st.caption("The same from a terminal: `python -m engine compare --preset long-tail "
               "--imbalance-ratio 50`.")  # fmt: skip

found = [g for g in groups.list_groups(picking.runs_dir())
         if isinstance(g, groups.Group) and g.preset == PRESET]  # fmt: skip
if not found:
    st.info("No long-tail comparison yet: start one above.")
    st.stop()
by_id = {g.group_id: g for g in found}
group = by_id[picking.remembered_select("Comparison", list(by_id), "lt_group")]
live = any(d.is_dir() and runs.is_active(d) for d in group.run_dirs(picking.runs_dir()))


@st.fragment(run_every=3.0 if live else None)
def live_render() -> None:
    render(group)


live_render()
