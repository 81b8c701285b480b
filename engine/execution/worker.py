"""A warm training process: started ahead of time with torch and the engine imported, it
waits for one run to train. Starting a run through it saves the ~2 s that importing torch
and its optimiser machinery costs, which is most of the wait for the first live point.

The worker reads one line, `train RUN_DIR` or `resume RUN_DIR`, from its stdin, and runs it
through the executor as `python -m engine train|resume --run-dir RUN_DIR` would. If its
parent (the dashboard) goes away first, stdin closes and the idle worker exits; once it has
a run, it is that run's own process and outlives the dashboard like any other run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from engine.core.numba_cache import use_project_cache
from engine.core.settings import REPO_ROOT
from engine.store.layout import RunLayout

_lock = threading.Lock()
_idle: subprocess.Popen | None = None
_runs: list[subprocess.Popen] = []  # runs started from this process, warm or cold


def child_env() -> dict[str, str]:
    use_project_cache()  # numba's cache: this process's and its children's, one folder
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }


def _reap(proc: subprocess.Popen) -> None:
    # Wait for the child in a thread so that it never lingers as a zombie that looks alive.
    threading.Thread(target=proc.wait, daemon=True).start()


def prewarm() -> int | None:
    """Start an idle warm worker if there is none; returns its pid (None when skipped).

    Skipped while a run started from here is training: the worker's imports would take
    CPU from it. Off when WORKBENCH_PREWARM=0.
    """
    global _idle
    if os.environ.get("WORKBENCH_PREWARM", "1") == "0":
        return None
    with _lock:
        if _idle is not None and _idle.poll() is None:
            return _idle.pid
        _runs[:] = [p for p in _runs if p.poll() is None]
        if _runs:
            return None
        _idle = subprocess.Popen(
            [sys.executable, "-m", "engine", "worker"], cwd=REPO_ROOT, env=child_env(),
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        _reap(_idle)
        return _idle.pid


def take_warm(command: str, run_dir: Path) -> int | None:
    """Hand `command run_dir` to the idle warm worker; its pid, or None when there is none."""
    global _idle
    with _lock:
        proc, _idle = _idle, None
    if proc is None or proc.poll() is not None:
        return None
    try:
        proc.stdin.write(f"{command} {run_dir}\n".encode())
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        return None
    with _lock:
        _runs.append(proc)
    return proc.pid


def spawn_cold(command: str, run_dir: Path) -> int:
    """A fresh `python -m engine train|resume --run-dir RUN_DIR` process."""
    with open(RunLayout(run_dir).log, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine", command, "--run-dir", str(run_dir)],
            cwd=REPO_ROOT, env=child_env(), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    _reap(proc)
    with _lock:
        _runs.append(proc)
    return proc.pid


def serve() -> int:
    """The worker's side: import what training needs, then wait for one run."""
    import torch

    import engine.experiments.classify  # noqa: F401  the heavy imports, done while idle

    model = torch.nn.Linear(1, 1)  # the first optimiser pulls in torch._dynamo (~1 s)
    torch.optim.Adam(model.parameters()).step()

    line = sys.stdin.readline().split(maxsplit=1)
    if len(line) != 2 or line[0] not in ("train", "resume"):
        return 0  # the dashboard went away (EOF) before giving a run: nothing to do
    command, run_dir = line[0], Path(line[1].strip())
    # From here on this is the run's process: its output goes to the run's log.
    with open(RunLayout(run_dir).log, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    from engine.execution.executor import execute
    from engine.store.summary import summary_line

    try:  # what the command line does with `train|resume --run-dir RUN`, minus its printing
        summary = execute(run_dir, resume=command == "resume", launched=True)
    except (ValueError, OSError, RuntimeError) as e:  # status.json says it too
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(summary_line(summary))
    return 1 if summary.get("stopped_before_start") else 0
