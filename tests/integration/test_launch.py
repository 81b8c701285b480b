"""Runs in their own process: launch, stop, resume, one trainer per run."""

import fcntl
import json
import signal

import pytest

from engine.execution import executor, launcher
from engine.store import liveness, runs
from engine.store.layout import RunLayout
from engine.train import load_checkpoint
from tests.support.helpers import val_events, wait_for

# --- the launcher: a run in its own process ---------------------------------------------------


def _state(run_dir):
    return runs.read_status(run_dir)["state"]


def test_launch_runs_to_the_end_in_a_subprocess(runs_dir, tiny_config):
    run_dir = runs.create_run(tiny_config(epochs=2), runs_dir)
    pid = launcher.launch(run_dir)
    assert pid > 0
    wait_for(lambda: _state(run_dir) not in runs.ACTIVE, 120, "the launched run to end")
    status = runs.read_status(run_dir)
    assert status["state"] == "finished", RunLayout(run_dir).log.read_text()
    assert status["pid"] == pid and status["summary"]["epochs_done"] == 2
    layout = RunLayout(run_dir)
    assert layout.last_checkpoint.exists() and layout.best_checkpoint.exists()
    assert layout.embedding_epochs() == [1, 2] and layout.confusion_epochs() == [1, 2]
    assert layout.log.exists()
    assert launcher.stop(run_dir) is False  # nothing left to stop


def test_stop_a_launched_run_then_resume_it_to_the_end(runs_dir, tiny_config):
    cfg = tiny_config(epochs=30, image_size=8, snapshot_every=10)
    run_dir = runs.create_run(cfg, runs_dir)
    launcher.launch(run_dir)
    wait_for(lambda: runs.read_status(run_dir).get("step", 0) > 0, 120, "the first heartbeat")
    assert launcher.stop(run_dir) is True
    wait_for(lambda: _state(run_dir) not in runs.ACTIVE, 60, "the run to stop")
    status = runs.read_status(run_dir)
    assert status["state"] == "stopped", RunLayout(run_dir).log.read_text()
    assert "test_acc" not in status["summary"]
    layout = RunLayout(run_dir)
    stopped_at = load_checkpoint(layout.last_checkpoint)["progress"]
    assert stopped_at["epoch"] < 30

    summary = executor.execute(run_dir, resume=True)
    assert summary["epochs_done"] == cfg.epochs == 30
    assert runs.read_status(run_dir)["state"] == "finished"
    val_epochs = [e[2] for e in val_events(run_dir) if e[:2] == ("acc", "val")]
    assert val_epochs == list(range(1, 31))  # each epoch evaluated exactly once
    assert layout.embedding_epochs() == [1, 10, 20, 30]


def test_a_launched_run_that_dies_before_starting_is_reported_failed(runs_dir, tiny_config):
    run_dir = runs.create_run(tiny_config(), runs_dir)
    RunLayout(run_dir).config.write_text("{ damaged")
    launcher.launch(run_dir)
    wait_for(lambda: _state(run_dir) not in runs.ACTIVE, 60, "the run to give up")
    status = runs.read_status(run_dir)
    assert status["state"] == "failed"
    assert "config.json" in status["error"]


# --- one trainer per run; stop ------------------------------------------------------------------


def _running_as(run_dir, proc, state="running"):
    runs.write_status(
        run_dir, state=state, pid=proc.pid, pid_start=liveness.process_start(proc.pid), error=None
    )


@pytest.mark.parametrize("state", ["running", "queued"])
def test_launch_refuses_a_run_that_a_live_process_is_training(
    runs_dir, tiny_config, engine_process, state
):
    run_dir = runs.create_run(tiny_config(), runs_dir)
    _running_as(run_dir, engine_process, state)
    before = RunLayout(run_dir).status.read_bytes()
    for resume in (False, True):
        with pytest.raises(runs.RunError, match=rf"already running \(pid {engine_process.pid}\)"):
            launcher.launch(run_dir, resume=resume)
    assert RunLayout(run_dir).status.read_bytes() == before
    assert not RunLayout(run_dir).log.exists()  # no second training process was started


def test_execute_refuses_a_run_whose_train_lock_is_held(runs_dir, tiny_config):
    run_dir = runs.create_run(tiny_config(epochs=1, image_size=8), runs_dir)
    layout = RunLayout(run_dir)
    before = layout.status.read_bytes()
    with open(run_dir / ".train.lock", "a") as held:  # as the run's own process holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for resume in (False, True):
            with pytest.raises(runs.RunError, match="already being trained by another process"):
                executor.execute(run_dir, resume=resume)
        assert layout.status.read_bytes() == before
        assert not layout.metrics.exists() and not layout.checkpoints.exists()
    # Released: the refused attempts did not leave the lock taken.
    assert executor.execute(run_dir)["epochs_done"] == 1


def test_a_stopped_process_reads_as_stopped_and_a_dead_one_as_failed(
    runs_dir, tiny_config, run_process
):
    run_dir = runs.create_run(tiny_config(), runs_dir)
    engine_process = run_process(run_dir)
    _running_as(run_dir, engine_process)
    assert launcher.stop(run_dir) is True
    assert json.loads(RunLayout(run_dir).status.read_text())["stop_requested"] is True
    # This stand-in dies of the SIGTERM without saving: as a run stopped while starting up.
    assert engine_process.wait(timeout=30) == -signal.SIGTERM
    status = runs.read_status(run_dir)
    assert status["state"] == "stopped" and not status.get("error")
    assert launcher.stop(run_dir) is False
    runs.write_status(run_dir, state="queued")  # launched, not yet started, then stopped
    assert runs.read_status(run_dir)["state"] == "stopped"
    # The same death without a stop request is a failure.
    runs.write_status(run_dir, state="running", stop_requested=False)
    status = runs.read_status(run_dir)
    assert status["state"] == "failed" and "ended without saying why" in status["error"]
