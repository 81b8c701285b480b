"""Few-shot (DLCV HW4 problem 1): prototypical networks. An episode viewer (support set by
class, queries with their predictions, embeddings with prototypes), training curves, the
K x distance table with 95% confidence intervals, and episodes of the user's own images."""

import json
from dataclasses import asdict

import numpy as np
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
from engine.analysis.projections import pca_2d
from engine.config import DataConfig, FewShotConfig, OptimConfig
from engine.core.errors import WorkbenchError
from engine.core.jsonfile import JsonFileError, read_json_object
from engine.execution.start import start_group, start_run
from engine.experiments.fewshot import episode_from_images, evaluation_loader, look_at_episode
from engine.models.protonet import DISTANCES
from engine.store import groups, runs
from engine.store.layout import RunLayout
from engine.store.summary import shot_results

st.title("🧩 Few-shot")
st.caption(
    "DLCV HW4 problem 1: a prototypical network (Conv-4 → 1600, MLP → 400) learns from "
    "episodes. Each class's prototype is the mean embedding of its K support images; a query "
    "goes to the nearest prototype (squared Euclidean, cosine, or a learned parametric "
    "distance). Tested on 600 fixed 5-way episodes of classes never trained on: mean "
    "accuracy ± 95% confidence interval (1.96 × std / √600)."
)
recipes.show("DLCV HW4 problem 1: prototypical networks")
gallery.announce()
gallery.offer_if_empty("fewshot", "few-shot run")
GRID = "fewshot-grid"


def new_runs_form() -> None:
    d = FewShotConfig()
    with st.container():  # not a form: the estimate follows the settings
        c1, c2, c3 = st.columns([1, 2, 1])
        dataset = c1.selectbox("Dataset", ["digits", "folder", "csv"], help=(
            "digits: classes 0-4 meta-train, 5-9 meta-test; folder: train/<class>/ and "
            "test/<class>/ with disjoint classes; csv: train.csv / val.csv (/ test.csv) image "
            "lists, as DLCV HW4's mini-ImageNet"))  # fmt: skip
        path = c2.text_input("Folder (for folder and csv)", "")
        distance = c3.selectbox("Distance", DISTANCES)
        c4, c5, c6, c7 = st.columns(4)
        way = c4.number_input("Training N-way", 2, 64, d.train_way,
                              help="capped at the number of meta-train classes")  # fmt: skip
        shot = c5.number_input("Training K-shot", 1, 50, d.train_shot)
        epochs = c6.number_input("Epochs", 1, 500, d.epochs)
        episodes = c7.number_input("Episodes per epoch", 1, 10_000, d.episodes_per_epoch)
        c8, c9 = st.columns(2)
        lr = c8.number_input("Learning rate", 1e-6, 1.0, d.optim.lr, format="%.5f")
        repeats = statistics.repeats_input(c9)
        c8, c9 = st.columns(2)
    try:
        base = FewShotConfig(
            data=DataConfig(name=dataset, path=inputs.typed_path(path), image_size=84),
            optim=OptimConfig(lr=float(lr), weight_decay=0.0, schedule="none"),
            epochs=int(epochs), episodes_per_epoch=int(episodes), distance=distance,
            train_way=int(way), train_shot=int(shot),
        )  # fmt: skip
        with c8:
            timing.show_estimate([base.validate()])
        with c9:
            timing.show_group_estimate(GRID, base, repeats)
    except (WorkbenchError, OSError) as e:  # said when a button is pressed
        base, problem = None, e
    one = c8.button("▶ Train this network", type="primary")
    grid = c9.button("▶ Train the K × distance grid (9 runs)")
    if not (one or grid):
        return
    try:
        if base is None:
            raise problem
        if grid:
            start_group(GRID, base, picking.runs_dir(), repeats=repeats)
        else:
            st.session_state["fewshot_run"] = start_run(base, picking.runs_dir()).name
    except (WorkbenchError, OSError) as e:
        inputs.show_error(e)
        return
    st.toast("Started: the viewer opens when the first epoch ends")


def fewshot_runs() -> list[runs.RunSummary]:
    return [r for r in runs.list_runs(picking.runs_dir())
            if (r.config or {}).get("kind") == "fewshot"]  # fmt: skip


def projection(look, names: list[str], true: np.ndarray) -> go.Figure:
    """Support embeddings (dots), prototypes (stars) and queries (×, red outline when wrong),
    each query joined to the prototype it was given to; PCA of them all."""
    n_s, n_p = len(look.support), len(look.prototypes)
    xy = pca_2d(np.concatenate([look.support, look.prototypes, look.query]))
    s, p, q = xy[:n_s], xy[n_s : n_s + n_p], xy[n_s + n_p :]
    fig = go.Figure()
    lines_x, lines_y = [], []
    for i, c in enumerate(look.predictions):
        lines_x += [q[i, 0], p[c, 0], None]
        lines_y += [q[i, 1], p[c, 1], None]
    fig.add_trace(go.Scatter(x=lines_x, y=lines_y, mode="lines", name="query → prototype",
                             line=dict(color="rgba(120,120,120,0.35)", width=1),
                             hoverinfo="skip"))  # fmt: skip
    for c, name in enumerate(names):
        colour = charts.PALETTE[c % 10]
        mine = look.support_labels == c
        fig.add_trace(go.Scatter(x=s[mine, 0], y=s[mine, 1], mode="markers", name=f"{name} · support",
                                 legendgroup=name, marker=dict(color=colour, size=9)))  # fmt: skip
        wrong = look.predictions[true == c] != c
        fig.add_trace(go.Scatter(
            x=q[true == c, 0], y=q[true == c, 1], mode="markers", name=f"{name} · queries",
            legendgroup=name, showlegend=False,
            marker=dict(color=colour, size=8, symbol="x",
                        line=dict(width=np.where(wrong, 2, 0), color="#d62728")),
        ))  # fmt: skip
        fig.add_trace(go.Scatter(x=[p[c, 0]], y=[p[c, 1]], mode="markers", name=f"{name} · prototype",
                                 legendgroup=name, showlegend=False,
                                 marker=dict(color=colour, size=22, symbol="star",
                                             line=dict(width=1.5, color="black"))))  # fmt: skip
    fig.update_layout(height=480, margin=dict(l=10, r=10, t=30, b=10),
                      xaxis=dict(showticklabels=False), yaxis=dict(showticklabels=False),
                      title="Embeddings (PCA): support ●, prototypes ★, queries ×")  # fmt: skip
    return fig


def episode_viewer(run: runs.RunSummary, lm) -> None:
    cfg = FewShotConfig.from_dict(run.config)
    try:
        splits = cache.fewshot_data(
            json.dumps(asdict(cfg.data), sort_keys=True), tuple(cfg.meta_test_classes)
        )
    except inputs.LOAD_ERRORS as e:  # the data moved or changed: say so, keep the page
        inputs.show_error(e)
        return
    c1, c2 = st.columns(2)
    shots = c1.selectbox("K (shots)", cfg.test_shots, key="fs_shots")
    number = int(c2.number_input(f"Test episode (0 … {cfg.test_episodes - 1})", 0,
                                 cfg.test_episodes - 1, 0, key="fs_episode"))  # fmt: skip
    try:
        loader = evaluation_loader(cfg, splits, shots, lm.mean, lm.std, "cpu")
    except ValueError as e:
        inputs.show_error(e)
        return
    episode, labels, ix = loader.get(number)
    look = look_at_episode(lm.model, episode)
    true = labels.numpy()
    names = [splits.classes[int(c)] for c in ix.classes]
    acc = float((look.predictions == true).mean())
    st.markdown(f"**{cfg.test_way}-way {shots}-shot episode {number}**: {acc:.0%} of "
                f"{len(true)} queries right")  # fmt: skip
    left, right = st.columns([2, 3])
    with left:
        st.markdown("**Support set**")
        for c, name in enumerate(names):
            images = splits.test.images[ix.support[c * shots : (c + 1) * shots]]
            st.image([pictures.png_bytes(im.numpy()) for im in images[:10]], width=56,
                     caption=[name] + [""] * (min(len(images), 10) - 1))  # fmt: skip
    charts.chart(right, projection(look, names, true), key="fs_projection")
    st.markdown("**Queries**, one row per true class; each labelled with its prediction, "
                "framed green when right and red when wrong")  # fmt: skip
    grid = pictures.tile_grid(
        splits.test.images[ix.query].numpy(), rows=len(names),
        labels=[names[p] for p in look.predictions],
        ok=list(look.predictions == true),
    )  # fmt: skip
    st.image(pictures.png_bytes(grid), caption=f"rows: {', '.join(names)}", width="stretch")


def per_k_chart(rows: list[dict]) -> go.Figure:
    """Accuracy vs K, one line per distance, 95% CI as error bars."""
    fig = go.Figure()
    for k, distance in enumerate(sorted({r["distance"] for r in rows})):
        mine = sorted((r for r in rows if r["distance"] == distance), key=lambda r: r["K"])
        fig.add_trace(go.Scatter(
            x=[r["K"] for r in mine], y=[r["acc"] for r in mine], name=distance,
            mode="lines+markers", line=dict(color=charts.PALETTE[k % 10]),
            error_y=dict(type="data", array=[r["ci95"] for r in mine], visible=True),
        ))  # fmt: skip
    shots = sorted({r["K"] for r in rows})
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=30, b=10),
                      xaxis=dict(title="K (shots)", tickvals=shots),
                      yaxis=dict(title="accuracy", tickformat=".0%"),
                      title="5-way accuracy vs K, 95% confidence intervals")  # fmt: skip
    return fig


def results_of(run_dirs) -> list[dict]:
    """(distance, K, acc, ci95, seconds) of every finished test of these runs."""
    out = []
    for run_dir in run_dirs:
        status = runs.read_status(run_dir)
        try:
            cfg = read_json_object(RunLayout(run_dir).config)
        except JsonFileError:
            continue  # damaged: the run lists say why
        summary = status.get("summary") or {}
        for k, r in shot_results(summary).items():
            out.append({"distance": cfg.get("distance"), "K": k, "acc": r.get("acc"),
                        "ci95": r.get("ci95"), "seconds": r.get("seconds"), "run": run_dir.name})  # fmt: skip
    return out


def grid_view() -> None:
    found = [g for g in groups.list_groups(picking.runs_dir())
             if isinstance(g, groups.Group) and g.preset == GRID]  # fmt: skip
    if not found:
        st.info("No K × distance grid yet: **Train the K × distance grid** above, or "
                "`python -m engine compare --preset fewshot-grid`.")  # fmt: skip
        return
    ids = [g.group_id for g in found]
    group = found[ids.index(st.selectbox("Grid", ids, key="fs_grid"))]
    root = picking.runs_dir()
    table = groups.comparison_table(group, root)
    st.dataframe([{"row": r["label"], "state": r["state"], "progress": r.get("progress")}
                  for r in table], hide_index=True,
                 column_config={"progress": st.column_config.ProgressColumn(
                     min_value=0, max_value=1)})  # fmt: skip
    rows = results_of([d for d in group.run_dirs(root) if d.is_dir()])
    if not rows:
        st.info("The table fills in as the grid's runs finish.")
        return
    cells = {}
    for r in rows:
        cells.setdefault(r["distance"], {})[f"K = {r['K']}"] = f"{r['acc']:.2%} ± {r['ci95']:.2%}"
    ks = sorted({r["K"] for r in rows})
    st.dataframe([{"distance": d, **{f"K = {k}": cells[d].get(f"K = {k}", "–") for k in ks}}
                  for d in DISTANCES if d in cells], hide_index=True)  # fmt: skip
    charts.chart(st, per_k_chart(rows), key="fs_grid_chart")
    statistics.show_group_statistics(group, root, key="fewshot")


def try_your_own(lm) -> None:
    st.caption("Upload K images for each of N classes (the support set) and some queries; "
               "the trained network builds the prototypes and classifies the queries.")  # fmt: skip
    n = int(st.number_input("N (classes)", 2, 10, 3, key="fs_own_n"))
    support, names = [], []
    cols = st.columns(n)
    for c, col in enumerate(cols):
        names.append(col.text_input("Class name", f"class {c + 1}", key=f"fs_own_name_{c}"))
        support.append(col.file_uploader("Support images", type=["png", "jpg", "jpeg"],
                                         accept_multiple_files=True, key=f"fs_own_{c}"))  # fmt: skip
    queries = st.file_uploader("Query images", type=["png", "jpg", "jpeg"],
                               accept_multiple_files=True, key="fs_own_queries")  # fmt: skip
    if not queries or not all(support):
        st.info("Every class needs at least one support image, and there must be a query.")
        return
    try:
        s_images = [[pictures.read_image_upload(f) for f in files] for files in support]
        q_images = [pictures.read_image_upload(f) for f in queries]
    except ValueError as e:
        inputs.show_error(e)
        return
    episode = episode_from_images(s_images, q_images, lm.image_size, lm.mean, lm.std)
    look = look_at_episode(lm.model, episode)
    probs = np.exp(look.logits - look.logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    st.image([pictures.png_bytes(im.numpy()) for im in q_images], width=96, caption=[
        f"{names[p]} ({probs[i, p]:.0%})" for i, p in enumerate(look.predictions)])  # fmt: skip


with st.expander("New few-shot runs", expanded=not fewshot_runs()):
    new_runs_form()
    st.caption("The same from a terminal: `python -m engine train --kind fewshot` or "
               "`python -m engine compare --preset fewshot-grid`.")  # fmt: skip

found = [r for r in fewshot_runs() if RunLayout(r.path).best_checkpoint.exists()]
if not found:
    st.info("No few-shot run has a checkpoint yet: start one above.")
    st.stop()
by_id = {r.run_id: r for r in found}
run = by_id[picking.remembered_select(
    "Run", list(by_id), "fewshot_run",
    lambda i: picking.run_label(by_id[i])
    + ("" if by_id[i].config.get("name") else f" · {by_id[i].config.get('distance')}"),
)]  # fmt: skip
try:
    lm = cache.run_model(str(run.path), RunLayout(run.path).best_checkpoint.stat().st_mtime_ns)
except inputs.LOAD_ERRORS as e:  # a damaged checkpoint: say so, keep the page
    inputs.show_error(e)
    st.stop()

viewer, training, grid, own = st.tabs(
    ["Episode viewer", "Training", "K × distance", "Try your own"]
)
with viewer:
    episode_viewer(run, lm)
with training:
    events = cache.load_metrics(run.path)
    st.markdown(picking.status_line(run.status))
    charts.chart(st, charts.training_curves(events), key="fs_curves")
    st.caption("One training step is one episode: loss and accuracy of its queries.")
    mine = results_of([run.path])
    given = (run.status.get("summary") or {}).get("test_csv")
    if isinstance(given, dict):
        st.markdown(f"Episode file `{given.get('file')}`: {given['episodes']} episodes, "
                    f"**{given['acc']:.2%} ± {given['ci95']:.2%}**")  # fmt: skip
    if mine:
        st.dataframe([{"K": r["K"], "accuracy": f"{r['acc']:.2%} ± {r['ci95']:.2%}",
                       "seconds for the test episodes": r["seconds"]} for r in mine],
                     hide_index=True)  # fmt: skip
with grid:
    grid_view()
with own:
    try_your_own(lm)
