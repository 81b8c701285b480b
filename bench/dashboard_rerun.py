"""Dashboard reruns: how long a page takes to rerun once its data is cached, and the
embeddings scatter at 50,000 points.

1. Page reruns (target: under 0.3 s). One small finished digits run (3 epochs, an embedding
   snapshot each) in a temporary runs folder; each page is run once with streamlit's AppTest
   (filling its caches), then rerun. Reference: the rerun of a one-line script, which is
   AppTest's own cost. The Embeddings page is also timed on a run whose snapshots hold
   `--points` points each.
2. The `--points` scatter (target: WebGL, every point, no down-sampling). The page's figure
   (dashboard.embedding_views.figure: one Scattergl trace per class, a frame per snapshot
   epoch) against one bare go.Scattergl of the same layout: built; built and serialised as
   st.plotly_chart does; and, when Chromium and playwright are here, drawn in headless
   Chromium (from the call of Plotly.newPlot until it, and addFrames, resolved; timed in
   the page, and the drawn points counted there).

Repeats are interleaved (what takes seconds at 50,000 points: `--large-repeats` times), each
figure is the median, and each is compared, as a ratio, with a reference measured in the same
run (machines are shared and noisy). The table at the end is for docs/benchmarks.md.

    python bench/dashboard_rerun.py [--repeats 5] [--large-repeats 3] [--points 50000]
                                    [--epochs 3] [--no-browser]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch loads: tiny models, shared cores

import numpy as np
import plotly
import plotly.graph_objects as go
import plotly.io
import plotly.tools
import streamlit
import streamlit.logger
import torch

streamlit.logger.set_log_level("error")  # no warnings about running outside a server

from dashboard.components import pictures
from dashboard.embedding_views import figure
from engine.analysis import DEFAULT_PARAMS
from engine.config import DataConfig, ModelConfig, OptimConfig, RunConfig
from engine.core.atomic import save_npz
from engine.execution import executor
from engine.inspect.projection_cache import project_run
from engine.inspect.snapshots import load_embedding
from engine.store import runs
from engine.store.layout import RunLayout

PAGES = ROOT / "dashboard" / "views"
CLASSIFIER_PAGES = {  # pages with a view of a finished classification run
    "Home": "home",
    "Train": "train",
    "Embeddings": "embeddings",
    "Confusion": "confusion",
    "Inside": "inside",
}
TRIVIAL_SCRIPT = "import streamlit as st\nst.write('x')"
RERUN_TARGET_S = 0.3
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def tiny_run(root: Path, name: str, epochs: int) -> Path:
    """A finished digits run at 16x16 (as tests' `_tiny_config`): a second or two per epoch."""
    cfg = RunConfig(
        name=name,
        data=DataConfig(name="digits", image_size=16),
        model=ModelConfig(name="small_cnn"),
        optim=OptimConfig(name="adam", lr=3e-3, schedule="cosine"),
        epochs=epochs, batch_size=64, seed=0, device="cpu", snapshot_every=1,
    ).validate()  # fmt: skip
    run_dir = runs.create_run(cfg, root)
    executor.execute(run_dir)
    return run_dir


def write_large_snapshots(run_dir: Path, points: int, seed: int = 0) -> None:
    """Replace each embedding snapshot of `run_dir` by `points` synthetic ones: ten Gaussian
    clusters in the run's feature dimension that tighten epoch by epoch, fewer mistakes each
    epoch. Sample ids repeat the run's own, so the neighbour gallery finds their images."""
    rng = np.random.default_rng(seed)
    layout = RunLayout(run_dir)
    epochs = layout.embedding_epochs()
    real = load_embedding(run_dir, epochs[0])
    dims, classes = real["features"].shape[1], int(real["labels"].max()) + 1
    centres = 4.0 * rng.standard_normal((classes, dims))
    labels = rng.integers(0, classes, points)
    noise = rng.standard_normal((points, dims))
    for epoch in epochs:
        wrong = rng.random(points) < 0.3 / epoch
        save_npz(
            layout.embedding_file(epoch),
            features=(centres[labels] + (2.0 / epoch) * noise).astype(np.float32),  # (N, D)
            labels=labels.astype(np.int64),
            predictions=np.where(wrong, rng.integers(0, classes, points), labels).astype(np.int64),
            sample_ids=np.resize(real["sample_ids"], points).astype(np.int64),
        )


def apptest_runs_folder() -> tuple[tempfile.TemporaryDirectory, Path]:
    """A temporary runs folder the pages run in under AppTest (one torch thread, no warm
    worker, projections waited for: AppTest cannot follow a background one)."""
    torch.set_num_threads(1)
    tmp = tempfile.TemporaryDirectory()
    root = Path(tmp.name) / "runs"
    os.environ["WORKBENCH_RUNS_DIR"] = str(root)
    os.environ["WORKBENCH_PREWARM"] = "0"  # no idle warm worker process
    os.environ["WORKBENCH_PROJECTION_WAIT"] = "600"
    os.environ["WORKBENCH_WEIGHTS_DIR"] = str(Path(tmp.name) / "weights")
    return tmp, root


def page_app(script: str, run_id: str | None = None):
    from streamlit.testing.v1 import AppTest

    at = (
        AppTest.from_string(script, default_timeout=60)
        if run_id is None
        else AppTest.from_file(str(PAGES / f"{script}.py"), default_timeout=60)
    )
    if run_id is not None:
        at.session_state["run"] = run_id  # the pages' run pickers start on it
    return at


def timed_rerun(name: str, at) -> float:
    start = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - start
    if at.exception or at.error:
        problems = [e.value for e in at.exception] + [e.value for e in at.error]
        raise RuntimeError(f"page {name} failed: {problems}")
    return elapsed


def page_reruns(apps: dict, repeats: int, fewer: dict[str, int]) -> dict[str, float]:
    """Median rerun seconds of each app; those in `fewer` (slow ones) rerun fewer times."""
    for name, at in apps.items():
        timed_rerun(name, at)  # first run: fills st.cache_data / st.cache_resource
    times = {name: [] for name in apps}
    for i in range(repeats):  # interleaved, so drift in machine load hits every page alike
        for name, at in apps.items():
            if i < fewer.get(name, repeats):
                times[name].append(timed_rerun(name, at))
    return {name: statistics.median(t) for name, t in times.items()}


def reference_figure(xy: np.ndarray) -> go.Figure:
    return go.Figure(go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers"))


def as_streamlit_sends(fig: go.Figure) -> str:
    """The JSON st.plotly_chart puts in its message (streamlit/elements/plotly_chart.py)."""
    spec = plotly.tools.return_figure_from_figure_or_data(fig, validate_figure=True)
    return plotly.io.to_json(spec, validate=False)


def figure_points(fig: go.Figure) -> tuple[set[str], int]:
    """(trace types, points in the figure's data; frames not counted)."""
    return {t.type for t in fig.data}, sum(len(t.x) for t in fig.data)


def browser_draws(figs: dict[str, go.Figure], repeats: int) -> dict | None:
    """{name: [seconds from newPlot's call until it (and addFrames) resolved]} in headless
    Chromium, and what the page's figure held once drawn; None without Chromium or playwright.
    Points are counted in `gd._fullData` (`gd.data` keeps the base64 arrays as sent)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not Path(CHROMIUM).exists():
        return None
    from plotly.offline import get_plotlyjs

    drawn = (
        "() => { const gd = document.getElementById('plot'); return window.__drawn !== undefined"
        " && !!gd._fullLayout && gd._fullData.reduce((n, t) => n + t._length, 0) > 0; }"
    )
    seen_js = (
        "() => { const gd = document.getElementById('plot'); return {"
        " types: [...new Set(gd._fullData.map(t => t.type))],"
        " points: gd._fullData.reduce((n, t) => n + t._length, 0),"
        " webgl_canvas: !!gd.querySelector('.gl-container canvas'),"
        " no_webgl_message: gd.innerText.includes('WebGL is not supported') }; }"
    )
    times, seen = {name: [] for name in figs}, None
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        (Path(tmp) / "plotly.min.js").write_text(get_plotlyjs())  # read once per page, from disk
        pages = {}
        for name, fig in figs.items():
            html = fig.to_html(
                include_plotlyjs="plotly.min.js", div_id="plot", auto_play=False,  # as Streamlit
                post_script="window.__drawn = performance.now();",
            )  # fmt: skip
            pages[name] = Path(tmp) / f"{name}.html"
            pages[name].write_text(html.replace(
                "Plotly.newPlot(", "window.__start = performance.now(); Plotly.newPlot(", 1
            ))  # fmt: skip
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for _ in range(repeats):
            for name, path in pages.items():
                page = browser.new_page()
                page.goto(path.as_uri())
                page.wait_for_function(drawn, timeout=120_000)
                times[name].append(page.evaluate("window.__drawn - window.__start") / 1e3)
                if name == "workbench":
                    seen = page.evaluate(seen_js)
                page.close()
        browser.close()
    return {"times": times, "seen": seen}


def scatter_timings(layouts: dict, embs: dict, classes: list[str], repeats: int) -> dict:
    """Seconds to build the page's figure and the bare one, and to serialise each as
    st.plotly_chart does; interleaved."""
    last = max(layouts)
    times = {k: [] for k in ("build_ref", "build", "send_ref", "send")}
    for _ in range(repeats):
        for suffix, build in (
            ("_ref", lambda: reference_figure(layouts[last])),
            ("", lambda: figure(layouts, embs, last, classes, "true label", None)),
        ):
            started = time.perf_counter()
            fig = build()
            built = time.perf_counter()
            as_streamlit_sends(fig)
            times[f"build{suffix}"].append(built - started)
            times[f"send{suffix}"].append(time.perf_counter() - started)
    return {k: statistics.median(v) for k, v in times.items()}


def row(bench: str, ref: str, ref_s: float, ours_s: float, target: str, met: str) -> str:
    return (f"| {bench} | {ref}: {ref_s * 1e3:.0f} ms | {ours_s * 1e3:.0f} ms | "
            f"{ours_s / ref_s:.1f}x | {target} | {met} |")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--large-repeats", type=int, default=3,
                    help="repeats of what takes seconds at --points points")  # fmt: skip
    ap.add_argument("--points", type=int, default=50_000)
    ap.add_argument("--epochs", type=int, default=3, help="of both runs: snapshots per run")
    ap.add_argument("--no-browser", action="store_true", help="skip drawing in Chromium")
    a = ap.parse_args()
    tmp, root = apptest_runs_folder()

    started = time.perf_counter()
    small = tiny_run(root, "bench-small", a.epochs)
    large = tiny_run(root, "bench-large", a.epochs)
    write_large_snapshots(large, a.points)
    layouts = project_run(large, "pca", DEFAULT_PARAMS["pca"])  # the page's default; disk cache
    embs = {e: load_embedding(large, e) for e in layouts}
    classes = pictures.class_names(runs.read_status(large), 10)
    print(f"setup {time.perf_counter() - started:.1f} s: two {a.epochs}-epoch digits runs, "
          f"{a.points:,} synthetic points in each snapshot of the second")  # fmt: skip

    large_page = f"Embeddings ({a.points:,}-point snapshots)"
    apps = {"trivial": page_app(TRIVIAL_SCRIPT)}
    apps |= {title: page_app(script, small.name) for title, script in CLASSIFIER_PAGES.items()}
    apps[large_page] = page_app("embeddings", large.name)
    reruns = page_reruns(apps, a.repeats, {large_page: a.large_repeats})
    scatter = scatter_timings(layouts, embs, classes, a.large_repeats)
    fig = figure(layouts, embs, max(layouts), classes, "true label", None)
    bare = reference_figure(layouts[max(layouts)])
    drawn = None if a.no_browser else browser_draws({"reference": bare, "workbench": fig},
                                                     a.large_repeats)  # fmt: skip

    print(f"medians of {a.repeats} interleaved repeats ({a.large_repeats} at {a.points:,} points); "
          f"streamlit {streamlit.__version__}, plotly {plotly.__version__}, torch "
          f"{torch.__version__}, 1 torch thread, {os.cpu_count()} cores")  # fmt: skip
    table = [
        "| benchmark | reference | workbench | ratio | target | met? |",
        "|---|---|---|---|---|---|",
    ]
    trivial = reruns.pop("trivial")
    for name, s in reruns.items():
        met = "yes" if s < RERUN_TARGET_S else "no"
        table.append(row(f"{name} page rerun, data cached", "one-line script rerun", trivial, s,
                         f"< {RERUN_TARGET_S} s", met))  # fmt: skip
    types, n_points = figure_points(fig)
    mb = len(as_streamlit_sends(fig)) / 1e6, len(as_streamlit_sends(bare)) / 1e6
    print(f"{a.points:,}-point figure: {len(fig.data)} traces of {sorted(types)}, "
          f"{n_points} points in its data, {len(fig.frames)} frames; st.plotly_chart JSON "
          f"{mb[0]:.1f} MB (bare Scattergl {mb[1]:.1f} MB)")  # fmt: skip
    complete = types == {"scattergl"} and n_points == a.points
    table.append(row(f"{a.points:,}-point scatter: build the page's figure", "bare go.Scattergl",
                     scatter["build_ref"], scatter["build"], "WebGL, every point",
                     f"{'yes' if complete else 'no'}: {'+'.join(sorted(types))}, "
                     f"{n_points} points"))  # fmt: skip
    table.append(row(f"{a.points:,}-point scatter: build + st.plotly_chart JSON",
                     "bare go.Scattergl", scatter["send_ref"], scatter["send"],
                     "–", "–"))  # fmt: skip
    if drawn is None:
        why = "--no-browser" if a.no_browser else f"no playwright or no {CHROMIUM}"
        print(f"drawing in headless Chromium: skipped ({why})")
    else:
        seen = drawn["seen"]
        drawn_s = {k: statistics.median(v) for k, v in drawn["times"].items()}
        print(f"drawn in headless Chromium: {seen}")
        drew = (set(seen["types"]) == {"scattergl"} and seen["points"] == a.points
                and seen["webgl_canvas"] and not seen["no_webgl_message"])  # fmt: skip
        table.append(row(f"{a.points:,}-point scatter: draw in headless Chromium",
                         "bare go.Scattergl", drawn_s["reference"], drawn_s["workbench"],
                         "renders (WebGL), every point",
                         f"{'yes' if drew else 'no'}: {seen['points']} points drawn"))  # fmt: skip
    print()
    print("\n".join(table))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
