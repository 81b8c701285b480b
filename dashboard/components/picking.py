"""Choosing a run: the runs folder, the run picker (remembered across pages), its label and status line."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import streamlit as st

from engine.experiments.kinds import KINDS
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


def runs_dir() -> Path:
    return runs.default_runs_dir()


def run_label(r: runs.RunSummary) -> str:
    icon = STATE_ICONS.get(r.state, "•")
    name = (r.config or {}).get("name") or ""
    return f"{icon} {r.run_id}" + (f" · {name}" if name else "")


def run_picker(
    label: str = "Run",
    key: str = "run_picker",
    require_snapshots: bool = False,
    classifiers_only: bool = False,
):
    """Select a run; remembers the choice across pages in session_state['run'].
    `classifiers_only`: runs whose model classifies one image (KINDS' classifies_images)."""
    all_runs = runs.list_runs(runs_dir())
    if classifiers_only:
        all_runs = [r for r in all_runs if classifies_images(r)]
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


def classifies_images(run) -> bool:
    """Whether a listed run's model takes one image and scores classes (a damaged config:
    no)."""
    name = run.config.get("kind") if isinstance(run.config, dict) and not run.error else None
    return isinstance(name, str) and name in KINDS and KINDS[name].classifies_images
