"""Transfer: pretrained backbones trained from scratch, fine-tuned, or frozen, side by side.

A comparison is a group of runs on the same split and seed (engine.store.groups); this page makes
one from a preset, trains its runs one after another, and overlays what they did.
"""

import statistics as stats_lib
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

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
from engine.config import DataConfig, ModelConfig, OptimConfig, TransferConfig
from engine.core.errors import WorkbenchError
from engine.data.roots import check_data_path, data_roots
from engine.execution import comparisons, launcher
from engine.execution.start import start_group
from engine.experiments import presets
from engine.inspect.projection_cache import project_run
from engine.inspect.snapshots import load_embedding
from engine.models.backbones import BACKBONES
from engine.sharing import archive
from engine.sharing.report import group_report
from engine.store import groups, runs
from engine.store.layout import RunLayout

st.title("🔁 Transfer learning")
st.caption(
    "Does a pretrained backbone help, and how should it be trained? Each comparison trains "
    "the same backbone on the same split and seed in several modes: **fine-tuned** "
    "(everything trains), **frozen** (a fixed feature extractor: only the new head trains, on "
    "features computed once) and **from scratch** (no pretraining). EfficientNet-Lite0's "
    "ImageNet weights ship with the workbench, so this works offline."
)
recipes.show(
    "NTHU transfer-learning homework: ResNet-34 vs MobileNetV3-Large",
    "DLCV HW1 and HW4, problem 2: self-supervised pretraining and the A–E grid",
)
gallery.announce()
gallery.offer_if_empty("transfer", "transfer-learning comparison")

MODE_DASH = {"finetune": "solid", "frozen": "dot", "scratch": "dash"}


def backbone_label(name: str) -> str:
    spec = BACKBONES[name]
    wf = spec.weight_file()
    size = f"{wf.megabytes:.0f} MB" if wf else "17 MB"
    cached = "✓ weights here" if spec.weights_available() else f"weights not cached ({size})"
    return f"{name} · {cached}" + (" · large" if spec.large else "")


def supervised_source(typed: str) -> str:
    """'imagenet', a run id of this runs folder, or a folder or file under the data roots or
    the runs folder (engine.data.roots): a typed path never reaches beyond them."""
    typed = typed.strip() or "imagenet"
    root = picking.runs_dir()
    bare = Path(typed).name == typed  # a run id, or a name the engine will say it cannot find
    if typed == "imagenet" or (bare and ((root / typed).is_dir() or not Path(typed).exists())):
        return typed
    return str(check_data_path(typed, [*data_roots(), root.resolve()]))


def new_comparison_form() -> None:
    d = TransferConfig()
    with st.container():  # not a form: the estimate follows the settings
        c1, c2, c3 = st.columns(3)
        preset = c1.selectbox(
            "Preset", [p for p in presets.PRESETS if presets.PRESET_KINDS[p] == "transfer"],
            format_func=lambda p: f"{p}: {presets.PRESETS[p]}",
            help="the other presets have their own pages (Dynamic filters, Segmentation, "
            "Few-shot, Long tail) or start from the command line (ablation)",
        )  # fmt: skip
        backbone = c2.selectbox(
            "Backbone", list(BACKBONES), format_func=backbone_label,
            help="resnet34-vs-mobilenet always compares ResNet-34 with MobileNetV3-Large",
        )  # fmt: skip
        dataset = c3.selectbox("Dataset", inputs.datasets_offered(["digits", "folder", "csv"]),
                               help="folder: one sub-folder per class, or train/ and val/ "
                                    "folders each holding one folder per class; csv: "
                                    "train.csv / val.csv (filename,label) with train/ and "
                                    "val/ image folders beside them, as Office-Home")  # fmt: skip
        c1, c2 = st.columns([2, 1])
        path = c1.text_input("Dataset folder (for 'folder' and 'csv')", "")
        classes = c2.text_input("Only classes (optional)", "", placeholder="5,6,7,8,9",
                                help="e.g. the A–E grid on digits 5-9 after pretraining on "
                                "0-4")  # fmt: skip
        c1, c2, c3, c4 = st.columns(4)
        size = c1.selectbox("Input size (px)", [32, 64, 96, 128, 224, 256], index=1,
                            help="ImageNet weights were trained at 224; smaller is faster")  # fmt: skip
        epochs = c2.number_input("Epochs", 1, 200, d.epochs)
        lr = c3.number_input("Learning rate", 1e-6, 1.0, d.optim.lr, format="%.5f")
        scale = c4.number_input(
            "Backbone lr × (fine-tune)", 0.001, 1.0, 1.0, format="%.3f",
            help="e.g. 0.1: the pretrained layers move ten times slower than the new head",
        )  # fmt: skip
        c1, c2, c3, c4 = st.columns(4)
        scratch = c1.checkbox("Include 'from scratch'", True, help="finetune-vs-frozen only")
        repeats = statistics.repeats_input(c4)
        at_once = c2.checkbox("Train all at once", False,
                              help="Only worth it on a GPU with room; on a CPU one after "
                                   "another is faster for each run")  # fmt: skip
        augment = c3.checkbox("Augment (crop + flip)", False,
                              help="Frozen runs then compute features per batch, not once")  # fmt: skip
        c1, c2 = st.columns(2)
        preprocess = c1.selectbox(
            "Preprocessing", ["resize", "tutorial"],
            format_func={"resize": "resize to the input size (ours)",
                         "tutorial": "torchvision's tutorial: random resized crop + flip, "
                                     "centre crop to 7/8"}.get,
            help="the tutorial's (the NTHU homework's code): training batches RandomResizedCrop "
            "+ flip, evaluation CenterCrop, to 224 of 256 (choose input size 256 for exactly "
            "that); frozen runs then run the backbone every epoch",
        )  # fmt: skip
        batchnorm = c2.selectbox(
            "Frozen rows: BatchNorm statistics", ["frozen", "updated"],
            format_func={"frozen": "frozen (ours; features computed once)",
                         "updated": "updated by the training batches (the tutorial's)"}.get,
        )  # fmt: skip
        byol = {r.run_id: picking.run_label(r) for r in runs.list_runs(picking.runs_dir())
                if (r.config or {}).get("kind") == "ssl" and r.state == "finished"}  # fmt: skip
        c1, c2 = st.columns(2)
        ssl = c1.selectbox(
            "A–E rows C, E: self-supervised backbone", ["", *byol],
            format_func=lambda i: byol.get(i, "— none: rows C and E wait" if byol
                                           else "— none yet: pretrain one on the Self-supervised page"),
            help="a finished BYOL run of the same backbone",
        )  # fmt: skip
        supervised = c2.text_input(
            "A–E rows B, D: supervised backbone", "imagenet",
            help="'imagenet' (torchvision's, when cached), or a supervised run's id or folder "
            "(e.g. a transfer run from scratch on other classes), or a weight file",
        )  # fmt: skip
    try:
        base = TransferConfig(
            model=ModelConfig(name=backbone),
            data=DataConfig(name=dataset, path=inputs.typed_path(path), image_size=int(size),
                            augment=augment,
                            classes=[c.strip() for c in classes.split(",") if c.strip()]),
            optim=OptimConfig(lr=float(lr), weight_decay=0.0),
            epochs=int(epochs), backbone_lr_scale=float(scale), preprocess=preprocess,
        )  # fmt: skip
        base.batchnorm = batchnorm  # the frozen rows' (the others update theirs anyway)
        if preset != "a-e":  # A-E's rows need the weights it is given: estimated when given
            timing.show_group_estimate(preset, base, repeats, include_scratch=scratch)
    except (WorkbenchError, OSError) as e:  # said when the button is pressed
        base, problem = None, e
    if not st.button("▶ Start the comparison", type="primary"):
        return
    try:
        if base is None:
            raise problem
        group = start_group(
            preset, base, picking.runs_dir(), include_scratch=scratch,
            ssl_weights=ssl or None, sequential=not at_once,
            supervised_weights=supervised_source(supervised), repeats=repeats,
        )  # fmt: skip
    except (WorkbenchError, OSError) as e:  # ConfigError, DataError, WeightsError, RunError
        inputs.show_error(e)
        return
    st.session_state["group"] = group.group_id
    st.toast(f"Started {group.group_id}")


def time_bars(table: list[dict], colours: dict) -> go.Figure:
    rows = [r for r in table if r.get("seconds_per_epoch")]
    fig = go.Figure(
        go.Bar(
            x=[r["seconds_per_epoch"] for r in rows], y=[r["label"] for r in rows],
            orientation="h", marker_color=[colours[r["label"]] for r in rows],
            text=[f"{r['seconds_per_epoch']:.2f} s" for r in rows], textposition="auto",
        )
    )  # fmt: skip
    fig.update_layout(height=60 + 45 * max(len(rows), 1), margin=dict(l=10, r=10, t=30, b=10),
                      title="Seconds per epoch", yaxis=dict(autorange="reversed"))  # fmt: skip
    return fig


def render_group(group: groups.Group) -> None:
    table = groups.comparison_table(group, picking.runs_dir())
    live = any(r["state"] in runs.ACTIVE for r in table)
    key = f"live:{group.group_id}"
    if st.session_state.get(key) and not live:
        st.session_state[key] = False
        st.rerun()  # the last run just ended: redraw the page once, static from now on
    st.session_state[key] = live
    colours = {r["label"]: charts.PALETTE[i % len(charts.PALETTE)] for i, r in enumerate(table)}
    metrics = {
        r["run"]: cache.load_metrics(picking.runs_dir() / r["run"])
        for r in table
        if r["run"] and r["state"] != "removed"
    }
    frame = pd.DataFrame(
        [
            {
                "row": r["label"],
                "state": f"{picking.STATE_ICONS.get(r['state'], '')} {r['state']}",
                "progress": r.get("progress"),
                "backbone": r.get("backbone"),
                "mode": r.get("mode"),
                "trainable params": r.get("trainable_params"),
                "total params": r.get("total_params"),
                "s / epoch": r.get("seconds_per_epoch"),
                "feature pass s": r.get("feature_seconds"),
                "epochs": r.get("epochs"),
                "best val acc": r.get("best_val_acc"),
                "test acc": r.get("test_acc"),
                "run": r["run"] or "",
            }
            for r in table
        ]
    )
    numeric = ["progress", "trainable params", "total params", "s / epoch", "feature pass s", "epochs",
               "best val acc", "test acc"]  # fmt: skip
    frame[numeric] = frame[numeric].apply(pd.to_numeric)  # None -> NaN: shown blank, not "None"
    if frame["backbone"].nunique() <= 1:
        frame = frame.drop(columns="backbone")  # the row names say it
    empty = [c for c in ("mode", "feature pass s") if frame[c].isna().all()]
    frame = frame.drop(columns=empty)  # e.g. an ablation of a registry model: no modes
    st.dataframe(
        frame, hide_index=True, width="stretch",
        column_config={
            "progress": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, width="small"),
            "trainable params": st.column_config.NumberColumn(format="localized"),
            "total params": st.column_config.NumberColumn(format="localized"),
            "s / epoch": st.column_config.NumberColumn(format="%.2f"),
            "feature pass s": st.column_config.NumberColumn(
                format="%.1f", help="frozen runs: one backbone pass over every image, once"),
            "best val acc": st.column_config.NumberColumn(format="percent"),
            "test acc": st.column_config.NumberColumn(format="percent"),
        },
    )  # fmt: skip
    if group.preset == "a-e":
        st.markdown("**As the assignments tabulate it**")
        charts.ae_grid_table(group)
    for r in table:
        if r["state"] not in picking.STATE_ICONS and r["state"] != "removed":
            st.caption(f"**{r['label']}**: {r['state']}")
        if r.get("error"):
            st.error(f"**{r['label']}** {r['state']}: {r['error']}")
    charts.chart(st, charts.group_curves(table, metrics, colours), key="transfer_curves")
    timed = [r for r in table if r.get("seconds_per_epoch")]
    if timed:
        charts.chart(st, time_bars(table, colours), key="transfer_times")
        by_mode: dict[str, list[float]] = {}
        for r in timed:
            by_mode.setdefault(r.get("mode"), []).append(r["seconds_per_epoch"])
        if by_mode.get("finetune") and by_mode.get("frozen"):
            ratio = stats_lib.median(by_mode["finetune"]) / stats_lib.median(by_mode["frozen"])
            once = all(r.get("feature_seconds") for r in timed if r.get("mode") == "frozen")
            why = ("the head trains on features computed once" if once
                   else "the frozen backbone runs without gradients")  # fmt: skip
            st.caption(
                f"A frozen-backbone epoch here is **{ratio:.0f}×** faster than a fine-tuning "
                f"epoch ({why})."
            )
    statistics.show_group_statistics(group, picking.runs_dir(), key=group.group_id)


def group_controls(group: groups.Group) -> None:
    root = picking.runs_dir()
    live = [d for d in group.run_dirs(root) if d.is_dir() and runs.is_active(d)]
    pending = [
        d for d in group.run_dirs(root)
        if d.is_dir() and not runs.is_active(d) and runs.read_status(d).get("state") != "finished"
    ]  # fmt: skip
    c1, c2, _ = st.columns([1, 1, 4])
    if live and c1.button("⏹ Stop all", help="Each run saves last.pt; resume continues it"):
        try:
            st.toast(f"Asked {comparisons.stop_group(group, root)} run(s) to stop")
        except runs.RunError as e:  # a status naming a process that is not the run's
            inputs.show_error(e)
    if pending and not live and c2.button("⏵ Resume the group", help="Unfinished runs, in order"):
        try:
            comparisons.launch_group(group, root)
        except (RuntimeError, ValueError, OSError) as e:  # RunError, CheckpointError, ...
            inputs.show_error(e)
        else:
            st.rerun()
    with st.expander("One run: stop, resume, remove"):
        ids = [r.run_id for r in group.rows if r.run_id and (root / r.run_id).is_dir()]
        if not ids:
            st.caption("No runs left in this group.")
            return
        labels = {r.run_id: r.label for r in group.rows if r.run_id}
        run_id = st.selectbox("Run", ids, format_func=lambda i: f"{labels[i]} ({i})")
        run_dir = root / run_id
        info = runs.read_status(run_dir).get("model_info") or {}
        if info.get("weights_report"):
            st.caption(f"Starting weights: {info['weights_report']}")
        active = runs.is_active(run_dir)
        a, b, c = st.columns(3)
        if active and a.button(
            "⏹ Stop this run",
            help="It saves last.pt; the group's next run then starts. Stop all pauses the group.",
        ):
            try:
                launcher.stop(run_dir)
                st.toast("Stopping; it saves last.pt first")
            except runs.RunError as e:  # a status naming a process that is not the run's
                inputs.show_error(e)
        if not active and runs.read_status(run_dir).get("state") != "finished":
            if b.button("⏵ Resume this run", help="Queued behind the group's active runs"):
                busy = [d.name for d in group.run_dirs(root) if d.is_dir() and runs.is_active(d)]
                try:
                    launcher.launch(
                        run_dir, resume=RunLayout(run_dir).last_checkpoint.exists(),
                        warm=not busy, after=busy if group.sequential else [],
                    )  # fmt: skip
                except (RuntimeError, ValueError, OSError) as e:  # RunError, CheckpointError
                    inputs.show_error(e)
                else:
                    st.rerun()
        if not active:
            sure = c.checkbox("Yes, delete its folder", key=f"sure:{run_id}")
            if c.button("🗑 Remove this run", disabled=not sure):
                try:
                    groups.remove_row_run(group, run_id, root)
                except runs.RunError as e:
                    inputs.show_error(e)
                else:
                    st.rerun()


def embeddings_side_by_side(group: groups.Group) -> None:
    root = picking.runs_dir()
    with_snaps = [
        r for r in group.rows
        if r.run_id and (root / r.run_id).is_dir() and RunLayout(root / r.run_id).embedding_epochs()
    ]  # fmt: skip
    if len(with_snaps) < 2:
        st.caption("The embeddings of two runs appear here once both have a snapshot.")
        return
    labels = [r.label for r in with_snaps]
    by_label = {r.label: root / r.run_id for r in with_snaps}
    a, b, c = st.columns(3)
    left = a.selectbox("Left", labels, index=0)
    right = b.selectbox("Right", labels, index=1)
    if left == right:
        st.caption("Pick two different runs to compare.")
        return
    common = sorted(
        set(RunLayout(by_label[left]).embedding_epochs())
        & set(RunLayout(by_label[right]).embedding_epochs())
    )
    if not common:
        st.caption("These two runs have no snapshot epoch in common yet.")
        return
    epoch = c.select_slider("Epoch", common, value=common[-1]) if len(common) > 1 else common[0]
    cols = st.columns(2)
    for col, label in zip(cols, (left, right), strict=True):
        run_dir = by_label[label]
        try:
            xy = project_run(run_dir, "pca", {}, epochs=[epoch])[epoch]
            emb = load_embedding(run_dir, epoch)
        except (OSError, ValueError, EOFError) as e:
            col.error(str(e))
            continue
        classes = pictures.class_names(runs.read_status(run_dir), int(emb["labels"].max()) + 1)
        fig = go.Figure()
        for k, name in enumerate(classes):
            idx = emb["labels"] == k
            fig.add_trace(go.Scattergl(
                x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=name,
                marker=dict(size=5, color=charts.PALETTE[k % len(charts.PALETTE)]),
            ))  # fmt: skip
        acc = float((emb["labels"] == emb["predictions"]).mean())
        fig.update_layout(
            title=f"{label} · epoch {epoch} · val acc {acc:.1%}", height=420,
            margin=dict(l=10, r=10, t=40, b=10), showlegend=(col is cols[1]),
            xaxis=dict(showticklabels=False), yaxis=dict(showticklabels=False),
        )  # fmt: skip
        charts.chart(col, fig, key=f"emb:{'left' if col is cols[0] else 'right'}")
    st.caption("PCA of each run's penultimate features of the same validation images, "
               "coloured by true class.")  # fmt: skip


found = groups.list_groups(picking.runs_dir())
with st.expander("New comparison", expanded=not found):
    new_comparison_form()
found = groups.list_groups(picking.runs_dir())  # the form may have made one
for bad in (g for g in found if isinstance(g, Exception)):
    st.warning(str(bad))
# Segmentation and few-shot comparisons have their own pages.
valid = [
    g for g in found
    if not isinstance(g, Exception)
    and presets.PRESET_KINDS.get(g.preset) not in ("segment", "fewshot")
]  # fmt: skip
if not valid:
    st.info("No comparisons yet: pick a preset above and start one.")
    st.stop()

by_id = {g.group_id: g for g in valid}
chosen = picking.remembered_select(
    "Comparison", list(by_id), "group", lambda i: f"{i} · {len(by_id[i].rows)} rows"
)
group = by_id[chosen]
st.caption(group.name)
group_controls(group)
root = picking.runs_dir()
st.download_button(
    "⬇ report (HTML)", on_click="ignore", mime="text/html",
    data=lambda: group_report(group, root).encode(),
    file_name=f"{archive.safe_file_name(group.group_id)}-report.html",
    help="the table, the curves and every run's config in one page that opens offline",
)  # fmt: skip
if any(d.is_dir() and runs.is_active(d) for d in group.run_dirs(root)):
    st.fragment(run_every=1.0)(render_group)(group)  # live while any run of the group trains
else:
    render_group(group)
st.subheader("Embeddings side by side")
embeddings_side_by_side(group)
