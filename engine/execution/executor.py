"""Running a run in this process: the executor keeps status.json truthful (running, the
heartbeat, finished / stopped / failed), holds the run's training lock, checks a resume
before anything changes, and waits for a group's earlier runs when launched queued."""

from __future__ import annotations

import fcntl
import os
import signal
import threading
import time
import traceback
from pathlib import Path

from engine.config import ConfigError
from engine.core.atomic import sweep_temporaries, write_atomic
from engine.core.errors import CheckpointError
from engine.store.layout import RunLayout
from engine.store.liveness import Heartbeat, process_exists, process_start
from engine.store.runs import (
    RunError,
    is_active,
    load_config,
    read_metrics,
    read_status,
    write_status,
)


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
