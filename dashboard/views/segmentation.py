"""Segmentation (DLCV HW1 problem 3): predicted land-cover masks of chosen validation images
improving epoch by epoch, mean IoU and per-class IoU curves, the pixel confusion matrix, and
FCN-32s against an improved model side by side."""

import base64
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from dashboard.components import (
    cache,
    charts,
    gallery,
    inputs,
    picking,
    pictures,
    presenter,
    recipes,
    statistics,
    timing,
)
from engine.config import DataConfig, ModelConfig, OptimConfig, SegmentConfig
from engine.config.registry import SEGMENTATION
from engine.core.errors import WorkbenchError
from engine.data.landcover import CLASS_COLOURS, CLASS_NAMES, SCORED_CLASSES
from engine.execution.start import start_group, start_run
from engine.store import groups, runs
from engine.store.layout import RunLayout

st.title("🗺️ Segmentation")
st.caption(
    "DLCV HW1 problem 3: land cover of satellite images in seven DeepGlobe classes. Mean IoU "
    "is over the six classes other than Unknown, TP / (TP + FP + FN) summed over the whole "
    "validation set; Unknown pixels carry no loss. The default data are synthetic scenes in "
    "the same file format (`xxxx_sat.jpg` / `xxxx_mask.png`), generated on first use."
)
FOCUS = presenter.focus_toggle("segmentation")
if not FOCUS:
    recipes.show("DLCV HW1 problem 3: land-cover segmentation")
    gallery.offer_if_empty("segmentation", "segmentation run")
gallery.announce()
PRESET = "fcn32s-vs-improved"
IMPROVED = [m for m in SEGMENTATION if m != "fcn32s"]


def legend() -> None:
    chips = " ".join(
        f"<span style='display:inline-block;margin-right:14px'><span style='display:inline-block;"
        f"width:14px;height:14px;vertical-align:middle;border:1px solid #888;"
        f"background:rgb{colour}'></span> {name}</span>"
        for name, colour in zip(CLASS_NAMES, CLASS_COLOURS, strict=True)
    )
    st.markdown(chips, unsafe_allow_html=True)


def new_runs_form() -> None:
    d = SegmentConfig()
    with st.container():  # not a form: the estimate follows the settings
        c1, c2, c3 = st.columns([1, 2, 1])
        dataset = c1.selectbox("Dataset", ["landcover", "deepglobe"],
                               help="landcover: synthetic scenes; deepglobe: your folder of pairs")  # fmt: skip
        path = c2.text_input("Folder of xxxx_sat.jpg / xxxx_mask.png (for deepglobe)", "",
                             help="train/ and validation/ inside, or the pairs directly")  # fmt: skip
        improved = c3.selectbox("Improved model", IMPROVED, index=IMPROVED.index("fcn8s_lite0"),
                                help=SEGMENTATION["fcn8s_lite0"].description)  # fmt: skip
        c4, c5, c6, c7 = st.columns(4)
        epochs = c4.number_input("Epochs", 1, 200, d.epochs)
        lr = c5.number_input("Learning rate", 1e-6, 1.0, d.optim.lr, format="%.5f")
        size = c6.select_slider("Image size", [64, 96, 128, 160, 256, 512], d.data.image_size)
        batch = c7.number_input("Batch size", 1, 256, d.batch_size)
        s1, s2 = st.columns([1, 3])
        start = s1.selectbox(
            "Improved model starts from", ["imagenet", "coco_voc", "none"],
            format_func={"imagenet": "its backbone's ImageNet weights",
                         "coco_voc": "torchvision's COCO (VOC labels) weights, whole",
                         "none": "random weights"}.get,
            help="coco_voc: fcn_resnet50 and deeplabv3_resnet50 only (DLCV HW1's model B); "
            "every layer but the class scorers (`python -m engine weights fetch fcn_resnet50`)",
        )  # fmt: skip
        stems = s2.text_input("Validation images to follow (stems, comma-separated; blank: "
                              "three spread over the set)", "")  # fmt: skip
        c8, c9, c10 = st.columns(3)
        repeats = statistics.repeats_input(c10)
    try:
        base = SegmentConfig(
            data=DataConfig(name=dataset, path=inputs.typed_path(path), image_size=int(size)),
            model=ModelConfig(name=improved),
            optim=OptimConfig(lr=float(lr), weight_decay=0.0), epochs=int(epochs),
            batch_size=int(batch), mask_images=[s.strip() for s in stems.split(",") if s.strip()],
            backbone_weights=start,
        )  # fmt: skip
        c8.caption("FCN-32s vs improved:")
        with c8:
            timing.show_group_estimate(PRESET, base, repeats)
        c9.caption("The improved model only:")
        with c9:
            timing.show_estimate([base.validate()])
    except (WorkbenchError, OSError) as e:  # said when a button is pressed
        base, problem = None, e
    both = c8.button("▶ Train FCN-32s vs improved", type="primary")
    quick = c9.button("▶ Train the improved model only")
    if not (both or quick):
        return
    try:
        if base is None:
            raise problem
        if both:
            group = start_group(PRESET, base, picking.runs_dir(), repeats=repeats)
            st.session_state["seg_view"] = f"group:{group.group_id}"
        else:
            run_dir = start_run(base, picking.runs_dir())
            st.session_state["seg_view"] = f"run:{run_dir.name}"
    except (WorkbenchError, OSError) as e:  # each says what to do
        inputs.show_error(e)
        return
    st.toast("Started: the masks appear after the first epoch")


SHOWN_SIZE = 256  # larger images are shown at this size: the timeline holds every epoch


@st.cache_data(show_spinner=False, max_entries=1024)
def _png(path: str, stamp: tuple[int, int]) -> bytes | None:
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():  # a FIFO would hang the page; a device is no mask
        return None
    try:
        with Image.open(path) as im:
            if max(im.size) <= SHOWN_SIZE:
                return Path(path).read_bytes()
            # Nearest neighbour: a mask keeps its exact class colours.
            small = im.convert("RGB").resize((SHOWN_SIZE, SHOWN_SIZE), Image.Resampling.NEAREST)
            return pictures.png_bytes(np.asarray(small))
    except (OSError, UnidentifiedImageError):
        return None  # being written, or damaged: shown as missing


def png(path) -> bytes | None:
    stamp = cache.file_stamp(path)
    return None if stamp[0] < 0 else _png(str(path), stamp)


def data_uri(data: bytes | None) -> str:
    """A PNG as a data URI; a missing one as a grey pixel."""
    if data is None:
        data = pictures.png_bytes(np.full((1, 1, 3), 200, np.uint8))
    return "data:image/png;base64," + base64.b64encode(data).decode()


def stems_of(layout: RunLayout) -> list[str]:
    if not layout.mask_inputs.is_dir():
        return []
    return sorted(p.name.removesuffix("_sat.png") for p in layout.mask_inputs.glob("*_sat.png"))


def timeline_figure(columns: list[tuple[str, RunLayout]], stems, epochs, epoch, opacity):
    """Per image a row: satellite, ground truth, then each run's prediction at the epoch the
    slider (or ▶ Play) shows; masks drawn over the image with `opacity`."""
    first = columns[0][1]
    titles = []
    for stem in stems:
        titles += [f"{stem}: satellite", "ground truth"] + [f"{name}" for name, _ in columns]
    cols = 2 + len(columns)
    fig = make_subplots(rows=len(stems), cols=cols, subplot_titles=titles,
                        horizontal_spacing=0.01, vertical_spacing=0.04)  # fmt: skip
    moving = []  # indices of the prediction traces that frames replace
    sats = {stem: data_uri(png(first.mask_inputs / f"{stem}_sat.png")) for stem in stems}

    def prediction(layout: RunLayout, stem: str, e: int) -> str:
        data = png(layout.mask_dir(e) / f"{stem}.png")
        return data_uri(data) if data else sats[stem]  # not at that epoch (yet): the image

    for r, stem in enumerate(stems, start=1):
        sat = sats[stem]
        truth = data_uri(png(first.mask_inputs / f"{stem}_mask.png"))
        for c in range(1, cols + 1):
            fig.add_trace(go.Image(source=sat, hoverinfo="skip"), row=r, col=c)
            if c == 1:
                continue
            source = truth if c == 2 else prediction(columns[c - 3][1], stem, epoch)
            fig.add_trace(go.Image(source=source, opacity=opacity, hoverinfo="skip"), row=r, col=c)
            if c > 2:
                moving.append((len(fig.data) - 1, columns[c - 3][1], stem))
    fig.frames = [
        go.Frame(
            name=str(e), traces=[i for i, _, _ in moving],
            data=[go.Image(source=prediction(layout, stem, e), opacity=opacity)
                  for _, layout, stem in moving],
        )
        for e in epochs
    ]  # fmt: skip
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    width_per = 220 if cols <= 4 else 180
    fig.update_layout(
        height=len(stems) * width_per + 110, margin=dict(l=5, r=5, t=30, b=60),
        **charts.animation_controls([str(e) for e in epochs], epochs.index(epoch), y=-0.01),
    )  # fmt: skip
    return fig


def strip(layout: RunLayout, stems, epochs) -> None:
    """The assignment's figure: each image's prediction at the early, middle and final epochs (and
    every snapshot between when there are few)."""
    shown = epochs if len(epochs) <= 6 else sorted(
        {epochs[round(i * (len(epochs) - 1) / 5)] for i in range(6)}
    )  # fmt: skip
    header = st.columns(2 + len(shown))
    for col, text in zip(header, ["satellite", "ground truth", *(f"epoch {e}" for e in shown)],
                         strict=True):  # fmt: skip
        col.caption(text)
    for stem in stems:
        cols = st.columns(2 + len(shown))
        cols[0].image(png(layout.mask_inputs / f"{stem}_sat.png"), caption=stem)
        cols[1].image(png(layout.mask_inputs / f"{stem}_mask.png"))
        for col, e in zip(cols[2:], shown, strict=True):
            data = png(layout.mask_dir(e) / f"{stem}.png")
            if data:
                col.image(data)


def class_colour(c: int) -> str:
    return f"rgb{tuple(int(v * 0.8) for v in CLASS_COLOURS[c])}"  # darker: white stays visible


def iou_curves(named_events: list[tuple[str, list[dict]]]) -> go.Figure:
    """Left: validation mIoU per epoch of each run. Right: one run's per-class IoU per epoch;
    several runs: each run's per-class IoU at its latest epoch, side by side."""
    several = len(named_events) > 1
    right = "Per-class IoU, latest epoch" if several else f"Per-class IoU · {named_events[0][0]}"
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08,
                        subplot_titles=("Validation mean IoU", right))  # fmt: skip
    for k, (name, events) in enumerate(named_events):
        x, y = charts.epoch_series(events, "miou", "val")
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=name, legendgroup=name,
                                 line=dict(color=charts.PALETTE[k % 10])), row=1, col=1)  # fmt: skip
        if several:
            latest = [charts.epoch_series(events, f"iou/{cls}", "val")[1] for cls in SCORED_CLASSES]
            fig.add_trace(go.Bar(
                x=list(SCORED_CLASSES), y=[v[-1] if v else None for v in latest], name=name,
                legendgroup=name, showlegend=False, marker_color=charts.PALETTE[k % 10],
            ), row=1, col=2)  # fmt: skip
    if not several:
        for c, cls in enumerate(SCORED_CLASSES):
            x, y = charts.epoch_series(named_events[0][1], f"iou/{cls}", "val")
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=cls,
                                     line=dict(color=class_colour(c))), row=1, col=2)  # fmt: skip
        fig.update_xaxes(title_text="epoch", row=1, col=2)
    fig.update_xaxes(title_text="epoch", row=1, col=1)
    fig.update_yaxes(range=[0, 1.02])
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", y=-0.25), uirevision="iou")  # fmt: skip
    return fig


def pixel_confusion(layout: RunLayout, epochs: list[int], key: str) -> None:
    found = [e for e in epochs if layout.confusion_file(e).exists()]
    if not found:
        return
    epoch = st.select_slider("Epoch", found, found[-1], key=f"{key}_cm_epoch")
    try:
        cm = np.load(layout.confusion_file(epoch))
    except (OSError, ValueError) as e:
        st.warning(f"cannot read {layout.confusion_file(epoch)}: {e}")
        return
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    rows, cols = list(CLASS_NAMES[: cm.shape[0]]), list(CLASS_NAMES[: cm.shape[1]])
    fig = go.Figure(go.Heatmap(
        z=share, x=cols, y=rows, colorscale="Blues", zmin=0, zmax=1, customdata=cm,
        text=np.round(share * 100).astype(int), texttemplate="%{text}%",
        hovertemplate="true %{y} → predicted %{x}: %{customdata:,} pixels<extra></extra>",
    ))  # fmt: skip
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=30, b=10),
                      xaxis_title="predicted", yaxis=dict(title="true", autorange="reversed"),
                      title=f"Pixels at epoch {epoch} (share of each true class)")  # fmt: skip
    charts.chart(st, fig, key=f"{key}_cm")
    st.caption("Unknown is a true class only: no loss is trained on it, and whatever is "
               "predicted there counts as a false positive in that class's IoU.")  # fmt: skip


def segment_runs() -> list[runs.RunSummary]:
    return [
        r for r in runs.list_runs(picking.runs_dir()) if (r.config or {}).get("kind") == "segment"
    ]


def views() -> dict[str, str]:
    """key -> label: comparison groups first, then single runs."""
    out = {}
    for g in groups.list_groups(picking.runs_dir()):
        if isinstance(g, groups.Group) and g.preset == PRESET:
            out[f"group:{g.group_id}"] = f"⚖️ {g.group_id}"
    for r in segment_runs():
        label = (r.config or {}).get("label") or ""
        out[f"run:{r.run_id}"] = picking.run_label(r) + (f" · {label}" if label else "")
    return out


def show_run(run_dir, key: str, timeline: bool = True) -> None:
    layout = RunLayout(run_dir)
    status = runs.read_status(run_dir)
    events = cache.load_metrics(run_dir)
    st.markdown(picking.status_line(status))
    if status.get("error"):
        st.error(status["error"])
    frac, text = picking.progress_of(status, events)
    if status.get("state") != "finished":
        st.progress(frac, text=text)
    info = status.get("model_info") or {}
    if info:
        st.caption(f"{info.get('model')} · {info.get('total_params', 0):,} parameters · "
                   f"{info.get('weights_report', '')}")  # fmt: skip
    epochs, stems = layout.mask_epochs(), stems_of(layout)
    if not epochs or not stems:
        st.info("The first masks appear when the first epoch ends.")
        return
    name = info.get("model") or run_dir.name
    if timeline:
        opacity = st.slider("Mask opacity", 0.0, 1.0, 0.75, 0.05, key=f"{key}_opacity")
        charts.chart(st, timeline_figure([(name, layout)], stems, epochs, epochs[-1], opacity),
                        key=f"{key}_timeline")  # fmt: skip
    st.subheader("Early, middle, final")
    strip(layout, stems, epochs)
    st.subheader("IoU per epoch")
    charts.chart(st, iou_curves([(name, events)]), key=f"{key}_iou")
    st.subheader("Pixel confusion matrix")
    pixel_confusion(layout, epochs, key)


def show_group(group_id: str) -> None:
    try:
        g = groups.load_group(group_id, picking.runs_dir())
    except runs.RunError as e:
        inputs.show_error(e)
        return
    root = picking.runs_dir()
    table = groups.comparison_table(g, root)
    st.dataframe(
        [{"row": r["label"], "state": r["state"], "progress": r.get("progress"),
          "parameters": r.get("total_params"), "s / epoch": r.get("seconds_per_epoch"),
          "best val mIoU": r.get("best_val_miou"), "test mIoU": r.get("test_miou"),
          "test pixel acc.": r.get("test_acc")} for r in table],
        hide_index=True,
        column_config={
            "progress": st.column_config.ProgressColumn(min_value=0, max_value=1),
            "parameters": st.column_config.NumberColumn(format="localized"),
            "s / epoch": st.column_config.NumberColumn(format="%.1f"),
            **{c: st.column_config.NumberColumn(format="%.4f")
               for c in ("best val mIoU", "test mIoU", "test pixel acc.")},
        },
    )  # fmt: skip
    for r in table:
        if r.get("error"):
            st.error(f"{r['label']}: {r['error']}")
    present = [(r["label"], RunLayout(root / r["run"])) for r in table
               if r["run"] and r["state"] != "removed"]  # fmt: skip
    with_masks = [(n, lay) for n, lay in present if lay.mask_epochs()]
    if not with_masks:
        st.info("The first masks appear when the first run's first epoch ends.")
        return
    epochs = sorted(set().union(*(lay.mask_epochs() for _, lay in with_masks)))
    stems = stems_of(with_masks[0][1])
    opacity = st.slider("Mask opacity", 0.0, 1.0, 0.75, 0.05, key="group_opacity")
    charts.chart(st, timeline_figure(present, stems, epochs, epochs[-1], opacity),
                    key="group_timeline")  # fmt: skip
    st.caption("A row that has not reached an epoch yet shows the bare image there.")
    named = [(n, cache.load_metrics(lay.root)) for n, lay in present]
    charts.chart(st, iou_curves(named), key="group_iou")
    statistics.show_group_statistics(g, root, key="segmentation")
    pick = st.selectbox("Details of one row", [n for n, _ in present], key="group_detail")
    show_run(dict(present)[pick].root, key="detail", timeline=False)


legend()
if not FOCUS:
    with st.expander("New segmentation runs", expanded=not segment_runs()):
        new_runs_form()
        st.caption("The same from a terminal: `python -m engine compare --preset fcn32s-vs-improved`"
                   " or `python -m engine train --kind segment --model unet_small`.")  # fmt: skip

options = views()
if not options:
    st.info("No segmentation runs yet: start one above.")
    st.stop()
view = picking.remembered_select("Show", list(options), "seg_view", options.get)
kind, _, ident = view.partition(":")
try:
    watched = (
        groups.load_group(ident, picking.runs_dir()).run_dirs(picking.runs_dir())
        if kind == "group" else [picking.runs_dir() / ident]
    )  # fmt: skip
except runs.RunError as e:  # a damaged group file
    inputs.show_error(e)
    st.stop()
live = any(p.is_dir() and runs.is_active(p) for p in watched)


@st.fragment(run_every=3.0 if live else None)
def body() -> None:
    if kind == "group":
        show_group(ident)
    else:
        show_run(picking.runs_dir() / ident, key="run")


body()
