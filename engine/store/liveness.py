"""Is a run's training process alive?

Two witnesses. On the machine that trains, the pid (with the process's start time, so a
recycled pid is never taken for the run). Everywhere, a heartbeat: a thread in the training
process stamps status.json every few seconds, also while the main thread is busy in a long
evaluation or snapshot. A heartbeat that stops while the pid lives means a hung or suspended
process; a heartbeat that stops on another machine (a runs folder on a shared disk) is all a
reader there can know.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HEARTBEAT_SECONDS = 2.0
STALE_SECONDS = 60.0  # no heartbeat for this long: the run is reported stale
GONE_SECONDS = 600.0  # a run of another machine silent this long is taken as ended
HOST = socket.gethostname()


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (field 3 on), or None without /proc."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_start(pid: int) -> int | None:
    """Start time of a process (clock ticks since boot): with the pid, names one process."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else None


def _threads_alive(pid: int) -> bool:
    """Whether a process whose main thread has exited still has a thread that has not (say,
    one finishing an fsync after SIGKILL): until then it holds its files and locks."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    for task in tasks:
        try:
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            return True
    return False


def pid_alive(pid: int | None, start: int | None = None) -> bool:
    # Only a real pid > 1: `True` is 1 (init) to Python; 0 and negatives name process groups.
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
        return False
    if not process_exists(pid):  # a zombie counts only while a thread of it lives on
        return False
    fields = _proc_stat(pid)
    if fields is None or fields[0] == "Z":
        return True  # no /proc (macOS): trust the signal check; or a zombie's last threads
    if start is not None:  # a recycled pid belongs to another process
        return int(fields[19]) == start
    try:
        return b"engine" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


def process_exists(pid: int) -> bool:
    """Whether any live process has this pid (whatever it runs): a writer that may still be
    writing. A recycled pid keeps a dead writer's leftovers a while longer, which is harmless."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _proc_stat(pid)
    return fields is None or fields[0] != "Z" or _threads_alive(pid)


def judge(status: dict, now: float | None = None) -> tuple[str, str | None]:
    """("alive" | "dead" | "stale", why) for a status that says its run is running or launched.

    A run written by another machine (`host`) is judged by its heartbeat alone; a status
    without a heartbeat (written before heartbeats, or not started yet) by its pid alone."""
    now = time.time() if now is None else now
    beat = status.get("heartbeat")
    age = now - beat if isinstance(beat, (int, float)) else None
    host = status.get("host")
    elsewhere = bool(host) and host != HOST
    if not elsewhere and not pid_alive(status.get("pid"), status.get("pid_start")):
        return "dead", None
    if elsewhere and (age is None or age > GONE_SECONDS):
        # Another machine's run that has not beaten for this long (or never did, e.g. a
        # hostname that changed with a restarted container) is taken as ended: it can be
        # resumed or deleted instead of staying "active" for good.
        silent = "never beat" if age is None else f"has not beaten for {age:.0f} s"
        return "dead", f"its heartbeat from {host} {silent}: taken as ended"
    if age is not None and age > STALE_SECONDS and status.get("state") == "running":
        where = f"process {status.get('pid')} on {host or HOST}"
        cause = (
            "that machine may have stopped, or lost the shared folder"
            if elsewhere
            else "it may be hung or suspended; Stop asks it to save and end"
        )
        return "stale", f"no heartbeat for {age:.0f} s from {where}: {cause}"
    return "alive", None


class Heartbeat:
    """A daemon thread that calls `write(heartbeat=<time>, host=..., **latest)` every `every`
    seconds until the `with` block ends; `update(**fields)` sets what the next beat carries
    (cheap: no file is written per training step)."""

    def __init__(self, write: Callable[..., Any], every: float = HEARTBEAT_SECONDS) -> None:
        self._write = write
        self._every = every
        self._latest: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def update(self, **fields: Any) -> None:
        self._latest = {**self._latest, **fields}  # one assignment: the thread reads whole dicts

    def _run(self) -> None:
        while True:
            try:
                self._write(heartbeat=time.time(), host=HOST, **self._latest)
            except Exception:  # noqa: BLE001  e.g. a full disk: the training thread's own
                pass  # writes report it; a beat that failed must not end the heartbeat
            if self._stop.wait(self._every):
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
