"""Starting runs: the one way the pages and the command line start a run or a comparison.
Everything is checked before anything exists (execution.checks), then the run folder (or
the group's folders and manifest) is made and its process launched."""

from __future__ import annotations

from pathlib import Path

from engine.config import RunConfig
from engine.execution import comparisons, launcher
from engine.execution.checks import check_inputs
from engine.experiments.kinds import get_kind
from engine.store import runs
from engine.store.groups import Group


def start_run(
    cfg: RunConfig, runs_dir: str | Path | None = None, launch: bool = True,
    after: list[str] = (),
) -> Path:  # fmt: skip
    """Check `cfg` whole, make its run folder and (with `launch`) start its process, queued
    behind the runs `after` names; the run folder. Nothing is made when a check fails (a
    WorkbenchError or OSError says why)."""
    check_inputs(cfg)
    run_dir = runs.create_run(cfg, runs_dir)
    if launch:
        launcher.launch(run_dir, warm=not after, after=list(after))
    return run_dir


def start_group(
    preset: str, base: RunConfig, runs_dir: str | Path | None = None, launch: bool = True,
    **options,
) -> Group:  # fmt: skip
    """A comparison from `preset` over `base`: its data checked once, every row validated
    (configs, weights) before any folder exists, then made and (with `launch`) started."""
    base.validate()
    get_kind(base.kind).check_data(base)
    after = options.pop("after", ())
    group = comparisons.create_group(preset, base, runs_dir, **options)
    if launch:
        comparisons.launch_group(group, runs_dir, after=list(after))
    return group
