"""metrics.jsonl: one JSON object per event, appended whole so readers never see half a line."""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import time
from pathlib import Path
from typing import Any

from engine.core.atomic import WriteError
from engine.core.jsonfile import read_regular

MAX_READ_BYTES = 512 * 2**20  # at most this much per read: a sparse or planted file is not ours


class EventLog:
    """Appends events {"time", "name", "value", "split", "epoch", "step", ...} to a JSONL file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_APPEND + one os.write per line: concurrent readers see whole lines or nothing.
        # Without blocking, and only onto a regular file: a FIFO or a device planted in its
        # place (a run folder may come from a zip or a shared disk) is refused, not waited on.
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK
        try:
            self._fd = os.open(self.path, flags, 0o644)
        except OSError as e:
            raise WriteError(self.path, e) from e
        if not stat.S_ISREG(os.fstat(self._fd).st_mode):
            os.close(self._fd)
            self._fd = -1
            raise WriteError(self.path, OSError(errno.EINVAL, "not a regular file"))

    def emit(self, name: str, value: float, **fields: Any) -> None:
        value = float(value)
        event = {"time": round(time.time(), 3), "name": name, "value": value, **fields}
        if not math.isfinite(value):
            event["value"] = None  # JSON has no NaN; keep the line valid for every reader
            event["nonfinite"] = repr(value)
        line = (json.dumps(event) + "\n").encode()
        size = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            if os.write(self._fd, line) != len(line):  # a short write: the disk just filled
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as e:
            os.ftruncate(self._fd, size)  # no half line left for a reader to trip on
            raise WriteError(self.path, e) from e

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_events(path: str | Path, offset: int = 0) -> tuple[list[dict], int]:
    """Events from byte `offset` on, and the offset after the last complete line.

    A trailing line without its newline is being written right now: left for the next read.
    """
    path = Path(path)
    try:
        data = read_regular(path, MAX_READ_BYTES, offset)
    except OSError:  # missing, or a device or FIFO planted in its place: no events
        return [], offset
    end = data.rfind(b"\n") + 1
    events = []
    for line in data[:end].splitlines():
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, a 5000-digit number
            continue  # a damaged line costs that line only, never the whole history
        if _well_formed(event):
            events.append(event)
    return events, offset + end


def _well_formed(event: object) -> bool:
    """An event every reader can use as it is: a name, a number (or null for a non-finite
    one), and whole-number epoch and step where given. Anything else is skipped like a
    damaged line: a metrics file may come from a zip or a shared folder."""
    if not isinstance(event, dict) or not isinstance(event.get("name"), str):
        return False
    value = event.get("value", False)
    if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        return False
    for key in ("epoch", "step"):
        v = event.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or abs(v) > 10**12):
            return False
    t = event.get("time")
    if t is not None and (
        not isinstance(t, (int, float)) or isinstance(t, bool) or not 0 <= t <= 7.3e9
    ):
        return False
    split = event.get("split")
    return split is None or isinstance(split, str)


def drop_events_after(path: str | Path, global_step: int, epoch: int) -> int:
    """Forget what a run logged after the checkpoint it resumes from (a killed run replays
    those steps): keeps step events up to `global_step`, epoch events up to `epoch`, and
    no test results. Rewrites the file atomically; returns how many events were dropped."""
    from engine.core.atomic import write_bytes

    events, _ = read_events(path)
    kept = [
        e
        for e in events
        if e.get("split") != "test"
        and (e.get("step") or 0) <= global_step
        and (e.get("epoch") or 0) <= epoch + (1 if _is_step_event(e) else 0)
    ]
    if len(kept) != len(events):
        write_bytes(path, "".join(json.dumps(e) + "\n" for e in kept).encode())
    return len(events) - len(kept)


def _is_step_event(event: dict) -> bool:
    return event.get("name") == "loss" and event.get("split") == "train"
