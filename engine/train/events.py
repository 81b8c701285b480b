"""metrics.jsonl: one JSON object per event, appended whole so readers never see half a line."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any


class EventLog:
    """Appends events {"time", "name", "value", "split", "epoch", "step", ...} to a JSONL file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_APPEND + one os.write per line: concurrent readers see whole lines or nothing.
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def emit(self, name: str, value: float, **fields: Any) -> None:
        value = float(value)
        event = {"time": round(time.time(), 3), "name": name, "value": value, **fields}
        if not math.isfinite(value):
            event["value"] = None  # JSON has no NaN; keep the line valid for every reader
            event["nonfinite"] = repr(value)
        os.write(self._fd, (json.dumps(event) + "\n").encode())

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
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events = []
    for line in data[:end].splitlines():
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a damaged line costs that line only, never the whole history
    return events, offset + end
