"""Every run at a glance, for the Runs page and the CLI: one row per run (kind, model, data,
state, best and test metric, created, duration, title, tags), the metadata a person adds
(a title, tags), a re-run of a config, and curves of any metric of several runs on one axis.
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime
from pathlib import Path

from engine.config import ConfigError, RunConfig
from engine.store import runs

TAG = re.compile(r"[\w.+-]{1,32}")  # letters, digits, _ . + -: no spaces, no commas
MAX_TITLE = 120
X_AXES = ("step", "epoch", "time")


def _number(value) -> float | None:
    """A finite number, or None: status.json may come from anywhere (an imported zip)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _when(value) -> datetime | None:
    try:
        return datetime.fromtimestamp(value) if _number(value) is not None else None
    except (OverflowError, OSError, ValueError):
        return None


def best_metric(summary: dict) -> tuple[str | None, float | None, float | None]:
    """(metric name, best validation value, test value) from a run's summary: accuracy for
    classifiers, mIoU for segmentation, kNN accuracy for self-supervised runs."""
    if not isinstance(summary, dict):
        return None, None, None
    for key, value in summary.items():
        if key.startswith("best_val_") and isinstance(value, (int, float)):
            name = key.removeprefix("best_val_")
            test = summary.get(f"test_{name}", summary.get("test_acc"))
            return name, float(value), float(test) if isinstance(test, (int, float)) else None
    test = summary.get("test_acc")
    return ("acc", None, float(test)) if isinstance(test, (int, float)) else (None, None, None)


def _duration(status: dict, now: float) -> float | None:
    started, ended = _number(status.get("started")), _number(status.get("ended"))
    if started is None:
        return None
    end = ended if ended is not None and ended >= started else now
    return end - started if status.get("state") in runs.ACTIVE or ended else None


def run_rows(runs_dir: str | Path | None = None) -> list[dict]:
    """One dict per run, newest first (list_runs' order)."""
    now = time.time()
    rows = []
    for r in runs.list_runs(runs_dir):
        cfg, status = r.config or {}, r.status
        metric, best, test = best_metric(status.get("summary") or {})
        tags = status.get("tags")
        rows.append({
            "run": r.run_id,
            "title": str(status.get("title") or cfg.get("name") or ""),
            "kind": str(cfg.get("kind", "?")),
            "model": r.model,
            "data": r.dataset,
            "state": str(r.state),
            "metric": metric or "",
            "best val": _number(best),
            "test": _number(test),
            "created": _when(status.get("created")),
            "duration s": _duration(status, now),
            "tags": ", ".join(str(t) for t in tags) if isinstance(tags, list) else "",
            # Why a run is damaged, failed or stale: a damaged one says which file and field.
            "note": str(status.get("error") or r.error or "")
            if r.state in ("damaged", "failed", "stale")
            else "",
            "path": r.path,
        })  # fmt: skip
    return rows


def set_title(run_dir: str | Path, title: str) -> str:
    """A display title for a run (its folder and id never change: groups refer to them)."""
    title = " ".join(title.split())
    if len(title) > MAX_TITLE:
        raise ConfigError(f"a title has at most {MAX_TITLE} characters, got {len(title)}")
    runs.write_status(run_dir, title=title)
    return title


def parse_tags(text: str) -> list[str]:
    """'baseline, lr-sweep  adam' -> ['baseline', 'lr-sweep', 'adam'] (commas or spaces)."""
    tags = [t for t in re.split(r"[,\s]+", text.strip()) if t]
    bad = [t for t in tags if not TAG.fullmatch(t)]
    if bad:
        raise ConfigError(
            f"tag {bad[0]!r}: use up to 32 letters, digits or _ . + - (no spaces or commas)"
        )
    return list(dict.fromkeys(tags))  # once each, in the order typed


def set_tags(run_dir: str | Path, text: str) -> list[str]:
    tags = parse_tags(text)
    runs.write_status(run_dir, tags=tags)
    return tags


def config_text(run_dir: str | Path) -> str:
    """The run's config as editable JSON (kind included)."""
    return runs.load_config(run_dir).to_json()


def config_from_text(text: str, check_paths=None) -> RunConfig:
    """A config from its JSON, e.g. a run's config as it is (re-run) or edited (clone), to
    start as any new run is (engine.execution.start). `check_paths(path)`: raises for a data
    path not allowed here (the dashboard confines typed paths to its data roots)."""
    cfg = RunConfig.from_json(text, source="the edited config")
    if check_paths is not None and cfg.data.path:
        cfg.data.path = str(check_paths(cfg.data.path))
    return cfg


def smooth(values: list[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased so the first points
    are not pulled towards zero. weight 0: unchanged; 0.99: very smooth. NaN and None pass
    through without disturbing the average."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    out, avg, n = [], 0.0, 0
    for v in values:
        if _number(v) is None:  # None, NaN, or not a number at all: a gap
            out.append(None if v is None or isinstance(v, (str, bool, list, dict)) else v)
            continue
        n += 1
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**n) if weight else v)
    return out


def metric_names(events: list[dict]) -> list[str]:
    """'name/split' of every scalar series in a run's events, e.g. 'acc/val', 'loss/train'."""
    return sorted({f"{e['name']}/{e.get('split', '')}" for e in events if "name" in e})


def curve(events: list[dict], metric: str, x_axis: str = "step", weight: float = 0.0):
    """(x, y) of `metric` ('name/split') against step, epoch or wall time (seconds since the
    run's first event), smoothed with `weight`."""
    if x_axis not in X_AXES:
        raise ValueError(f"x axis must be one of {', '.join(X_AXES)}, got {x_axis!r}")
    name, _, split = metric.partition("/")
    picked = [e for e in events if e.get("name") == name and e.get("split", "") == split]
    times = [t for t in (_number(e.get("time")) for e in events) if t is not None]
    start = min(times, default=0.0)
    x = [
        e.get("step") if x_axis == "step" else e.get("epoch") if x_axis == "epoch"
        else (_number(e.get("time")) or start) - start
        for e in picked
    ]  # fmt: skip
    return x, smooth([e.get("value") for e in picked], weight)
