"""The A-E grid of DLCV HW1 and HW4 (problem 2) as the assignments tabulate it: setting,
pre-training, fine-tuning, validation accuracy. The group itself is the `a-e` preset."""

from __future__ import annotations

from pathlib import Path

from engine.core.jsonfile import read_json_object
from engine.store import runs
from engine.store.groups import Group, comparison_table

FINE_TUNING = {
    "scratch": "train full model (backbone + classifier)",
    "finetune": "train full model (backbone + classifier)",
    "frozen": "fix the backbone, train classifier only",
}


def weights_origin(weights: str) -> str:
    """What a row's backbone was pretrained on, and whether with labels, in words."""
    if weights.startswith("none"):
        return "–"
    if weights == "imagenet":
        return "ImageNet, with labels (torchvision)"
    run_dir = Path(weights).parent.parent  # <run>/checkpoints/<file>
    try:
        cfg = read_json_object(run_dir / "config.json")
    except (OSError, ValueError):
        return f"weight file {Path(weights).name}"
    data = cfg.get("data") or {}
    where = data.get("name", "?")
    if data.get("classes"):
        where += f" classes {','.join(data['classes'])}"
    if cfg.get("kind") == "ssl":
        return f"BYOL, without labels ({where})"
    return f"supervised, with labels ({where})"


def _source_run(weights: str) -> str:
    """The run folder a weight file came from, or the file's name."""
    if weights.startswith("none") or weights == "imagenet":
        return ""
    path = Path(weights)
    return path.parent.parent.name if path.parent.name == "checkpoints" else path.name


def _against_control(group: Group, root: Path) -> dict[str, str]:
    """Per setting label: does it beat F, the random-init frozen control? (A paired test on
    the same test images: engine.analysis.comparison.)"""
    from engine.analysis.comparison import compare_rows, row_stats

    stats = row_stats(group, root)
    control = next((r for r in stats if r.label.startswith("F:")), None)
    if control is None or not control.outcomes:
        return {}
    out = {}
    for r in stats:
        if r is control or not r.outcomes:
            continue
        v = compare_rows(r, control)
        if v.test is None:
            out[r.label] = v.problem
        elif v.test.p < 0.05:
            word = "beats" if v.test.difference > 0 else "below"
            out[r.label] = (
                f"{word} the control by {abs(v.test.difference) * 100:.1f} points (p = {v.test.p:.2g})"
            )
        else:
            out[r.label] = f"within noise of the control (p = {v.test.p:.2g})"
    return out


def ae_table(group: Group, runs_dir: str | Path | None = None) -> list[dict]:
    """One row per setting, in the assignment's columns (plus test accuracy, whether it beats the
    control F, and state)."""
    root = Path(runs_dir) if runs_dir else runs.default_runs_dir()
    versus = _against_control(group, root)
    out = []
    for row, entry in zip(group.rows, comparison_table(group, root), strict=True):
        setting, _, _ = row.label.partition(":")
        cfg = {}
        if row.run_id and (root / row.run_id / "config.json").is_file():
            try:
                cfg = read_json_object(root / row.run_id / "config.json")
            except (OSError, ValueError):
                cfg = {}
        mode = cfg.get("mode", "")
        weights = "none" if mode == "scratch" else cfg.get("weights", "")
        out.append({
            "setting": setting.strip(),
            "pre-training": weights_origin(weights) if cfg else row.note or "–",
            "fine-tuning": FINE_TUNING.get(mode, "–"),
            "validation accuracy": entry.get("best_val_acc"),
            "test accuracy": entry.get("test_acc"),
            "vs control (F)": versus.get(row.label, ""),
            "state": entry["state"],
            "backbone from": _source_run(weights) if cfg else "",
        })  # fmt: skip
    return out


def ae_groups_using(run_dir: str | Path, runs_dir: str | Path | None = None) -> list[Group]:
    """The A-E groups whose self-supervised rows start from this (BYOL) run's weights."""
    from engine.store.groups import list_groups

    root = Path(runs_dir) if runs_dir else runs.default_runs_dir()
    mine = str(Path(run_dir).resolve())
    found = []
    for group in list_groups(root):
        if not isinstance(group, Group) or group.preset != "a-e":
            continue
        for row in group.rows:
            if not row.label.startswith(("C:", "E:")):  # the self-supervised rows
                continue
            try:
                cfg = read_json_object(root / row.run_id / "config.json")
            except (TypeError, OSError, ValueError):
                continue
            if str(cfg.get("weights", "")).startswith(mine + "/"):
                found.append(group)
                break
    return found
