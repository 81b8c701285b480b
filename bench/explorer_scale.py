"""The embedding explorer at 10,000 points: page reruns, a 10,000-point selection, and how soon
t-SNE's first picture appears.

1. Page rerun with the layout cached (target < 0.3 s). A finished digits run whose embedding
   snapshots are replaced by `--points` synthetic points each (bench/dashboard_rerun.py's
   `write_large_snapshots`, then one sample id per point so that the linked views link them;
   the images then do not load: the neighbour gallery and the selection grid say so, and
   their drawing is not in these times), its PCA and t-SNE layouts computed once; the
   Embeddings page is run once with streamlit's AppTest, then rerun. References in the same
   run: a page that draws one bare go.Scattergl of the same layout, and a one-line script
   (AppTest's own cost).
2. A selection of every point (target < 1 s): the box-selection event plotly sends when a box
   covers all `--points` points, put into the scatter's state as the browser would; timed
   from the rerun it starts until the page has drawn the selection (its composition table,
   image grid, CSV): that is two script runs (the brush reruns the page so that every view
   highlights it). Then a rerun with that selection standing.
3. t-SNE's first picture (target < 2 s): `project(x, "tsne", on_step=...)` on `--points`
   512-d stand-in penultimate features (bench/projections.py's `penultimate_features`),
   timed until the first layout is handed out, and to the end; the process has made one
   small t-SNE before (imports and code paths warm, as in the dashboard, which imports them
   at start). Reference: scikit-learn's TSNE (Barnes-Hut, the same 250 + 500 iterations, one
   thread), which shows nothing until it has finished; `--no-sklearn` skips it (a minute or
   two at 10,000 points).

Times are medians of `--repeats` interleaved repeats; each is printed with its reference and
the ratio (machines are shared and noisy: absolute times are not comparable between runs).

    python bench/explorer_scale.py [--points 10000] [--repeats 5] [--no-sklearn]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.*

import numpy as np  # noqa: E402
import streamlit.logger  # noqa: E402

streamlit.logger.set_log_level("error")

from bench.dashboard_rerun import (  # noqa: E402
    TRIVIAL_SCRIPT,
    apptest_runs_folder,
    page_app,
    timed_rerun,
    tiny_run,
    write_large_snapshots,  # noqa: E402
)
from bench.projections import penultimate_features  # noqa: E402
from engine.analysis import DEFAULT_PARAMS, project  # noqa: E402
from engine.core.atomic import save_npz  # noqa: E402
from engine.inspect.projection_cache import project_run  # noqa: E402
from engine.inspect.snapshots import load_embedding  # noqa: E402
from engine.store.layout import RunLayout  # noqa: E402

RERUN_TARGET_S, SELECTION_TARGET_S, FIRST_PICTURE_TARGET_S = 0.3, 1.0, 2.0

BARE_SCATTER = """
import numpy as np, plotly.graph_objects as go, streamlit as st
xy = np.load({path!r})
st.plotly_chart(go.Figure(go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers")), key="bare")
"""


class FirstPicture(Exception):
    """Raised by the step callback: the first layout is here, the rest is not timed."""


def first_picture_seconds(x: np.ndarray) -> tuple[float, float]:
    """(seconds until t-SNE hands out its first layout, seconds to the end)."""
    started = time.perf_counter()
    try:
        project(x, "tsne", on_step=lambda *a: (_ for _ in ()).throw(FirstPicture()))
    except FirstPicture:
        first = time.perf_counter() - started
    started = time.perf_counter()
    project(x, "tsne")
    return first, time.perf_counter() - started


def sklearn_seconds(x: np.ndarray) -> float:
    from sklearn.manifold import TSNE

    started = time.perf_counter()
    TSNE(perplexity=30, max_iter=750, init="pca", random_state=0, n_jobs=1).fit_transform(x)
    return time.perf_counter() - started


def selection_event(n: int) -> dict:
    points = [{"customdata": {"0": r, "1": r}, "point_index": r} for r in range(n)]  # as sent
    return {"selection": {"points": points, "point_indices": list(range(n)),
                          "box": [{"x": [-1e9, 1e9], "y": [-1e9, 1e9]}], "lasso": []}}  # fmt: skip


def line(name: str, ref_name: str, ref: float, ours: float, target: float) -> str:
    met = "yes" if ours < target else "no"
    return (f"| {name} | {ref_name}: {ref * 1e3:.0f} ms | {ours * 1e3:.0f} ms | "
            f"{ours / ref:.2f}x | < {target:g} s | {met} |")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-sklearn", action="store_true", help="skip scikit-learn's t-SNE")
    a = ap.parse_args()
    tmp, root = apptest_runs_folder()

    started = time.perf_counter()
    run = tiny_run(root, "explorer", 3)
    write_large_snapshots(run, a.points)
    for epoch in RunLayout(run).embedding_epochs():  # one id per point, so that the linked
        emb = load_embedding(run, epoch)  # views link them (the images then do not load:
        emb["sample_ids"] = np.arange(a.points)  # the grid and gallery say so instead)
        save_npz(RunLayout(run).embedding_file(epoch), **emb)
    layouts = project_run(run, "pca", DEFAULT_PARAMS["pca"])
    project_run(run, "tsne", DEFAULT_PARAMS["tsne"])  # cached on disk, as a page finds it
    xy_path = Path(tmp.name) / "layout.npy"
    np.save(xy_path, layouts[max(layouts)])
    print(f"setup {time.perf_counter() - started:.0f} s: a 3-epoch digits run with {a.points:,} "
          "synthetic points per snapshot, its PCA and t-SNE layouts cached")  # fmt: skip

    # 1. reruns
    apps = {"trivial": page_app(TRIVIAL_SCRIPT),
            "bare": page_app(BARE_SCATTER.format(path=str(xy_path))),
            "pca": page_app("embeddings", run.name), "tsne": page_app("embeddings", run.name)}  # fmt: skip
    for name, at in apps.items():
        timed_rerun(name, at)
    apps["tsne"].radio[0].set_value("tsne")
    timed_rerun("tsne", apps["tsne"])
    reruns = {name: [] for name in apps}
    for _ in range(a.repeats):
        for name, at in apps.items():
            reruns[name].append(timed_rerun(name, at))
    rerun = {k: statistics.median(v) for k, v in reruns.items()}

    # 2. a selection of every point
    select, standing = [], []
    for i in range(a.repeats):
        at = page_app("embeddings", run.name)
        timed_rerun("before the selection", at)
        at.session_state[f"scatter:{run.name}:pca"] = selection_event(a.points - i)  # new each time
        select.append(timed_rerun("selection", at))
        shown = [c.value for c in at.caption if "images selected" in c.value]
        if not shown or not shown[0].startswith(f"{a.points - i} images selected"):
            raise RuntimeError(f"the selection was not drawn: {shown}")
        standing.append(timed_rerun("with the selection", at))
    selected, with_selection = statistics.median(select), statistics.median(standing)

    # 3. t-SNE's first picture
    x, _ = penultimate_features(a.points, seed=1)
    project(penultimate_features(300, seed=2)[0], "tsne", {"n_iter": 50})  # warm, as the page
    firsts, fulls = zip(*(first_picture_seconds(x) for _ in range(max(1, a.repeats // 2))),
                        strict=True)  # fmt: skip
    first, full = statistics.median(firsts), statistics.median(fulls)
    sk = None if a.no_sklearn else sklearn_seconds(x)

    print(f"medians of {a.repeats} interleaved repeats ({len(firsts)} for t-SNE), 1 thread, "
          f"{os.cpu_count()} cores; AppTest times the server's script runs, not the browser")  # fmt: skip
    rows = [
        "| benchmark | reference | workbench | ratio | target | met? |",
        "|---|---|---|---|---|---|",
    ]
    bare = rerun["bare"]
    rows.append(line(f"Embeddings page rerun, PCA cached, {a.points:,} points",
                     "bare Scattergl page", bare, rerun["pca"], RERUN_TARGET_S))  # fmt: skip
    rows.append(line(f"Embeddings page rerun, t-SNE cached, {a.points:,} points",
                     "bare Scattergl page", bare, rerun["tsne"], RERUN_TARGET_S))  # fmt: skip
    rows.append(line(f"box over all {a.points:,} points until the selection is drawn",
                     "bare Scattergl page", bare, selected, SELECTION_TARGET_S))  # fmt: skip
    rows.append(line(f"page rerun with {a.points:,} points selected", "bare Scattergl page",
                     bare, with_selection, SELECTION_TARGET_S))  # fmt: skip
    ref_name, ref = ("scikit-learn t-SNE, whole", sk) if sk else ("our t-SNE, whole", full)
    rows.append(line(f"t-SNE first picture, {a.points:,} x 512", ref_name, ref, first,
                     FIRST_PICTURE_TARGET_S))  # fmt: skip
    if sk:
        rows.append(line(f"t-SNE whole, {a.points:,} x 512 (750 iterations)", ref_name, ref,
                         full, ref))  # fmt: skip
    print(f"one-line script rerun (AppTest's own cost): {rerun['trivial'] * 1e3:.0f} ms")
    print("\n".join(rows))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
