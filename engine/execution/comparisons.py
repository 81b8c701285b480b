"""Starting comparisons: a group's rows validated whole (configs, data, starting weights)
before any run folder or manifest exists, then created, launched and stopped together."""

from __future__ import annotations

import secrets
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from engine.config import ConfigError, RunConfig, TransferConfig
from engine.execution import launcher
from engine.execution.checks import backbone_weights_file, check_source_run, check_weights
from engine.experiments.presets import PRESETS, preset_configs
from engine.store import runs
from engine.store.groups import MAX_REPEATS, Group, Row, save_group
from engine.store.layout import RunLayout


def create_group(
    preset: str,
    base: RunConfig,
    runs_dir: str | Path | None = None,
    name: str = "",
    include_scratch: bool = True,
    ssl_weights: str | None = None,
    sequential: bool = True,
    include_frozen: bool = True,
    supervised_weights: str = "imagenet",
    repeats: int = 1,
    tune_lr: bool = False,
) -> Group:
    """Validate every row (configs and weights) first, then create the runs and the manifest:
    a group is made whole or not at all. Weights may be given as runs (see
    `backbone_weights_file`). `repeats` N: each row is N runs, seeds base.seed .. base.seed +
    N - 1, on the same data split (data.split_seed), so rows compare on the same test items."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= MAX_REPEATS:
        raise ConfigError(f"repeats must be a whole number in [1, {MAX_REPEATS}], got {repeats!r}")
    if preset == "a-e":
        if ssl_weights:
            ssl_weights = backbone_weights_file(ssl_weights, runs_dir)
        supervised_weights = backbone_weights_file(supervised_weights, runs_dir)
        for weights in (ssl_weights, supervised_weights):
            check_source_run(weights, base)
    rows = preset_configs(
        preset, base, include_scratch, ssl_weights, include_frozen, supervised_weights, tune_lr
    )
    for _, cfg, _ in rows:
        if cfg is not None:
            cfg.validate()
            replace(cfg, seed=cfg.seed + repeats - 1).validate()  # the last seed is valid too
            if isinstance(cfg, TransferConfig):
                check_weights(cfg)
    group_id = f"{datetime.now():%Y%m%d-%H%M%S}-{preset}-{secrets.token_hex(2)}"
    group = Group(group_id, name or PRESETS[preset], preset, time.time(), sequential=sequential)
    for label, cfg, note in rows:
        made = []
        for i in range(repeats if cfg is not None else 0):
            seeded = replace(cfg, seed=cfg.seed + i, group=group_id,
                             name=(cfg.name or label) + (f" · seed {cfg.seed + i}" if repeats > 1
                                                         else ""))  # fmt: skip
            made.append(runs.create_run(seeded, runs_dir).name)
        group.rows.append(Row(label, made[0] if made else None, note, made[1:]))
    save_group(group, runs_dir)
    return group


def launch_group(
    group: Group, runs_dir: str | Path | None = None, after: list[str] = ()
) -> list[int]:
    """Start every run of the group that is not finished or active; sequential groups queue
    each run behind the ones before it, and every run behind `after` (ids of other runs in
    the folder). Returns the pids started."""
    root = Path(runs_dir) if runs_dir else runs.default_runs_dir()
    pids, before = [], list(after)
    for run_dir in group.run_dirs(root):
        if not run_dir.is_dir():
            continue  # removed
        state = runs.read_status(run_dir).get("state")
        if state == "finished" or runs.is_active(run_dir):
            before.append(run_dir.name)
            continue
        resume = RunLayout(run_dir).last_checkpoint.exists()
        waits = list(before) if group.sequential else list(after)
        # Only the first can use the warm worker: the others wait, and should not hold torch.
        pids.append(launcher.launch(run_dir, resume=resume, warm=not waits, after=waits))
        before.append(run_dir.name)
    return pids


def stop_group(group: Group, runs_dir: str | Path | None = None) -> int:
    """Stop every active run of the group, the waiting ones first (so none starts meanwhile)."""
    root = Path(runs_dir) if runs_dir else runs.default_runs_dir()
    stopped, refused = 0, []
    for run_dir in reversed(group.run_dirs(root)):
        try:
            if run_dir.is_dir() and launcher.stop(run_dir):
                stopped += 1
        except runs.RunError as e:  # a status naming a process that is not the run's
            refused.append(str(e))
    if refused:
        raise runs.RunError(f"stopped {stopped}; " + "; ".join(refused))
    return stopped
