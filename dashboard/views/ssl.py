"""Self-supervised (DLCV HW1 and HW4, problem 2): BYOL pretraining watched live. The loss,
the collapse monitor and the kNN accuracy per epoch, the backbone's features projected across
epochs, the augmented view pairs the network is asked to match, and the A-E grid."""

import json
import math

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from dashboard.components import cache, charts, gallery, inputs, picking, pictures, recipes, timing
from dashboard.embedding_views import compact_projection
from engine.config import DataConfig, ModelConfig, OptimConfig, SSLConfig
from engine.core.errors import WorkbenchError
from engine.execution.start import start_run
from engine.experiments.ae_grid import ae_groups_using
from engine.experiments.ssl import view_augmentations
from engine.models.backbones import BACKBONES
from engine.ssl import TwoViewLoader, collapse_threshold
from engine.store import runs

st.title("🪞 Self-supervised")
st.caption(
    "BYOL: an online network (backbone → projector → predictor) learns to predict a slowly "
    "moving target network's projection of another augmented view of the same image; no "
    "labels, no negatives. Labels are used only to measure: the kNN accuracy of the "
    "backbone's features on held-out images. The pretrained backbone then starts rows C and E "
    "of the A–E grid."
)
recipes.show("DLCV HW1 and HW4, problem 2: self-supervised pretraining and the A–E grid")
gallery.announce()
gallery.offer_if_empty("ssl", "self-supervised run")
DATASETS = ["digits", "folder", "prefixed", "csv", "cifar10", "unlabelled"]
KNN_DATASETS = ["", "digits", "folder", "prefixed", "csv", "cifar10"]


def new_run_form() -> bool:
    """The form; True when it started a run."""
    d = SSLConfig()
    with st.container():  # not a form: the estimate follows the settings
        c1, c2, c3 = st.columns([1, 2, 1])
        dataset = c1.selectbox("Dataset", inputs.datasets_offered(DATASETS), help="labels, where there are any, are "
                               "used only by the kNN monitor")  # fmt: skip
        path = c2.text_input("Folder (not for digits)", "",
                             help="unlabelled: a flat folder of images, or a CSV list of file "
                             "names")  # fmt: skip
        backbone = c3.selectbox("Backbone", ["resnet18", "resnet50", *(
            b for b in BACKBONES if b not in ("resnet18", "resnet50"))])  # fmt: skip
        c4, c5, c6, c7 = st.columns(4)
        classes = c4.text_input("Only classes (optional)", "", placeholder="0,1,2,3,4",
                                help="e.g. pretrain on digits 0-4 and transfer to 5-9")  # fmt: skip
        size = c5.selectbox("Input size (px)", [32, 64, 96, 128], index=0,
                            help="32 for the digits; the assignments used 128")  # fmt: skip
        epochs = c6.number_input("Epochs", 1, 1000, d.epochs)
        lr = c7.number_input("Learning rate (Adam)", 1e-6, 1.0, d.optim.lr, format="%.5f")
        k1, k2 = st.columns([1, 3])
        knn_data = k1.selectbox(
            "kNN monitor data", inputs.datasets_offered(KNN_DATASETS),
            format_func=lambda n: inputs.DATASET_LABELS.get(n, n) if n else "the training images",
            help="labelled images to measure the backbone by, when the training images have no "
            "labels (unlabelled); without, the monitor shows the loss and the collapse measure",
        )  # fmt: skip
        knn_path = k2.text_input("kNN data folder (not for digits)", "")
    try:
        cfg = SSLConfig(
            data=DataConfig(name=dataset, path=inputs.typed_path(path), image_size=int(size),
                            classes=[c.strip() for c in classes.split(",") if c.strip()]),
            model=ModelConfig(name=backbone),
            optim=OptimConfig(lr=float(lr), weight_decay=0.0, schedule="none"),
            epochs=int(epochs), knn_data=knn_data, knn_data_path=inputs.typed_path(knn_path),
        )  # fmt: skip
        timing.show_estimate([cfg.validate()])
    except (WorkbenchError, OSError) as e:  # said when the button is pressed
        cfg, problem = None, e
    if not st.button("▶ Pretrain with BYOL", type="primary"):
        return False
    try:
        if cfg is None:
            raise problem
        run_dir = start_run(cfg, picking.runs_dir())
    except (WorkbenchError, OSError) as e:
        inputs.show_error(e)
        return False
    st.session_state["ssl_run"] = run_dir.name
    st.toast("Started: the monitor fills in as epochs end")
    return True


def ssl_runs() -> list[runs.RunSummary]:
    return [r for r in runs.list_runs(picking.runs_dir()) if (r.config or {}).get("kind") == "ssl"]


def monitor_figure(
    events: list[dict], random_init: float | None, dim: int, knn_off: bool = False
) -> go.Figure:
    """BYOL loss; kNN accuracy against the random-init backbone; the projections' spread
    against a healthy 1/sqrt(d) and the collapse threshold."""
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.07, subplot_titles=(
        "BYOL loss (2 − 2 cos, both directions)", "kNN accuracy (held-out images)",
        "Spread of normalised projections"))  # fmt: skip
    steps, loss = charts.series(events, "loss", "train")
    fig.add_trace(go.Scatter(x=steps, y=loss, name="train (steps)", mode="lines",
                             line=dict(color="#9ecae1")), 1, 1)  # fmt: skip
    for split, name, colour in (("train_epoch", "train (epoch mean)", "#1f77b4"),
                                ("val", "validation views", "#ff7f0e")):  # fmt: skip
        epochs, values = charts.epoch_series(events, "loss", split)
        step_of = {e["epoch"]: e["step"] for e in events if e["name"] == "loss" and
                   e.get("split") == split}  # fmt: skip
        fig.add_trace(go.Scatter(x=[step_of[e] for e in epochs], y=values, name=name,
                                 mode="lines+markers", line=dict(color=colour)), 1, 1)  # fmt: skip
    epochs, knn = charts.epoch_series(events, "knn_acc", "val")
    fig.add_trace(go.Scatter(x=epochs, y=knn, name="BYOL backbone", mode="lines+markers",
                             line=dict(color="#2ca02c")), 1, 2)  # fmt: skip
    if not knn:  # no labelled images to measure by (or no epoch yet): say which
        fig.add_annotation(text="kNN off: no labelled images" if knn_off else "after epoch 1",
                           xref="x2 domain", yref="y2 domain", x=0.5, y=0.5, showarrow=False,
                           font=dict(color="#7f7f7f"))  # fmt: skip
        fig.update_yaxes(range=[0, 1], row=1, col=2)
    if random_init is not None:
        fig.add_hline(y=random_init, line=dict(dash="dash", color="#7f7f7f"), row=1, col=2,
                      annotation_text=f"random init {random_init:.1%}",
                      annotation_position="bottom right")  # fmt: skip
    epochs, spread = charts.epoch_series(events, "collapse_std", "val")
    fig.add_trace(go.Scatter(x=epochs, y=spread, name="std", mode="lines+markers",
                             line=dict(color="#9467bd")), 1, 3)  # fmt: skip
    fig.add_hline(y=1 / math.sqrt(dim), line=dict(dash="dash", color="#2ca02c"), row=1, col=3,
                  annotation_text="healthy 1/√d", annotation_position="top right")  # fmt: skip
    fig.add_hline(y=collapse_threshold(dim), line=dict(dash="dot", color="#d62728"), row=1,
                  col=3, annotation_text="collapse", annotation_position="bottom right")  # fmt: skip
    fig.update_xaxes(title_text="step", row=1, col=1)
    dtick = max(1, math.ceil(len(epochs) / 10))  # whole epochs, at most ~10 ticks
    fig.update_xaxes(title_text="epoch", dtick=dtick, row=1, col=2)
    fig.update_xaxes(title_text="epoch", dtick=dtick, row=1, col=3)
    fig.update_yaxes(tickformat=".0%", row=1, col=2)
    fig.update_yaxes(rangemode="tozero", row=1, col=3)
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", y=-0.2))  # fmt: skip
    return fig


def monitor(run: runs.RunSummary) -> None:
    status = runs.read_status(run.path)
    events = cache.load_metrics(run.path)
    info = status.get("model_info") or {}
    cfg = run.config or {}
    dim = int(cfg.get("projection_dim", 256))
    st.markdown(picking.status_line(status))
    _, knn = charts.epoch_series(events, "knn_acc", "val")
    _, spread = charts.epoch_series(events, "collapse_std", "val")
    random_init = info.get("knn_acc_random_init")
    if info.get("knn"):  # no labelled images: loss and the collapse measure only
        st.info(info["knn"])
    elif info.get("knn_data"):
        st.caption(f"kNN monitor on another, labelled dataset: {info['knn_data']}")
    c1, c2, c3, c4 = st.columns(4)
    if info.get("knn"):  # the loss is what there is to watch
        _, val_loss = charts.epoch_series(events, "loss", "val")
        c1.metric("Validation loss, last epoch", f"{val_loss[-1]:.4f}" if val_loss else "–")
        c2.metric("Lowest validation loss", f"{min(val_loss):.4f}" if val_loss else "–",
                  help="best.pt is this epoch's: without labels, the loss chooses")  # fmt: skip
        c3.metric("Epochs done", len(val_loss))
    else:
        c1.metric("kNN accuracy, last epoch", f"{knn[-1]:.1%}" if knn else "–",
                  f"{knn[-1] - random_init:+.1%} vs random init"
                  if knn and random_init is not None else None)  # fmt: skip
        c2.metric("Best kNN accuracy", f"{max(knn):.1%}" if knn else "–")
        c3.metric("Random-init backbone",
                  f"{random_init:.1%}" if random_init is not None else "–")  # fmt: skip
    c4.metric("Projection spread", f"{spread[-1]:.4f}" if spread else "–",
              help=f"std of the L2-normalised projections, mean over the {dim} dimensions: "
              f"≈ 1/√{dim} = {1 / math.sqrt(dim):.4f} when spread over the sphere, 0 when "
              "collapsed")  # fmt: skip
    if spread and spread[-1] < collapse_threshold(dim):
        st.warning(
            f"⚠️ Collapse: the normalised projections' spread is {spread[-1]:.4f}, under "
            f"{collapse_threshold(dim):.4f} (a quarter of a healthy 1/√{dim}). The network "
            "maps every image to nearly the same point; try a lower learning rate, a higher "
            "target momentum, or check that the two views differ."
        )  # fmt: skip
    if not events:
        st.info("Waiting for the first steps…")
        return
    charts.chart(st, monitor_figure(events, random_init, dim, bool(info.get("knn"))),
                 key="ssl_monitor")  # fmt: skip
    summary = status.get("summary") or {}
    if summary.get("backbone_file") and summary.get("knn"):
        st.markdown(
            f"Pretrained backbone: `{summary['backbone_file']}` (the last epoch's). Give "
            "this run to the A–E grid (last tab), or as the weights of a transfer run."
        )
    elif summary.get("backbone_file"):
        st.markdown(f"Pretrained backbone: `{summary['backbone_file']}`. Test-split kNN "
                    f"accuracy of the last epoch's backbone (what transfers): "
                    f"{versus_random_init(summary, info)}. Give this run to the A–E grid (last "
                    "tab), or as the weights of a transfer run.")  # fmt: skip


def versus_random_init(summary: dict, info: dict) -> str:
    """'**95.2%** [93.1%, 96.7%] vs the random-init backbone's 94.1% [...]: within noise
    (exact McNemar, p = 0.4)'; older runs: the two numbers alone."""
    acc, baseline = summary.get("test_knn_acc", 0), info.get("test_knn_acc_random_init")
    v = summary.get("test_knn_vs_random_init")
    if not isinstance(v, dict) or baseline is None:
        return f"**{acc:.1%}**" + (f"; the random-init backbone's: {baseline:.1%}"
                                   if baseline is not None else "")  # fmt: skip
    lo, hi = v["ci95"]
    rlo, rhi = v["random_init_ci95"]
    return (
        f"**{acc:.1%}** [{lo:.1%}, {hi:.1%}] vs the random-init backbone's {baseline:.1%} "
        f"[{rlo:.1%}, {rhi:.1%}] on the same images: **{v['verdict']}** (exact McNemar, "
        f"p = {v['p']:.2g}; {v['detail']})"
    )


def view_pairs(run: runs.RunSummary, count: int, seed: int) -> None:
    try:
        cfg = SSLConfig.from_dict(run.config)
        splits = cache.dataset(json.dumps(run.config["data"], sort_keys=True))
    except inputs.LOAD_ERRORS as e:  # the data moved: say so, keep the page
        inputs.show_error(e)
        return
    count = min(count, len(splits.train))  # a tiny dataset has fewer images than asked for
    pick = np.random.default_rng(seed).choice(len(splits.train), count, replace=False)
    images = splits.train.images[np.sort(pick)]
    loader = TwoViewLoader(splits.train, cfg.batch_size, [0, 0, 0], [1, 1, 1], "cpu", seed=seed,
                           views=view_augmentations(cfg))  # fmt: skip
    views = (loader.two_views(images) * 255).round().clamp(0, 255).byte()  # (n, 2, 3, H, W)
    tiles = np.concatenate([images.numpy(), views[:, 0].numpy(), views[:, 1].numpy()])
    grid = pictures.tile_grid(tiles, rows=3, labels=[""] * len(tiles), ok=[True] * len(tiles),
                             scale=max(1, 96 // cfg.data.image_size), frame="white")  # fmt: skip
    st.image(pictures.png_bytes(grid), width="stretch",
             caption="rows: the image, view a (always blurred), view b (rarely blurred)")  # fmt: skip
    view_a = view_augmentations(cfg)[0]
    st.caption(
        f"Each view: random resized crop keeping {view_a.crop_scale[0]:.0%}–100% of the area, "
        + ("horizontal flip (p 0.5), " if view_a.flip_p else "no flips, ")
        + "colour jitter (p 0.8: brightness and contrast ±40%, "
        "saturation ±20%, hue ±0.1), grayscale (p 0.2), Gaussian blur (view a always, view b "
        "p 0.1; σ scaled to the image size). BYOL asks the two views to map to one point."
    )


def grid_view(run: runs.RunSummary) -> None:
    found = ae_groups_using(run.path, picking.runs_dir())
    if not found:
        st.info(
            "No A–E grid uses this backbone yet. On the **Transfer** page pick the preset "
            "`a-e` and this run as the self-supervised backbone, or: `python -m engine compare "
            f"--preset a-e --model {(run.config.get('model') or {}).get('name', 'resnet18')} "
            f"--ssl-weights {run.run_id} "
            "--supervised-weights <a supervised run, or imagenet>`."
        )
        return
    ids = [g.group_id for g in found]
    group = found[ids.index(st.selectbox("A–E grid", ids, key="ssl_grid"))]
    charts.ae_grid_table(group)


found = ssl_runs()
with st.expander("New BYOL run", expanded=not found):
    if new_run_form():
        found = ssl_runs()
    st.caption("The same from a terminal: `python -m engine train --kind ssl` (options: "
               "`--classes`, `--image-size`, `--model resnet50`, `--crop-scale-min`, …).")  # fmt: skip

if not found:
    st.info("No self-supervised run yet: start one above.")
    st.stop()
by_id = {r.run_id: r for r in found}
run = by_id[picking.remembered_select("Run", list(by_id), "ssl_run",
                                      lambda i: picking.run_label(by_id[i]))]  # fmt: skip
live = run.state in runs.ACTIVE


@st.fragment(run_every=2.0 if live else None)
def live_monitor() -> None:
    monitor(run)


tab_monitor, tab_embed, tab_views, tab_grid = st.tabs(
    ["Monitor", "Embeddings across epochs", "Augmented views", "A–E grid"]
)
with tab_monitor:
    live_monitor()
with tab_embed:
    st.caption("The online backbone's features of held-out images at each snapshot epoch, "
               "coloured by their labels (never seen in training); × where the kNN label is wrong.")  # fmt: skip
    n = len(run.status.get("classes") or []) or 10
    compact_projection(run.path, pictures.class_names(run.status, n), "ssl_embed")
with tab_views:
    c1, c2 = st.columns([1, 3])
    count = int(c1.number_input("Images", 4, 24, 12, key="ssl_views_n"))
    seed = int(c2.number_input("Draw (seed)", 0, 10_000, 0, key="ssl_views_seed"))
    view_pairs(run, count, seed)
with tab_grid:
    grid_view(run)
