"""Charts: the split colours, training curves, a group's curves, animation controls, one chart() for every figure."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from dashboard.components import picking
from engine.sharing.archive import safe_file_name

SPLIT_STYLE = {  # one colour per split, the same on every chart
    "train": "#1f77b4",
    "train_epoch": "#1f77b4",
    "val": "#d62728",
    "test": "#2ca02c",
}


PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]  # fmt: skip


def series(events: list[dict], name: str, split: str) -> tuple[list, list]:
    pts = [(e["step"], e["value"]) for e in events if e["name"] == name and e.get("split") == split]
    pts = [(s, v) for s, v in pts if v is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def epoch_series(events: list[dict], name: str, split: str) -> tuple[list, list]:
    pts = [
        (e["epoch"], e["value"]) for e in events if e["name"] == name and e.get("split") == split
    ]
    return [p[0] for p in pts], [p[1] for p in pts]


def training_curves(events: list[dict], height: int = 360) -> go.Figure:
    """Loss (per logged step, per epoch, validation) and accuracy (train, validation) by step."""
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("Loss", "Accuracy"), horizontal_spacing=0.08
    )
    x, y = series(events, "loss", "train")
    fig.add_trace(
        go.Scatter(x=x, y=y, name="train loss (steps)", mode="lines",
                   line=dict(color=SPLIT_STYLE["train"], width=1), opacity=0.45),
        row=1, col=1,
    )  # fmt: skip
    for split, label, dash in (
        ("train_epoch", "train loss (epoch)", None),
        ("val", "val loss", None),
    ):
        x, y = series(events, "loss", split)
        fig.add_trace(
            go.Scatter(x=x, y=y, name=label, mode="lines+markers",
                       line=dict(color=SPLIT_STYLE[split], dash=dash)),
            row=1, col=1,
        )  # fmt: skip
    for split, label in (
        ("train", "train acc"),
        ("val", "val acc"),
        ("test", "test acc (best model)"),
    ):
        x, y = series(events, "acc", split)
        mode = "markers" if split == "test" else "lines+markers"
        marker = dict(size=12, symbol="star") if split == "test" else None
        fig.add_trace(
            go.Scatter(x=x, y=y, name=label, mode=mode, marker=marker,
                       line=dict(color=SPLIT_STYLE[split])),
            row=1, col=2,
        )  # fmt: skip
    fig.update_xaxes(title_text="training step")
    fig.update_yaxes(title_text="cross-entropy", row=1, col=1)
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=1, col=2)
    fig.update_layout(
        height=height, margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h", y=-0.25), uirevision="keep",
    )  # fmt: skip
    return fig


def group_curves(table: list[dict], metrics: dict[str, list[dict]], colours: dict) -> go.Figure:
    """A comparison group's train/val loss and accuracy per epoch (and each logged step at its
    fractional epoch, so a running row moves), one colour per row on every chart. `table`:
    engine.store.groups.comparison_table rows; `metrics`: run id -> events."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"),
                        horizontal_spacing=0.08)  # fmt: skip
    for r in (r for r in table if r["run"] in metrics):  # rows waiting for a run: no curves
        events = metrics[r["run"]]
        if r.get("steps_per_epoch"):  # every logged step, at its fractional epoch: moves live
            x, y = series(events, "loss", "train")
            fig.add_trace(
                go.Scatter(
                    x=[s / r["steps_per_epoch"] for s in x], y=y, mode="lines",
                    name=f"{r['label']} · steps", legendgroup=r["label"], showlegend=False,
                    line=dict(color=colours[r["label"]], width=1), opacity=0.35,
                    hovertemplate="step loss %{y:.3f}<extra></extra>",
                ),
                row=1, col=1,
            )  # fmt: skip
        for col, name in ((1, "loss"), (2, "acc")):
            for split, dash in ((("train_epoch" if name == "loss" else "train"), "dot"),
                                ("val", "solid")):  # fmt: skip
                x, y = epoch_series(events, name, split)
                fig.add_trace(
                    go.Scatter(
                        x=x, y=y, mode="lines+markers", name=f"{r['label']} · {split[:5]}",
                        legendgroup=r["label"], showlegend=(col == 1),
                        line=dict(color=colours[r["label"]], dash=dash),
                    ),
                    row=1, col=col,
                )  # fmt: skip
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="cross-entropy", row=1, col=1)
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=1, col=2)
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=40, b=10), uirevision="group",
                      legend=dict(orientation="h", y=-0.22))  # fmt: skip
    return fig


def animation_controls(frames: list[str], active: int, y: float = -0.02) -> dict:
    """Layout entries for a ▶ Play / ⏸ button and a slider over plotly frames named `frames`
    (epochs): `fig.update_layout(**animation_controls(...))`. Playing runs in the browser."""
    return dict(
        updatemenus=[dict(
            type="buttons", direction="left", x=0, y=y, xanchor="left", yanchor="top",
            buttons=[
                dict(label="▶ Play", method="animate",
                     args=[None, dict(frame=dict(duration=700, redraw=True),
                                      transition=dict(duration=300), fromcurrent=True)]),
                dict(label="⏸", method="animate",
                     args=[[None], dict(mode="immediate", frame=dict(duration=0, redraw=False))]),
            ],
        )],
        sliders=[dict(
            active=active, x=0.12, len=0.88, y=y, yanchor="top",
            currentvalue=dict(prefix="epoch "),
            steps=[dict(label=f, method="animate",
                        args=[[f], dict(mode="immediate", frame=dict(duration=0, redraw=True))])
                   for f in frames],
        )],
    )  # fmt: skip


def chart(where, fig: go.Figure, *, key: str, name: str | None = None, **kwargs):
    """`where.plotly_chart(fig, key=key, ...)` plus a download of the chart as interactive
    HTML (plotly's own export, plotly.js inside: it opens offline), made only when clicked.
    The chart's camera button saves it as PNG. Every chart of the dashboard goes through here."""
    event = where.plotly_chart(fig, key=key, **kwargs)
    where.download_button(
        "⬇ HTML", data=lambda: fig.to_html(include_plotlyjs=True, full_html=True),
        file_name=f"{safe_file_name(name or key)}.html", mime="text/html", key=f"{key}:html",
        on_click="ignore", type="tertiary", help="this chart as an interactive page",
    )  # fmt: skip
    return event


def ae_grid_table(group) -> None:
    """The A-E grid as the assignments tabulate it: setting, pre-training, fine-tuning, accuracy."""
    from engine.experiments.ae_grid import ae_table

    st.dataframe(ae_table(group, picking.runs_dir()), hide_index=True, column_config={
        "validation accuracy": st.column_config.NumberColumn(format="percent"),
        "test accuracy": st.column_config.NumberColumn(format="percent")})  # fmt: skip
