"""Comparison groups: several runs on the same data split and seed, shown side by side.

A group is a manifest `<runs>/.groups/<group-id>.json` listing its rows in order; each row is
a run (and, with repeats, one more run per further seed: `repeats`), or a placeholder that says
why it has none yet (the self-supervised rows of the A-E grid until a BYOL backbone exists). Presets build the common comparisons in one call. The
runs of a group train one after another (each waits for the ones before it), or all at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.core.atomic import write_json
from engine.core.jsonfile import read_json_object
from engine.store import runs
from engine.store.layout import RunLayout

MAX_REPEATS = 20
# Presets renamed since groups were stored under the old name: read as the new one.
RENAMED_PRESETS = {"seed003": "resnet34-vs-mobilenet"}
LR_MARK = " · lr "  # in the labels of a learning-rate grid's rows (the tuned ablation preset)


@dataclass
class Row:
    label: str
    run_id: str | None = None  # the first seed's run: the one pages show in detail
    note: str = ""  # why there is no run (yet)
    repeats: list[str] = field(default_factory=list)  # the further seeds' runs, in seed order

    @property
    def run_ids(self) -> list[str]:
        return ([self.run_id] if self.run_id else []) + list(self.repeats)


@dataclass
class Group:
    group_id: str
    name: str
    preset: str
    created: float
    rows: list[Row] = field(default_factory=list)
    sequential: bool = True

    def run_dirs(self, runs_dir: Path) -> list[Path]:
        """Every run of every row, seed by seed: the first seeds of all rows, then the
        second seeds, ... (so a sequential group finishes one whole repeat before the next)."""
        most = max((len(r.run_ids) for r in self.rows), default=0)
        return [runs_dir / r.run_ids[i] for i in range(most) for r in self.rows
                if i < len(r.run_ids)]  # fmt: skip

    @property
    def repeats(self) -> int:
        return max((len(r.run_ids) for r in self.rows), default=0)


def groups_dir(runs_dir: str | Path | None = None) -> Path:
    return (Path(runs_dir) if runs_dir else runs.default_runs_dir()) / ".groups"


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
    rows = [Row(r["label"], r.get("run_id"), r.get("note", ""), list(r.get("repeats", [])))
            for r in d["rows"]]  # fmt: skip
    return Group(
        d["group_id"], d["name"], RENAMED_PRESETS.get(d["preset"], d["preset"]),
        float(d["created"]), rows, bool(d["sequential"]),
    )  # fmt: skip


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
        repeats = r.get("repeats", [])
        if not isinstance(repeats, list) or not all(isinstance(x, str) for x in repeats):
            return f"row {i} ({r['label']}) has 'repeats' that are not a list of run ids"
        if len(repeats) >= MAX_REPEATS:
            return f"row {i} ({r['label']}) has more than {MAX_REPEATS} repeats"
        if any(not _safe_run_id(x) for x in [r.get("run_id") or "x", *repeats]):
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


def remove_row_run(group: Group, run_id: str, runs_dir: str | Path | None = None) -> None:
    """Delete one run of the group; its row stays, saying it was removed."""
    root = Path(runs_dir) if runs_dir else runs.default_runs_dir()
    if (root / run_id).exists():
        runs.delete_run(root / run_id)
    for row in group.rows:
        if run_id in row.repeats:
            row.repeats.remove(run_id)
        elif row.run_id == run_id and row.repeats:  # the next seed's run takes its place
            row.run_id = row.repeats.pop(0)
        elif row.run_id == run_id:
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
        entry["seeds"] = [_test_score(root / rid) for rid in row.run_ids]
        table.append(entry)
    return table


def _test_score(run_dir: Path) -> float | None:
    """The run's test score (accuracy, or mIoU for segmentation); None until it has one."""
    if not run_dir.is_dir():
        return None
    summary = runs.read_status(run_dir).get("summary")
    if not isinstance(summary, dict):
        return None
    value = summary.get("test_miou", summary.get("test_acc"))
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
