"""Time, said before the click and during the run (engine.analysis.estimates): a form's
estimate for the settings on screen, and a running run's time left."""

from __future__ import annotations

import streamlit as st

from dashboard.components import picking
from engine.analysis import estimates
from engine.config import RunConfig
from engine.store import runs


@st.cache_data(ttl=30, show_spinner=False)
def _finished(runs_dir: str) -> list[tuple[dict, dict]]:
    return estimates.finished_here(runs_dir)


@st.cache_resource(show_spinner=False)
def has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def estimate_of(configs: list[RunConfig]) -> estimates.Estimate | None:
    """The configs' estimates added up (a comparison's rows run one after another)."""
    return estimates.combined(configs, _finished(str(picking.runs_dir())))


def show_estimate(configs: list[RunConfig], quick_hint: str = "", where=st) -> None:
    """'⏱ about 6 min here: 10 epochs x 35 s (…)' under a form; past 10 minutes on a machine
    without a GPU, a warning with the quick settings."""
    est = estimate_of(configs)
    if est is None:
        where.caption("⏱ No estimate yet: no run of this model has finished here, and the "
                      "data's size is not known before reading it.")  # fmt: skip
        return
    if len(configs) > 1:
        where.caption(f"⏱ {estimates.duration(est.seconds)} here for {len(configs)} runs, one "
                      f"after another ({est.basis})")  # fmt: skip
    else:
        where.caption(f"⏱ {est.text()}")
    if est.slow and not has_gpu():
        where.warning(f"That is over 10 minutes on this machine's CPU. {quick_hint or ''}"
                      "Fewer epochs, a smaller input size or fewer images make it shorter; "
                      "each page's quick demo takes about a minute.")  # fmt: skip


def time_left(events: list[dict], status: dict, run_dir) -> str | None:
    """'about 2 min left' for a running run, from the epochs it has done."""
    if status.get("state") != "running":
        return None
    try:
        epochs = runs.load_config(run_dir).epochs
    except (runs.RunError, ValueError, OSError):  # a damaged config: no estimate, no error
        return None
    seconds = [e["value"] for e in events if e.get("name") == "epoch_seconds"]
    left = estimates.remaining(seconds, len(seconds), epochs)
    return None if left is None else f"{estimates.duration(left)} left"


def show_group_estimate(preset: str, base: RunConfig, repeats: int = 1, **options) -> None:
    """The estimate of a comparison: its rows (engine.experiments.presets) one after another,
    each `repeats` times. A setting the rows refuse is said when the button is pressed."""
    from engine.core.errors import WorkbenchError
    from engine.experiments.presets import preset_configs

    try:
        rows = [cfg for _, cfg, _ in preset_configs(preset, base, **options) if cfg is not None]
    except (WorkbenchError, OSError):
        return
    show_estimate(rows * max(int(repeats), 1))


def quick_seconds(demo) -> int:
    """A quick demo's time on this machine: learned from the runs finished here when every run
    it starts has such an estimate, else the time measured for the demo itself on the
    project's 2-core machine (bench/quick_demos.py), which the reference table's
    extrapolation from other settings misses by up to 2.6x."""
    from engine.core.errors import WorkbenchError

    try:
        est = estimate_of(demo.configs())
    except (WorkbenchError, OSError):
        return demo.seconds
    return round(est.seconds) if est is not None and est.here else demo.seconds
