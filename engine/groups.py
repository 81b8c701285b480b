"""Comparison groups: several runs on the same data split and seed, shown side by side.

A group is a manifest `<runs>/.groups/<group-id>.json` listing its rows in order; each row is
a run, or a placeholder that says why it has none yet (the self-supervised rows of the A-E
grid until a BYOL backbone exists). Presets build the common comparisons in one call. The
runs of a group train one after another (each waits for the ones before it), or all at once.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from engine import runs
from engine.atomic import write_json
from engine.config import ConfigError, RunConfig, TransferConfig
from engine.jsonfile import read_json_object
from engine.layout import RunLayout
from engine.presets import (  # noqa: F401  (re-exported: groups.PRESETS, groups.preset_configs)
    FEWSHOT_DISTANCES,
    FEWSHOT_SHOTS,
    IMPROVED_DEFAULT,
    PRESET_KINDS,
    PRESETS,
    SSL_WAITING,
    preset_configs,
    scaled_milestones,
)


@dataclass
class Row:
    label: str
    run_id: str | None = None
    note: str = ""  # why there is no run (yet)


@dataclass
class Group:
    group_id: str
    name: str
    preset: str
    created: float
    rows: list[Row] = field(default_factory=list)
    sequential: bool = True

    def run_dirs(self, runs_dir: Path) -> list[Path]:
        return [runs_dir / r.run_id for r in self.rows if r.run_id]


def groups_dir(runs_dir: str | Path | None = None) -> Path:
    return (Path(runs_dir) if runs_dir else runs.default_runs_dir()) / ".groups"


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


def save_group(group: Group, runs_dir: str | Path | None = None) -> None:
    write_json(groups_dir(runs_dir) / f"{group.group_id}.json", asdict(group))


def load_group(group_id: str, runs_dir: str | Path | None = None) -> Group:
    path = groups_dir(runs_dir) / f"{group_id}.json"
    if not path.exists():
        raise runs.RunError(f"no comparison group {group_id!r} (looked for {path})")
    try:
        d = read_json_object(path)
    except (OSError, ValueError) as e:
        raise runs.RunError(f"comparison group file {path} is damaged: {e}") from None
    problem = _manifest_problem(d)
    if problem:
        raise runs.RunError(f"comparison group file {path} is damaged: {problem}")
    rows = [Row(r["label"], r.get("run_id"), r.get("note", "")) for r in d["rows"]]
    return Group(
        d["group_id"], d["name"], d["preset"], float(d["created"]), rows, bool(d["sequential"])
    )


def _manifest_problem(d) -> str | None:
    """What is wrong with a manifest's JSON, in words; None when it is well formed."""
    if not isinstance(d, dict):
        return f"it holds a JSON {type(d).__name__}, not an object"
    for key, kind in (("group_id", str), ("name", str), ("preset", str), ("created", (int, float)),
                      ("sequential", bool), ("rows", list)):  # fmt: skip
        if not isinstance(d.get(key), kind) or isinstance(d.get(key), bool) != (kind is bool):
            return f"{key!r} is missing or of the wrong type"
    for i, r in enumerate(d["rows"]):
        if not isinstance(r, dict) or not isinstance(r.get("label"), str):
            return f"row {i} is not an object with a label"
        if not isinstance(r.get("run_id"), (str, type(None))) or not isinstance(
            r.get("note", ""), str
        ):
            return f"row {i} ({r['label']}) has a run_id or note of the wrong type"
        if r.get("run_id") and not _safe_run_id(r["run_id"]):
            return f"row {i} ({r['label']}) names a run outside the runs folder"
    return None


def _safe_run_id(run_id: str) -> bool:
    return run_id not in (".", "..") and "/" not in run_id and "\\" not in run_id


def list_groups(runs_dir: str | Path | None = None) -> list[Group | runs.RunError]:
    """Every group, newest first; a damaged manifest is listed as its error, not hidden."""
    folder = groups_dir(runs_dir)
    if not folder.is_dir():
        return []
    found: list[Group | runs.RunError] = []
    for path in sorted(folder.glob("*.json"), reverse=True):
        try:
            found.append(load_group(path.stem, runs_dir))
        except runs.RunError as e:
            found.append(e)
    # Ids share a one-second stamp and end in random hex: order by creation time, not by name.
    return sorted(found, key=lambda g: g.created if isinstance(g, Group) else 0.0, reverse=True)


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
        pids.append(runs.launch(run_dir, resume=resume, warm=not after, after=after))
        before.append(run_dir.name)
    return pids


def stop_group(group: Group, runs_dir: str | Path | None = None) -> int:
    """Stop every active run of the group, the waiting ones first (so none starts meanwhile)."""
    root = Path(runs_dir) if runs_dir else runs.default_runs_dir()
    stopped, refused = 0, []
    for run_dir in reversed(group.run_dirs(root)):
        try:
            if run_dir.is_dir() and runs.stop(run_dir):
                stopped += 1
        except runs.RunError as e:  # a status naming a process that is not the run's
            refused.append(str(e))
    if refused:
        raise runs.RunError(f"stopped {stopped}; " + "; ".join(refused))
    return stopped


def remove_row_run(group: Group, run_id: str, runs_dir: str | Path | None = None) -> None:
    """Delete one run of the group; its row stays, saying it was removed."""
    root = Path(runs_dir) if runs_dir else runs.default_runs_dir()
    if (root / run_id).exists():
        runs.delete_run(root / run_id)
    for row in group.rows:
        if row.run_id == run_id:
            row.run_id, row.note = None, "removed"
    save_group(group, runs_dir)


def _configured_epochs(run_dir: Path) -> int:
    try:
        return max(int(read_json_object(RunLayout(run_dir).config).get("epochs", 1)), 1)
    except (OSError, ValueError, TypeError, AttributeError):
        return 1


def comparison_table(group: Group, runs_dir: str | Path | None = None) -> list[dict]:
    """One row per group row: what the Transfer page and `compare` print."""
    root = Path(runs_dir) if runs_dir else runs.default_runs_dir()
    table = []
    for row in group.rows:
        entry = {"label": row.label, "run": row.run_id, "state": row.note or "—"}
        run_dir = root / row.run_id if row.run_id else None
        if run_dir is not None and run_dir.is_dir():
            status = runs.read_status(run_dir)
            info, summary = status.get("model_info"), status.get("summary")
            info = info if isinstance(info, dict) else {}  # a damaged status.json shows blanks
            summary = summary if isinstance(summary, dict) else {}
            events = runs.read_metrics(run_dir)
            seconds = [e["value"] for e in events if e["name"] == "epoch_seconds"]
            val_acc = [e["value"] for e in events if (e["name"], e["split"]) == ("acc", "val")]
            val_miou = [e["value"] for e in events if (e["name"], e["split"]) == ("miou", "val")]
            total = status.get("total_steps") or 0
            step = max([status.get("step") or 0, *(e.get("step") or 0 for e in events)])
            entry.update(
                state=status.get("state", "damaged"),
                progress=1.0
                if status.get("state") == "finished"
                else min(step / total, 1.0)
                if total
                else 0.0,
                steps_per_epoch=total / _configured_epochs(run_dir) if total else None,
                backbone=info.get("backbone"),
                mode=info.get("mode"),
                trainable_params=info.get("trainable_params"),
                total_params=info.get("total_params"),
                seconds_per_epoch=sum(seconds) / len(seconds) if seconds else None,
                feature_seconds=info.get("feature_seconds"),
                epochs=len(val_acc),
                best_val_acc=max(val_acc) if val_acc else None,
                test_acc=summary.get("test_acc"),
                test_ci95=summary.get("test_ci95"),  # few-shot: over the test episodes
                best_val_miou=max(val_miou) if val_miou else None,  # segmentation
                test_miou=summary.get("test_miou"),
                error=status.get("error"),
            )
        elif run_dir is not None:
            entry["state"] = "removed"
        table.append(entry)
    return table
