"""The warm worker: started ahead of time, it takes the next launched run."""

from __future__ import annotations

from engine.execution import launcher, worker
from engine.store import runs
from tests.support.helpers import wait_for, wait_until_ended


def test_a_prewarmed_worker_takes_the_next_run(runs_dir, tiny_config, monkeypatch):
    monkeypatch.setenv("WORKBENCH_PREWARM", "1")
    pid = worker.prewarm()
    assert pid is not None
    assert worker.prewarm() == pid  # one idle worker, not one per call
    run_dir = runs.create_run(tiny_config(epochs=2), runs_dir)
    assert launcher.launch(run_dir) == pid
    status = wait_until_ended(run_dir)
    assert status["state"] == "finished", status
    assert status["pid"] == pid
    assert "test acc" in runs.RunLayout(run_dir).log.read_text()  # its output went to the run's log
    # The next launch has no warm worker left: it starts a fresh process, and still finishes.
    other = runs.create_run(tiny_config(epochs=1), runs_dir)
    assert launcher.launch(other) != pid
    assert wait_until_ended(other)["state"] == "finished"


def test_no_prewarm_while_a_run_from_here_is_training(runs_dir, tiny_config, monkeypatch):
    monkeypatch.setenv("WORKBENCH_PREWARM", "1")
    run_dir = runs.create_run(tiny_config(epochs=30), runs_dir)
    launcher.launch(run_dir, warm=False)
    try:
        assert worker.prewarm() is None  # the worker's imports would slow the run down
    finally:
        launcher.stop(run_dir)
        wait_until_ended(run_dir)
    # Once its process has exited (a moment after it marks itself stopped), a worker starts.
    wait_for(lambda: worker.prewarm() is not None, 30, "a warm worker to start")
    # Close the idle worker's stdin: it exits without doing anything.
    idle = worker.take_warm("nothing", runs_dir)  # an unknown command is ignored
    assert idle is not None


def test_prewarm_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("WORKBENCH_PREWARM", "0")
    assert worker.prewarm() is None
