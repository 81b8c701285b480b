"""status.json and config.json read back as typed values: a run folder is untrusted input.

A status file arrives from a shared runs folder or a zip, and anything may be in it: a pid
that is `true` or `-1`, a creation time of 1e300, a summary whose accuracy is a list. Every
field the engine or the dashboard uses is checked here against one table; a field of the
wrong type or out of range is dropped and named, and the run is reported as damaged with
the reason, instead of a traceback in `list`, a page that will not draw, or a signal sent
to a process that is not ours. No torch: the dashboard's run lists and the waiting process
of a queued run read these.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

STATES = ("queued", "running", "finished", "failed", "stopped")
# Timestamps: seconds since 1970, before the year 2200 (1e300 would overflow a date).
LATEST_TIME = 7.3e9
MAX_TEXT = 20_000  # characters of an error message, a note, a data description
MAX_COUNT = 10**12  # steps, epochs, images: far beyond any run, far below an overflow
_RUN_ID = re.compile(r"[A-Za-z0-9._-]{1,200}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _text(v: Any) -> str | None:
    if not isinstance(v, str):
        return "is not text"
    return None if len(v) <= MAX_TEXT else f"is {len(v)} characters long"


def _time(v: Any) -> str | None:
    if not _is_number(v) or not math.isfinite(v):
        return "is not a time"
    return None if 0 <= v <= LATEST_TIME else f"{v!r} is not a plausible time"


def _count(v: Any) -> str | None:
    if not _is_int(v):
        return "is not a whole number"
    return None if 0 <= v <= MAX_COUNT else f"{v} is out of range"


def _pid(v: Any) -> str | None:
    # bool is an int to Python: `true` would be pid 1 (init); 0 and -1 signal process groups.
    if not _is_int(v):
        return f"{v!r} is not a process id"
    return None if 1 < v < 2**31 else f"{v} is not a process id"


def _flag(v: Any) -> str | None:
    return None if isinstance(v, bool) else "is not true or false"


def _state(v: Any) -> str | None:
    return None if v in STATES else f"{v!r} is not one of {', '.join(STATES)}"


def _text_list(v: Any) -> str | None:
    if not isinstance(v, list) or not all(isinstance(t, str) for t in v):
        return "is not a list of texts"
    return None if len(v) <= 100_000 else f"has {len(v)} entries"


def _run_ids(v: Any) -> str | None:
    if not isinstance(v, list) or not all(isinstance(t, str) and _RUN_ID.fullmatch(t) for t in v):
        return "is not a list of run ids"
    return None


def _object(v: Any) -> str | None:
    return None if isinstance(v, dict) else "is not an object"


def _summary(v: Any) -> str | None:
    if not isinstance(v, dict):
        return "is not an object"
    for key, value in v.items():
        why = summary_value_problem(key, value)
        if why:
            return f"{key} {why}"
    return None


# Optional fields: a missing field is fine; a present one must pass its check or it is dropped.
FIELDS: dict[str, Callable[[Any], str | None]] = {
    "state": _state,
    "pid": lambda v: None if v is None else _pid(v),
    "pid_start": lambda v: None if v is None else _count(v),
    "host": lambda v: None if v is None else _text(v),
    "heartbeat": lambda v: None if v is None else _time(v),
    "created": _time,
    "started": _time,
    "ended": _time,
    "updated": _time,
    "error": lambda v: None if v is None else _text(v),
    "note": _text,
    "title": _text,
    "data": _text,
    "imported_from": _text,
    "imported_run_id": _text,
    "stop_requested": _flag,
    "after": _run_ids,
    "tags": _text_list,
    "classes": _text_list,
    "total_steps": _count,
    "step": _count,
    "epoch": _count,
    "model_info": _object,
    "summary": _summary,
}

# Summary entries that pages and `list` format as numbers. Others (the classes, a confusion
# matrix, a few-shot result per shot) are checked where they are used.
_NON_NUMERIC = {"test_confusion", "test_per_class", "test_csv", "backbone_file"}
_SHOTS = re.compile(r"test_\d+shot")


def summary_value_problem(key: Any, value: Any) -> str | None:
    """Why summary[key] = value is damaged, or None."""
    if not isinstance(key, str):
        return "is not a text key"
    if key in ("classes", "train_counts"):
        ok = isinstance(value, list) and all(
            (isinstance(v, str) if key == "classes" else _is_int(v)) for v in value
        )
        return None if ok else "is not a list of " + ("texts" if key == "classes" else "counts")
    if key == "epochs_done":
        return _count(value)
    if key in _OBJECTS:
        return _object_problem(value, *_OBJECTS[key])
    if _SHOTS.fullmatch(key) or key == "test_csv":
        if not isinstance(value, dict):
            return "is not an object"
        bad = [k for k in ("acc", "ci95") if k in value and not _finite_or_none(value[k])]
        return f"has a non-numeric {bad[0]}" if bad else None
    if key.startswith(("test_", "best_val_")) and key not in _NON_NUMERIC:
        return None if _finite_or_none(value) else f"is {_short(value)}, not a number"
    return None


# Summary entries that are objects: (may it be null, its numeric fields, its [low, high] fields).
_OBJECTS = {
    "test_interval": (True, ("low", "high"), ()),
    "test_knn_vs_random_init": (False, ("p", "difference"), ("ci95", "random_init_ci95")),
}


def _object_problem(value: Any, nullable: bool, numbers: tuple, pairs: tuple) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, dict):
        return "is not an object"
    for k in numbers:
        if not (_is_number(value.get(k)) and math.isfinite(value[k])):
            return f"has a non-numeric {k}"
    for k in pairs:
        v = value.get(k)
        if not (isinstance(v, list) and len(v) == 2 and all(_finite_or_none(x) for x in v)):
            return f"has a {k} that is not [low, high]"
    return None


def _finite_or_none(v: Any) -> bool:
    return v is None or (_is_number(v) and (isinstance(v, int) or not math.isinf(v)))


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def clean_status(raw: Any, source: str) -> tuple[dict[str, Any], list[str]]:
    """The fields of status `raw` that pass their checks, and a sentence per field that did
    not (those are left out). Unknown fields are kept: they are nobody's business here."""
    if not isinstance(raw, dict):
        return {}, [f"{source} holds {type(raw).__name__}, not an object"]
    clean, problems = {}, []
    for key, value in raw.items():
        check = FIELDS.get(key)
        why = check(value) if check else None
        if why:
            problems.append(f"{key} {why}")
        else:
            clean[key] = value
    return clean, problems


def config_problem(config: Any) -> str | None:
    """A quick, torch-free look at config.json for run lists: why it cannot be the config of
    a run, or None. (Loading the run validates it fully.)"""
    from engine.config import CONFIG_KINDS

    if not isinstance(config, dict):
        return f"holds {type(config).__name__}, not an object"
    kind = config.get("kind", "classify")
    if not isinstance(kind, str) or kind not in CONFIG_KINDS:
        return f"kind {_short(kind)} is not one of {', '.join(CONFIG_KINDS)}"
    for section in ("data", "model", "optim"):
        value = config.get(section)
        if value is not None and not (
            isinstance(value, dict) and isinstance(value.get("name"), str)
        ):
            return f"{section} is not an object with a name"
    return None
