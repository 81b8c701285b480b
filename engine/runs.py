"""The run store (one folder per run) and the launcher (one process per training run).

The dashboard and the CLI only ever talk to runs through this module and the files it
names (engine.layout): a run can be watched, stopped and resumed from anywhere.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import signal
import stat
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.atomic import CAUSES, sweep_temporaries, write_atomic, write_json
from engine.config import ConfigError, RunConfig
from engine.devices import device_problem
from engine.errors import CheckpointError
from engine.jsonfile import JsonFileError, read_json, read_json_object
from engine.layout import REPO_ROOT, RunLayout
from engine.liveness import HOST, Heartbeat, judge, pid_alive, process_exists, process_start
from engine.status import clean_status, config_problem
from engine.train.events import read_events

ACTIVE = ("queued", "running", "stale")  # stale: alive as far as anyone can tell


class RunError(RuntimeError):
    pass


def default_runs_dir() -> Path:
    return Path(os.environ.get("WORKBENCH_RUNS_DIR", REPO_ROOT / "runs")).expanduser()


# --- the store ---------------------------------------------------------------------------
def create_run(cfg: RunConfig, runs_dir: str | Path | None = None) -> Path:
    """A new run folder with its config; the id is unique even for simultaneous calls."""
    cfg.validate()
    cfg.resolve_for_run()
    problem = device_problem(cfg.device)
    if problem:  # before the folder exists: a run that cannot start is not made
        raise ConfigError(f"{problem}; use device 'auto' (the best one here) or 'cpu'")
    if cfg.data.path:  # the run's process may start elsewhere: store where the data really is
        cfg.data.path = str(Path(cfg.data.path).expanduser().resolve())
    weights = getattr(cfg, "weights", None)
    if weights not in (None, "imagenet", "none"):  # a weight file: the same, for the same reason
        cfg.weights = str(Path(weights).expanduser().resolve())
    root = Path(runs_dir) if runs_dir else default_runs_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"cannot create the runs folder {root}: {_cause(e)}{RUNS_HINT}") from None
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for _ in range(100):
        run_dir = root / f"{stamp}-{cfg.model.name}-{secrets.token_hex(3)}"
        try:
            run_dir.mkdir()  # exclusive: two callers never get the same folder
            break
        except FileExistsError:
            continue
        except OSError as e:
            raise RunError(
                f"cannot create a run folder in {root}: {_cause(e)}{RUNS_HINT}"
            ) from None
    else:
        raise RunError(f"could not find a free run id in {root}")
    try:
        write_json(RunLayout(run_dir).config, cfg.to_dict())
        write_status(run_dir, state="queued", created=time.time())
    except OSError as e:  # never leave a folder that looks like a run but is not one
        shutil.rmtree(run_dir, ignore_errors=True)
        raise RunError(f"cannot create a run in {root}: {_cause(e)}{RUNS_HINT}") from None
    return run_dir


RUNS_HINT = " (choose another with WORKBENCH_RUNS_DIR or --runs-dir)"


def _cause(e: OSError) -> str:
    return CAUSES.get(e.errno, e.strerror or str(e))


def resolve_run(run: str | Path, runs_dir: str | Path | None = None) -> Path:
    """A run given as a path or as an id (or a unique prefix of one) in the runs folder. The
    text is taken literally: `*` or `[` are characters of a name, never a pattern."""
    p = Path(run)
    if (p / "config.json").exists():
        return p
    root = Path(runs_dir) if runs_dir else default_runs_dir()
    text = str(run)
    bare_name = bool(text) and len(p.parts) == 1 and not p.is_absolute() and text not in (".", "..")
    if bare_name and (root / text / "config.json").exists():
        return root / text
    matches = (
        [d for d in root.iterdir() if d.name.startswith(text) and (d / "config.json").exists()]
        if bare_name and root.is_dir()
        else []
    )
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        names = ", ".join(sorted(m.name for m in matches))
        raise RunError(f"{run!r} matches several runs: {names}")
    raise RunError(f"no run {run!r} (looked for a folder with config.json, and in {root})")


def load_config(run_dir: str | Path) -> RunConfig:
    return RunConfig.load(RunLayout(Path(run_dir)).config)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created if missing), held for the `with` block."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def write_status(run_dir: str | Path, **fields: Any) -> dict:
    """Merge `fields` into status.json (atomic replace) and return the new status.

    The dashboard and the run both write it; the lock keeps one from undoing the other."""
    layout = RunLayout(Path(run_dir))
    with _locked(layout.root / ".status.lock"):
        status = _read_raw_status(layout.root)[0]  # damaged fields are dropped, not kept
        status.update(fields, updated=time.time())
        write_json(layout.status, status)
    return status


def _read_json(path: Path) -> dict | None:
    """A JSON object from `path`; None when missing, unreadable, or not an object."""
    try:
        return read_json_object(path)
    except JsonFileError:
        return None


def _read_raw_status(run_dir: Path) -> tuple[dict, list[str], str | None]:
    """The valid fields of status.json, the problems of the others, and why the whole file
    could not be read (or None)."""
    path = RunLayout(run_dir).status
    try:
        raw = read_json(path)
    except JsonFileError as e:
        return {}, [], str(e)
    clean, problems = clean_status(raw, str(path))
    if not isinstance(raw, dict):
        return {}, [], problems[0]
    return clean, problems, None


def read_status(run_dir: str | Path) -> dict:
    """status.json as typed values (engine.status), with a run whose process has died
    reported as failed instead of running, and one whose heartbeat stopped as stale
    (engine.liveness). A status file that cannot be read, or whose fields are damaged, gives
    state "damaged" and an error that says why (a live run keeps its state: the problem is
    then under "damaged")."""
    run_dir = Path(run_dir)
    status, problems, unreadable = _read_raw_status(run_dir)
    if unreadable:
        return {"state": "damaged", "error": unreadable}
    path = RunLayout(run_dir).status
    damage = f"{path}: {'; '.join(problems)}" if problems else None
    if "state" not in status and not damage:
        damage = f"{path} has no state"
    status = _judged(status)
    if damage and not status_is_active(status):
        status.update(state="damaged", error=damage)
    elif damage:
        status["damaged"] = damage
    return status


def _judged(status: dict) -> dict:
    state, pid = status.get("state"), status.get("pid")
    # Queued runs get a pid once launched: a launched run that died before starting is failed too.
    if not (state == "running" or (state == "queued" and pid)):
        return status
    verdict, why = judge(status)
    if verdict == "stale":
        status.update(state="stale", error=why)
    elif verdict == "dead":
        if status.get("stop_requested"):  # stopped while starting, before it could save
            status["state"] = "stopped"
            return status
        status["state"] = "failed"
        if not status.get("error"):  # execute() writes error=None when it starts
            status["error"] = why or "the training process ended without saying why (killed?)"
    return status


@dataclass
class RunSummary:
    run_id: str
    path: Path
    status: dict
    config: dict | None
    error: str | None = None

    @property
    def state(self) -> str:
        return self.status.get("state", "damaged")

    @property
    def active(self) -> bool:
        return status_is_active(self.status)

    @property
    def model(self) -> str:
        return self._section_name("model")

    @property
    def dataset(self) -> str:
        return self._section_name("data")

    def _section_name(self, section: str) -> str:
        value = (self.config or {}).get(section)
        return str(value.get("name", "?")) if isinstance(value, dict) else "?"


def list_runs(runs_dir: str | Path | None = None) -> list[RunSummary]:
    """Every run folder, newest first; a damaged folder is listed with its problem, not hidden."""
    root = Path(runs_dir) if runs_dir else default_runs_dir()
    if not root.is_dir():
        return []
    runs = []
    for d in (p for p in root.iterdir() if p.is_dir()):
        layout = RunLayout(d)
        if not layout.config.exists():
            continue
        try:
            config = read_json(layout.config)
            why = config_problem(config)
        except JsonFileError as e:
            config, why = None, str(e)
        if why:
            config, error = None, why if str(layout.config) in why else f"{layout.config}: {why}"
        else:
            error = None
        status = read_status(d)
        if error and not status_is_active(status):
            status = {**status, "state": "damaged", "error": error}
        runs.append(RunSummary(d.name, d, status, config, error))
    # Ids share a one-second stamp and end in random hex: order by creation time, not by name.
    runs.sort(key=_created, reverse=True)
    return runs


def _created(run: RunSummary) -> tuple[float, str]:
    created = run.status.get("created")
    if not isinstance(created, (int, float)):  # status.json damaged: when config.json was written
        try:
            created = RunLayout(run.path).config.stat().st_mtime
        except OSError:  # deleted while we listed it
            created = 0.0
    return float(created), run.run_id


def read_metrics(run_dir: str | Path) -> list[dict]:
    return read_events(RunLayout(Path(run_dir)).metrics)[0]


# --- the launcher ------------------------------------------------------------------------
def status_is_active(status: dict) -> bool:
    """True while a process is training (or was started to train) the run of `status` (as
    read by `read_status`); a run that was created but never launched is queued with no pid,
    and not active."""
    return status.get("state") in ("running", "stale") or (
        status.get("state") == "queued" and bool(status.get("pid"))
    )


def is_active(run_dir: str | Path) -> bool:
    return status_is_active(read_status(run_dir))


def launch(
    run_dir: str | Path, resume: bool = False, warm: bool = True, after: list[str] = ()
) -> int:
    """Start training `run_dir` in its own process; returns its pid. Closing the caller
    (a browser tab, the dashboard) does not end the run. With `warm`, an idle worker started
    by `engine.worker.prewarm()` takes the run if there is one (it starts ~2 s sooner).
    With `after` (ids of runs in the same folder), the process waits, queued, until none of
    those runs is active: a group's runs train one after another."""
    from engine import worker

    run_dir = Path(run_dir).resolve()
    if is_active(run_dir):
        raise RunError(f"{run_dir.name} is already running (pid {read_status(run_dir).get('pid')})")
    if resume:  # said here, to whoever asked, not later in a log
        check_resume(run_dir)
    command = "resume" if resume else "train"
    write_status(
        run_dir, state="queued", pid=None, pid_start=None, error=None, stop_requested=False,
        after=list(after),
    )  # fmt: skip
    try:
        pid = worker.take_warm(command, run_dir) if warm else None
        if pid is None:
            pid = worker.spawn_cold(command, run_dir)
    except OSError as e:
        write_status(run_dir, state="failed", error=f"could not start the training process: {e}")
        raise RunError(f"could not start the training process for {run_dir.name}: {e}") from None
    # Only the pid: the child may already have written "running" (its heartbeat restates it).
    # This machine's, with no heartbeat yet: the run may have been written elsewhere before.
    write_status(run_dir, pid=pid, pid_start=process_start(pid), host=HOST, heartbeat=None)
    return pid


def stop(run_dir: str | Path) -> bool:
    """Ask a live run to stop (SIGTERM): it saves last.pt and marks itself stopped. False when
    it is not running here; RunError when status.json names a process that cannot be shown
    to be the run's (a status file may come from a shared folder or a zip: never signal a
    process on its word alone)."""
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    if status.get("host", HOST) != HOST:  # its pid means nothing here: stop it there
        return False
    if status.get("state") not in ACTIVE or not status.get("pid"):
        return False
    pid = status["pid"]
    why = _not_ours_to_signal(pid, status.get("pid_start"), run_dir)
    if why:
        raise RunError(f"not stopping {run_dir.name}: {RunLayout(run_dir).status} names {why}")
    if not pid_alive(pid, status["pid_start"]):
        return False
    write_status(run_dir, stop_requested=True)
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


def wait_for_turn(run_dir: Path, poll: float = 0.5) -> bool:
    """Block while a run named in this run's `after` list is active; False when this run was
    asked to stop meanwhile. Cheap: no torch is imported before a queued run's turn."""
    after = [run_dir.parent / a for a in read_status(run_dir).get("after") or []]
    while after:
        if read_status(run_dir).get("stop_requested"):
            return False
        if not any(is_active(d) for d in after if d.is_dir()):
            return True
        time.sleep(poll)
    return True


def delete_run(run_dir: str | Path) -> None:
    """Remove a run folder; refused while the run is active (stop it first)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise RunError(f"{run_dir} is not a run folder")
    if is_active(run_dir):
        raise RunError(f"{run_dir.name} is still active; stop it before removing it")
    shutil.rmtree(run_dir)


def execute(
    run_dir: str | Path,
    resume: bool = False,
    progress: bool = False,
    launched: bool = False,
    resume_from: str = "last.pt",
    restart: bool = False,
) -> dict:
    """Run the experiment of `run_dir` in this process, keeping status.json truthful.

    `resume` continues from checkpoint `resume_from`, refused (before status.json changes)
    when the checkpoint is damaged, or missing while the run has history to lose;
    `restart` trains it again from epoch 1, dropping that history.

    `launched`: this is the process `launch` started, which waits for its turn in a group's
    queue. Otherwise a person (or a test) runs it here and now: what a previous launch or stop
    left in status.json (the queue, a stop request) no longer applies."""
    run_dir = Path(run_dir)
    if launched:
        if not wait_for_turn(run_dir):
            write_status(run_dir, state="stopped", ended=time.time())
            return {"stopped_before_start": True}
    elif is_active(run_dir):
        raise RunError(
            f"{run_dir.name} is {read_status(run_dir).get('state')} in another process "
            f"(pid {read_status(run_dir).get('pid')}); stop it first"
        )
    # One process trains a run at a time; a second one leaves status.json to the first.
    lock = open(RunLayout(run_dir).root / ".train.lock", "a")  # noqa: SIM115  held until exit
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise RunError(f"{run_dir.name} is already being trained by another process") from None
    try:
        # A writer killed mid-write (kill -9, a power cut) left its temporary file behind.
        sweep_temporaries(run_dir, process_exists)
        if restart:
            resume, resume_from = True, ""  # the resume path, from no checkpoint
        elif resume:
            check_resume(run_dir, resume_from)
        # What a refused checkpoint restores for a person at a terminal (see _execute_locked).
        status_file = RunLayout(run_dir).status
        before = None if launched or not status_file.is_file() else status_file.read_bytes()
        if not launched:
            write_status(run_dir, after=[], stop_requested=False)
        return _execute_locked(run_dir, resume, progress, resume_from, before)
    finally:
        lock.close()


def check_resume(run_dir: str | Path, resume_from: str = "last.pt") -> None:
    """Refuse a resume that cannot go well, before anything of the run changes: a checkpoint
    that cannot be read or holds the wrong things (CheckpointError), or none at all for a
    run with history (an imported run exported without checkpoints), which would silently
    be trained again from epoch 1 over it."""
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    start = layout.checkpoints / resume_from
    if not start.exists():
        # A finished epoch is history; step losses of a first epoch killed before its
        # checkpoint are not (a resume trains that epoch again whatever it does).
        epochs_done = any(e.get("split") != "train" for e in read_metrics(run_dir))
        history = epochs_done or layout.embedding_epochs() or layout.mask_epochs()
        if resume_from == "last.pt" and not history:
            return  # killed before its first checkpoint: nothing to lose
        if resume_from != "last.pt":
            raise RunError(f"cannot resume from {start}: it does not exist")
        raise RunError(
            f"{run_dir.name} has no checkpoint to resume from ({start} does not exist); "
            "`python -m engine resume RUN --restart` trains it again from epoch 1, replacing "
            "its metrics and snapshots"
        )
    from engine.train.checkpoint import check_training_checkpoint, load_checkpoint

    check_training_checkpoint(load_checkpoint(start), start, load_config(run_dir).epochs)


def _execute_locked(
    run_dir: Path, resume: bool, progress: bool, resume_from: str, before: bytes | None
) -> dict:
    from engine.experiments import get_experiment

    try:
        cfg = load_config(run_dir)
    except ConfigError as e:  # say so in status.json, or a launched run would look queued forever
        write_status(run_dir, state="failed", error=str(e), ended=time.time())
        raise
    stop_requested = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop_requested.set())
    bar = None
    heartbeat = Heartbeat(lambda **fields: write_status(run_dir, **fields))

    def on_data(splits, total_steps: int) -> None:
        nonlocal bar
        write_status(
            run_dir, data=splits.describe(), total_steps=total_steps, classes=splits.classes
        )
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total_steps, desc=run_dir.name, unit="step", dynamic_ncols=True)

    def on_step(state) -> None:
        if bar is not None:
            bar.n = state.global_step
            bar.set_postfix(epoch=state.epoch + 1, refresh=False)
            bar.update(0)
        heartbeat.update(step=state.global_step, epoch=state.epoch)  # written by its next beat

    layout = RunLayout(run_dir)
    pid = os.getpid()
    write_status(
        run_dir, state="running", pid=pid, pid_start=process_start(pid), started=time.time(),
        error=None,
    )  # fmt: skip
    heartbeat.update(state="running")  # restated: launch() may write its pid after this
    try:
        with heartbeat:  # ends before the final state is written, so it cannot undo it
            summary = get_experiment(cfg.kind)(
                cfg, run_dir, resume=resume, should_stop=stop_requested.is_set,
                on_step=on_step, on_data=on_data,
                on_model=lambda info: write_status(run_dir, model_info=info),
                resume_from=resume_from,
            )  # fmt: skip
    except CheckpointError as e:
        # Refused while loading, before anything of the run changed: a person at a terminal
        # gets the message and the run as it was; a launched run says it where it is watched.
        if before is None:  # launched
            write_status(run_dir, state="failed", error=str(e), ended=time.time())
        else:
            write_atomic(layout.status, lambda f: f.write(before))
        raise
    except BaseException as e:
        state = "stopped" if isinstance(e, KeyboardInterrupt) else "failed"
        message = (
            str(e) if isinstance(e, (ConfigError, ValueError, RuntimeError, OSError)) else repr(e)
        )
        write_status(run_dir, state=state, error=message, ended=time.time())
        with open(layout.log, "a") as log:
            traceback.print_exc(file=log)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        if bar is not None:
            bar.close()
    final = "stopped" if stop_requested.is_set() and "test_acc" not in summary else "finished"
    write_status(run_dir, state=final, summary=summary, ended=time.time())
    return summary
