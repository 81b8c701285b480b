"""Home's gallery: a card per experiment with a picture (the latest result of that kind in the
runs folder, else a preview shipped in dashboard/previews/, made by scripts/make_previews.py),
what it shows, the assignment it comes from, and its quick demo (engine.execution.quick)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st
from streamlit.errors import StreamlitAPIException

from dashboard.components import cache, inputs, picking, pictures, timing
from engine.core.errors import WorkbenchError
from engine.execution.quick import QUICK, QuickDemo, start_quick
from engine.store import groups, runs
from engine.store.layout import RunLayout

PREVIEWS = Path(__file__).resolve().parents[1] / "previews"
THUMB = (424, 240)
PALETTE = np.array([(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34),
                    (23, 190, 207)], dtype=np.uint8)  # fmt: skip


def latest_result(demo: QuickDemo, all_runs: list[runs.RunSummary]) -> runs.RunSummary | None:
    """The newest finished run of the demo's kind that has something to draw."""
    for r in all_runs:  # newest first
        if (r.config or {}).get("kind") == demo.kind and r.state == "finished":
            layout = RunLayout(r.path)
            if layout.mask_epochs() if demo.kind == "segment" else layout.embedding_epochs():
                return r
    return None


@st.cache_data(show_spinner=False, max_entries=64)
def _scatter_png(run_dir: str, stamp: tuple[int, int]) -> bytes | None:
    """The last embedding snapshot's first two principal components, a dot per image in its
    class's colour; None when the snapshot is unreadable (the card shows the preview)."""
    from engine.inspect.snapshots import load_embedding

    layout = RunLayout(Path(run_dir))
    try:
        arrays = load_embedding(run_dir, layout.embedding_epochs()[-1])
    except (ValueError, OSError, IndexError):
        return None
    x, labels = arrays["features"][:800].astype(np.float64), arrays["labels"][:800]
    if len(x) < 3 or x.ndim != 2:
        return None
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T
    w, h = THUMB
    lo, hi = xy.min(0), xy.max(0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    px = (12 + (xy - lo) / span * (np.array([w, h]) - 24)).astype(int)
    canvas = np.full((h, w, 3), 255, dtype=np.uint8)
    for (cx, cy), label in zip(px, labels, strict=True):
        canvas[max(cy - 2, 0) : cy + 2, max(cx - 2, 0) : cx + 2] = PALETTE[int(label) % 10]
    return pictures.png_bytes(canvas)


def _mask_png(run: runs.RunSummary) -> bytes | None:
    """The newest predicted mask of the run's first followed image, cut to the card's shape."""
    from PIL import Image, UnidentifiedImageError

    folder = RunLayout(run.path).mask_dir(RunLayout(run.path).mask_epochs()[-1])
    files = sorted(folder.glob("*.png"))
    if not files or files[0].stat().st_size > 4 * 2**20:
        return None
    try:
        with Image.open(files[0]) as im:
            mask = im.convert("RGB")
    except (OSError, UnidentifiedImageError):  # a damaged mask: the card shows the preview
        return None
    w, h = mask.size
    crop_h = min(h, round(w * THUMB[1] / THUMB[0]))  # the middle band, as wide as the mask
    top = (h - crop_h) // 2
    band = mask.crop((0, top, w, top + crop_h)).resize(THUMB, Image.Resampling.NEAREST)
    return pictures.png_bytes(np.asarray(band))


def picture(demo: QuickDemo, all_runs: list[runs.RunSummary]) -> tuple[bytes | str, str]:
    """(image, caption): the latest result of the demo's kind, or its shipped preview."""
    run = latest_result(demo, all_runs)
    if run is not None:
        if demo.kind == "segment":
            png = _mask_png(run)
        else:
            path = RunLayout(run.path).embedding_file(RunLayout(run.path).embedding_epochs()[-1])
            png = _scatter_png(str(run.path), cache.file_stamp(path))
        if png is not None:
            return png, f"latest: {run.run_id}"
    return str(PREVIEWS / f"{demo.key}.png"), "preview"


def minutes(seconds: int) -> str:
    return f"about {seconds} s" if seconds < 90 else f"about {round(seconds / 60)} min"


def card(demo: QuickDemo, all_runs: list[runs.RunSummary]) -> None:
    with st.container(border=True):
        image, caption = picture(demo, all_runs)
        st.image(image, caption=caption, width="stretch")
        st.markdown(f"**{demo.title}**  \n{demo.shows}")
        st.caption(f"From {demo.course}")
        if st.button(f"▶ Quick demo · {minutes(timing.quick_seconds(demo))}", key=f"quick_{demo.key}",
                     width="stretch", help="sized to finish in about a minute on 2 CPU "
                     "cores; it queues behind runs already training"):  # fmt: skip
            start(demo.key)
        try:
            st.page_link(f"views/{demo.page}.py", label="Open the page →")
        except StreamlitAPIException:  # the page alone, outside the app's navigation (tests)
            st.caption(f"Page: {demo.page}")


def start(key: str) -> None:
    """Start (or find) the quick demo and open its page."""
    try:
        started = start_quick(key, picking.runs_dir())
    except (WorkbenchError, OSError) as e:
        inputs.show_error(e)
        return
    st.session_state["quick_started"] = started.message(timing.quick_seconds(started.demo))
    watched = ([str(d) for d in groups.load_group(started.group_id, picking.runs_dir())
                .run_dirs(picking.runs_dir())] if started.group_id
               else [str(started.run_dir)])  # fmt: skip
    st.session_state["quick_watch"] = watched
    st.session_state.pop("quick_follow_drawn", None)  # a new demo: its first tick draws
    key, value = FOLLOW[started.demo.page]
    if started.group_id is not None:
        st.session_state[key] = value.format(group=started.group_id, run="")
    elif started.run_dir is not None:
        st.session_state[key] = value.format(run=started.run_dir.name, group="")
    st.switch_page(f"views/{started.demo.page}.py")


# How each page remembers what it shows (session_state key, value): the demo's run or group.
FOLLOW = {
    "train": ("run", "{run}"), "inside": ("run", "{run}"), "ssl": ("ssl_run", "{run}"),
    "fewshot": ("fewshot_run", "{run}"), "segmentation": ("seg_view", "run:{run}"),
    "transfer": ("group", "{group}"), "dynamic": ("dynamic_group", "{group}"),
    "longtail": ("lt_group", "{group}"),
}  # fmt: skip


def offer_if_empty(key: str, what: str) -> None:
    """At the top of a page with nothing of its kind yet (no run of the demo's kind, or of its
    comparison preset), the quick demo instead of an empty table."""
    demo = QUICK[key]
    root = picking.runs_dir()
    if demo.preset is not None and demo.preset in ("ablation", "long-tail"):
        from engine.execution.quick import latest_group

        found = latest_group(demo, root) is not None
    else:
        found = any((r.config or {}).get("kind") == demo.kind for r in runs.list_runs(root))
    if not found:
        empty_state(key, what)


def empty_state(key: str, what: str) -> None:
    """A page with nothing of its kind yet: what it would show, and its quick demo."""
    demo = QUICK[key]
    with st.container(border=True):
        st.markdown(f"**No {what} yet.** {demo.shows}")
        if st.button(f"▶ Quick demo: {demo.title} ({minutes(timing.quick_seconds(demo))} here)",
                     type="primary", key=f"empty_quick_{key}"):  # fmt: skip
            start(key)


def announce(until_ready: bool = False) -> None:
    """Say once, on the page a quick demo opened, what the click did; until the demo's first
    checkpoint exists (what the page draws from), follow its progress live and then redraw
    the page. `until_ready`: draw nothing of the page below until then (a page whose drawing
    without the demo's checkpoint is long and beside the point: Inside's pretrained backbone,
    whose seconds of work held back the follower's ticks)."""
    if message := st.session_state.get("quick_started"):
        st.info(message)
    if watched := st.session_state.get("quick_watch"):
        st.fragment(run_every=1.0)(_follow)()
        if until_ready and not any(RunLayout(Path(d)).best_checkpoint.exists() for d in watched):
            st.stop()
    else:  # said on this drawing of the page too (the one that follows the first checkpoint)
        st.session_state.pop("quick_started", None)


def _follow() -> None:
    watched = [Path(d) for d in st.session_state.get("quick_watch") or []]
    ready = [d for d in watched if RunLayout(d).best_checkpoint.exists()]
    ended = [d for d in watched if runs.read_status(d).get("state") not in ("queued", "running")]
    # The whole page only once the progress line has been drawn: a fast demo's first
    # checkpoint (or a queued one's start) can come before it, and the page would then show
    # nothing live until its whole drawing is done.
    if (ready or len(ended) == len(watched)) and st.session_state.get("quick_follow_drawn"):
        st.session_state.pop("quick_watch", None)
        st.session_state.pop("quick_follow_drawn", None)
        st.rerun(scope="app")
    states = {d: runs.read_status(d) for d in watched}
    shown = next((d for d in watched if states[d].get("state") == "running"), None)
    shown = shown or next(iter(ready or ended), None)
    if shown is None:
        waiting = any(runs.is_active(d.parent / behind)
                      for d in watched for behind in states[d].get("after") or [])  # fmt: skip
        st.caption("Quick demo: queued, waiting for its turn…" if waiting
                   else "Quick demo: starting…")  # fmt: skip
        return
    status = states[shown]
    step, total = status.get("step") or 0, status.get("total_steps") or 0
    then = "drawing the page" if ready else "the page fills in at its first checkpoint"
    st.progress(min(step / total, 1.0) if total else 0.0,
                text=f"Quick demo: {shown.name} training, epoch {(status.get('epoch') or 0) + 1}; "
                f"{then}")  # fmt: skip
    st.session_state["quick_follow_drawn"] = True


def gallery(all_runs: list[runs.RunSummary], columns: int = 3) -> None:
    demos = list(QUICK.values())
    for i in range(0, len(demos), columns):
        for col, demo in zip(st.columns(columns), demos[i : i + columns], strict=False):
            with col:
                card(demo, all_runs)
