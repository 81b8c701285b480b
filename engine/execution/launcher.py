"""Starting and stopping runs' processes: one process per training run, started cold or
handed to a warm worker, and stopped by SIGTERM only when the process is proven the run's."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

from engine.execution import worker
from engine.execution.executor import check_resume
from engine.store import runs
from engine.store.layout import RunLayout
from engine.store.liveness import HOST, pid_alive, process_start

ACTIVE = runs.ACTIVE


def launch(
    run_dir: str | Path, resume: bool = False, warm: bool = True, after: list[str] = ()
) -> int:
    """Start training `run_dir` in its own process; returns its pid. Closing the caller
    (a browser tab, the dashboard) does not end the run. With `warm`, an idle worker started
    by `engine.execution.worker.prewarm()` takes the run if there is one (it starts ~2 s sooner).
    With `after` (ids of runs in the same folder), the process waits, queued, until none of
    those runs is active: a group's runs train one after another."""
    run_dir = Path(run_dir).resolve()
    if runs.is_active(run_dir):
        raise runs.RunError(
            f"{run_dir.name} is already running (pid {runs.read_status(run_dir).get('pid')})"
        )
    if resume:  # said here, to whoever asked, not later in a log
        check_resume(run_dir)
    command = "resume" if resume else "train"
    runs.write_status(
        run_dir, state="queued", pid=None, pid_start=None, error=None, stop_requested=False,
        after=list(after),
    )  # fmt: skip
    try:
        pid = worker.take_warm(command, run_dir) if warm else None
        if pid is None:
            pid = worker.spawn_cold(command, run_dir)
    except OSError as e:
        runs.write_status(
            run_dir, state="failed", error=f"could not start the training process: {e}"
        )
        raise runs.RunError(
            f"could not start the training process for {run_dir.name}: {e}"
        ) from None
    # Only the pid: the child may already have written "running" (its heartbeat restates it).
    # This machine's, with no heartbeat yet: the run may have been written elsewhere before.
    runs.write_status(run_dir, pid=pid, pid_start=process_start(pid), host=HOST, heartbeat=None)
    return pid


def stop(run_dir: str | Path) -> bool:
    """Ask a live run to stop (SIGTERM): it saves last.pt and marks itself stopped. False when
    it is not running here; RunError when status.json names a process that cannot be shown
    to be the run's (a status file may come from a shared folder or a zip: never signal a
    process on its word alone)."""
    run_dir = Path(run_dir)
    status = runs.read_status(run_dir)
    if status.get("host", HOST) != HOST:  # its pid means nothing here: stop it there
        return False
    if status.get("state") not in ACTIVE or not status.get("pid"):
        return False
    pid = status["pid"]
    why = _not_ours_to_signal(pid, status.get("pid_start"), run_dir)
    if why:
        raise runs.RunError(f"not stopping {run_dir.name}: {RunLayout(run_dir).status} names {why}")
    if not pid_alive(pid, status["pid_start"]):
        return False
    runs.write_status(run_dir, stop_requested=True)
    os.kill(pid, signal.SIGTERM)
    return True


def _not_ours_to_signal(pid: int, start: int | None, run_dir: Path) -> str | None:
    """Why process `pid` (as read_status typed it: an int > 1) must not be signalled as the
    training process of `run_dir`, or None.

    A run's process has the run's own files open: a launched one writes its output to the
    run's log from its first instruction, one trained in a terminal holds the run's
    `.train.lock`. A command line proves nothing (any process may name "engine", and another
    live run's process names the engine too); the open files do."""
    if pid in (os.getpid(), os.getppid(), os.getpgrp()):
        return f"process {pid}, which is this program itself or its group"
    if start is None:
        return f"process {pid} without its start time, so it cannot be told from a recycled pid"
    live_start = process_start(pid)
    if live_start is not None and live_start != start:
        return (
            f"process {pid} started at {start}, but the live process {pid} started at {live_start}"
        )
    if _holds_run_files(pid, run_dir) is False:
        return f"process {pid}, which has neither this run's log nor its lock open"
    return None


def _holds_run_files(pid: int, run_dir: Path) -> bool | None:
    """Whether process `pid` has `run_dir`'s log or `.train.lock` open; None where this
    cannot be known (no /proc, or the process is gone: nothing is sent to it then)."""
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():
        return None
    files = set()
    layout = RunLayout(run_dir)
    for path in (layout.log, layout.root / ".train.lock"):
        try:
            st = os.lstat(path)
        except OSError:
            continue
        # Not through a link, and not a second name of another run's file.
        if st.st_nlink == 1 and stat.S_ISREG(st.st_mode):
            files.add((st.st_dev, st.st_ino))
    try:
        fds = os.listdir(proc / "fd")
    except OSError:
        return False  # another user's process (or it just ended): not provably the run's
    for fd in fds[:100_000]:
        try:
            st = os.stat(proc / "fd" / fd)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in files:
            return True
    return False
