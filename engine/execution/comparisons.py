"""Starting comparisons: a group's rows validated whole (configs, data, starting weights)
before any run folder or manifest exists, then created, launched and stopped together."""

from __future__ import annotations

import secrets
import time
from datetime import datetime
from pathlib import Path

from engine.config import ConfigError, RunConfig, TransferConfig
from engine.core.jsonfile import read_json_object
from engine.execution import launcher
from engine.experiments.presets import PRESETS, preset_configs
from engine.store import runs
from engine.store.groups import Group, Row, save_group
from engine.store.layout import RunLayout


def backbone_weights_file(value: str, runs_dir: str | Path | None = None) -> str:
    """A weight file from what a person gives: "imagenet", a file, or a run (its folder, id or
    id prefix), whose checkpoints/backbone.pt (a BYOL run's) or best.pt is taken."""
    if value == "imagenet":
        return value
    path = Path(value).expanduser()
    if path.is_file():
        return str(path.resolve())
    try:
        run_dir = runs.resolve_run(value, runs_dir)
    except runs.RunError as e:
        if "matches several runs" in str(e):
            raise ConfigError(f"weights {value!r}: {e}") from None
        raise ConfigError(f"weights {value!r}: no such weight file, run folder or run id") from None
    for name in ("backbone.pt", "best.pt"):
        if (found := RunLayout(run_dir).checkpoints / name).is_file():
            return str(found.resolve())
    raise ConfigError(f"run {run_dir.name} has no checkpoint yet (no checkpoints/best.pt)")


def check_source_run(weights: str | None, base: RunConfig) -> None:
    """Weights that a run of this workbench made must come from the same backbone, and from
    the same split of the same data when it is the same data (else its pretraining may have
    seen this comparison's validation and test images)."""
    if not weights or weights == "imagenet":
        return
    run_dir = Path(weights).parent.parent  # <run>/checkpoints/<file>
    try:
        source = read_json_object(run_dir / "config.json")
    except (OSError, ValueError):
        return  # a plain weight file: loaded with what fits, and reported
    name = (source.get("model") or {}).get("name")
    if name and name != base.model.name:
        raise ConfigError(
            f"run {run_dir.name} trained a {name} backbone; this comparison's backbone is "
            f"{base.model.name}: choose {name}, or weights of a {base.model.name}"
        )
    data = source.get("data") or {}
    same_data = (data.get("name"), data.get("path")) == (base.data.name, base.data.path)
    split = ("split_seed", "val_fraction", "test_fraction")
    if same_data and any(data.get(k) != getattr(base.data, k) for k in split):
        raise ConfigError(
            f"run {run_dir.name} used another split of {base.data.name} (split_seed, "
            "val_fraction, test_fraction): its pretraining may have seen this comparison's "
            "validation or test images"
        )


def check_weights(cfg: TransferConfig) -> None:
    """Fail now, with what to do, if a run's starting weights are not here or do not fit
    (never at run time, and never by trying a download)."""
    from engine.models.backbones import get_backbone
    from engine.models.weights import WeightsError, missing_message

    weights = cfg.backbone_weights
    if weights == "imagenet":
        spec = get_backbone(cfg.model.name)
        if not spec.weights_available():
            wf = spec.weight_file()
            if wf is None:
                spec.imagenet_state_dict()  # raises with what to install
            raise WeightsError(missing_message(wf))
    elif weights != "none":
        # Read it and fit it into the backbone now (no training): a file that is not a state
        # dict, or of another architecture, is refused before any run folder is made.
        from engine.models.backbones import build_transfer_net

        build_transfer_net(cfg.model.name, 2, cfg.data.image_size, weights)


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
) -> Group:
    """Validate every row (configs and weights) first, then create the runs and the manifest:
    a group is made whole or not at all. Weights may be given as runs (see
    `backbone_weights_file`)."""
    if preset == "a-e":
        if ssl_weights:
            ssl_weights = backbone_weights_file(ssl_weights, runs_dir)
        supervised_weights = backbone_weights_file(supervised_weights, runs_dir)
        for weights in (ssl_weights, supervised_weights):
            check_source_run(weights, base)
    rows = preset_configs(
        preset, base, include_scratch, ssl_weights, include_frozen, supervised_weights
    )
    for _, cfg, _ in rows:
        if cfg is not None:
            cfg.validate()
            if isinstance(cfg, TransferConfig):
                check_weights(cfg)
    group_id = f"{datetime.now():%Y%m%d-%H%M%S}-{preset}-{secrets.token_hex(2)}"
    group = Group(group_id, name or PRESETS[preset], preset, time.time(), sequential=sequential)
    for label, cfg, note in rows:
        run_id = None
        if cfg is not None:
            cfg.group, cfg.name = group_id, cfg.name or label
            run_id = runs.create_run(cfg, runs_dir).name
        group.rows.append(Row(label, run_id, note))
    save_group(group, runs_dir)
    return group


def launch_group(group: Group, runs_dir: str | Path | None = None) -> list[int]:
    """Start every run of the group that is not finished or active; sequential groups queue
    each run behind the ones before it. Returns the pids started."""
    root = Path(runs_dir) if runs_dir else runs.default_runs_dir()
    pids, before = [], []
    for run_dir in group.run_dirs(root):
        if not run_dir.is_dir():
            continue  # removed
        state = runs.read_status(run_dir).get("state")
        if state == "finished" or runs.is_active(run_dir):
            before.append(run_dir.name)
            continue
        resume = RunLayout(run_dir).last_checkpoint.exists()
        after = list(before) if group.sequential else []
        # Only the first can use the warm worker: the others wait, and should not hold torch.
        pids.append(launcher.launch(run_dir, resume=resume, warm=not after, after=after))
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
