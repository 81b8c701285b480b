"""Shared pieces of the pages: run picker, status, metric charts, image grids.

Reading is cheap and cached by file size + mtime, so a fragment that reruns every second
only re-reads what changed.
"""

from __future__ import annotations

import io
import os
from datetime import datetime
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from engine.sharing.archive import safe_file_name
from engine.store import runs
from engine.store.layout import RunLayout

STATE_ICONS = {
    "queued": "⏳",
    "running": "🏃",
    "finished": "✅",
    "stopped": "⏸️",
    "failed": "❌",
    "stale": "💤",
    "damaged": "⚠️",
}
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


def through_app() -> None:
    """Call first on every page. On a fresh server, Streamlit runs the first request's page the
    old way (its `pages/` folder discovery stays on until `st.navigation` has run once), so a
    deep link such as /transfer would run without app.py: no navigation, no wide layout.
    Rerun once, through app.py. Once per process: only a server's first request needs it
    (streamlit's AppTest resets the flag on every run, and there a rerun would drop a click)."""
    from streamlit.runtime.pages_manager import PagesManager

    global _through_app_checked
    if _through_app_checked:
        return
    _through_app_checked = True
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


_through_app_checked = False


def runs_dir() -> Path:
    return runs.default_runs_dir()


def file_stamp(path: Path) -> tuple[int, int]:
    try:
        s = path.stat()
        return s.st_size, s.st_mtime_ns
    except OSError:
        return -1, -1


@st.cache_data(show_spinner=False, max_entries=64)
def _metrics_cached(path: str, stamp: tuple[int, int]) -> list[dict]:
    # `stamp` (size, mtime) is part of the cache key: a grown file is read again.
    return runs.read_metrics(path)


def load_metrics(run_dir: Path) -> list[dict]:
    return _metrics_cached(str(run_dir), file_stamp(RunLayout(run_dir).metrics))


def run_label(r: runs.RunSummary) -> str:
    icon = STATE_ICONS.get(r.state, "•")
    name = (r.config or {}).get("name") or ""
    return f"{icon} {r.run_id}" + (f" · {name}" if name else "")


def run_picker(
    label: str = "Run",
    key: str = "run_picker",
    require_snapshots: bool = False,
    exclude_kinds: tuple[str, ...] = (),
):
    """Select a run; remembers the choice across pages in session_state['run']."""
    all_runs = [
        r for r in runs.list_runs(runs_dir()) if (r.config or {}).get("kind") not in exclude_kinds
    ]
    if require_snapshots:
        all_runs = [r for r in all_runs if RunLayout(r.path).embedding_epochs()]
    if not all_runs:
        return None
    by_id = {r.run_id: r for r in all_runs}
    chosen = remembered_select(label, list(by_id), "run", lambda i: run_label(by_id[i]), key=key)
    return by_id[chosen]


def remembered_select(label: str, options: list, remember: str, format_func=str, where=st,
                      key: str | None = None):  # fmt: skip
    """A selectbox that starts on `session_state[remember]` when it is still an option (the
    first one otherwise) and stores the choice there: pages share what was last looked at."""
    current = st.session_state.get(remember)
    chosen = where.selectbox(
        label, options, index=options.index(current) if current in options else 0,
        format_func=format_func, key=key,
    )  # fmt: skip
    st.session_state[remember] = chosen
    return chosen


def no_runs_message(what: str = "runs") -> None:
    st.info(f"No {what} yet. Start the demo on the **Home** page, or a run on the **Train** page.")


def status_line(status: dict) -> str:
    state = status.get("state", "?")
    text = f"{STATE_ICONS.get(state, '')} **{state}**"
    if status.get("created"):
        text += f" · created {datetime.fromtimestamp(status['created']):%Y-%m-%d %H:%M:%S}"
    if status.get("data"):
        text += f" · {status['data']}"
    return text


def progress_of(status: dict, events: list[dict]) -> tuple[float, str]:
    """Fraction done and a caption, from the latest step seen."""
    total = status.get("total_steps") or 0
    step = max((e.get("step") or 0 for e in events), default=0)
    step = max(step, status.get("step") or 0)
    epoch = max((e.get("epoch") or 0 for e in events if e.get("split") == "val"), default=0)
    if status.get("state") == "finished":
        return 1.0, "finished"
    if not total:
        return 0.0, "loading data…"
    return min(step / total, 1.0), f"step {step} / {total} · epoch {epoch} done"


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


def tile_grid(images: np.ndarray, rows: int, labels: list[str], ok: list[bool],
              scale: int = 1, frame: str | None = None) -> np.ndarray:  # fmt: skip
    """(n, 3, H, W) uint8 images -> one (R, C) mosaic: each tile framed green (ok) or red (or
    all in `frame`), with its label written in its corner. One picture instead of dozens of
    elements."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=14)
    n, _, h, w = images.shape
    cols = -(-n // rows)
    pad, th, tw = 3, h * scale, w * scale
    canvas = Image.new("RGB", (cols * (tw + 2 * pad + 2), rows * (th + 2 * pad + 2)), "white")
    draw = ImageDraw.Draw(canvas)
    for i in range(n):
        r, c = divmod(i, cols)
        x0, y0 = c * (tw + 2 * pad + 2), r * (th + 2 * pad + 2)
        tile = Image.fromarray(np.ascontiguousarray(images[i].transpose(1, 2, 0)))
        draw.rectangle([x0, y0, x0 + tw + 2 * pad - 1, y0 + th + 2 * pad - 1],
                       fill=frame or ("#2ca02c" if ok[i] else "#d62728"))  # fmt: skip
        canvas.paste(tile.resize((tw, th), Image.Resampling.NEAREST), (x0 + pad, y0 + pad))
        if not labels[i]:
            continue
        box = draw.textbbox((x0 + pad + 2, y0 + pad), labels[i], font=font)
        draw.rectangle([x0 + pad, y0 + pad, box[2] + 2, box[3] + 2], fill="white")
        draw.text((x0 + pad + 2, y0 + pad), labels[i], fill="black", font=font)
    return np.asarray(canvas)


def png_bytes(image: np.ndarray, scale: int = 1) -> bytes:
    """(H, W, 3) or (3, H, W) uint8 -> PNG bytes, optionally upscaled with nearest neighbour."""
    from PIL import Image

    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
        image = np.transpose(image, (1, 2, 0))
    im = Image.fromarray(np.ascontiguousarray(image))
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def class_names(status: dict, n: int) -> list[str]:
    """The run's class names (written when its data loaded), or 0..n-1."""
    classes = status.get("classes") or (status.get("summary") or {}).get("classes")
    if isinstance(classes, list) and len(classes) >= n:
        return [str(c) for c in classes]
    return [str(i) for i in range(n)]


def show_error(e: Exception) -> None:
    """Errors as the user can act on them; never a traceback."""
    st.error(str(e) or type(e).__name__)


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


def typed_path(text: str) -> str | None:
    """A data folder typed into a form: None when blank; ConfigError (naming the allowed
    folders) when it lies outside the data roots (engine.data.roots)."""
    from engine.data.roots import check_data_path

    return str(check_data_path(text.strip())) if text.strip() else None


def check_run_data(run_dir) -> None:
    """ConfigError when the run's data folder lies outside the data roots: a run imported
    from another machine can name any folder, and the dashboard reads only under its roots."""
    from engine.data.roots import check_data_path

    path = runs.load_config(run_dir).data.path
    if path:
        check_data_path(path)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


MAX_UPLOAD_MB = 10


def read_image_upload(upload, max_mb: int = MAX_UPLOAD_MB):
    """An uploaded file (anything with .name, .size, .getvalue()) as a (3, H, W) uint8 tensor;
    ValueError naming the file when it is too large or not an image."""
    import torch
    from PIL import Image, UnidentifiedImageError

    from engine.data.sources import pil_to_rgb

    if upload.size > max_mb * 2**20:
        raise ValueError(f"{upload.name} is {upload.size / 2**20:.1f} MB; the limit is {max_mb} MB")
    try:
        with Image.open(io.BytesIO(upload.getvalue())) as im:
            if im.width * im.height > 40_000_000:
                raise ValueError(f"{im.width}x{im.height} pixels is too large")
            arr = pil_to_rgb(im)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"{upload.name} is not an image this page can read ({e})") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def ae_grid_table(group) -> None:
    """The A-E grid as the seeds tabulate it: setting, pre-training, fine-tuning, accuracy."""
    from engine.experiments.ae_grid import ae_table

    st.dataframe(ae_table(group, runs_dir()), hide_index=True, column_config={
        "validation accuracy": st.column_config.NumberColumn(format="percent"),
        "test accuracy": st.column_config.NumberColumn(format="percent")})  # fmt: skip
