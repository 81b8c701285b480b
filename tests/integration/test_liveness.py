"""A run's liveness (issue 11): the pid where the run trains, a heartbeat everywhere. A live
process whose heartbeat stopped is stale, not running forever; a run on another machine is
judged by its heartbeat alone; the heartbeat keeps beating while the training thread is busy."""

from __future__ import annotations

import threading
import time

from engine.execution import executor, launcher
from engine.store import liveness, runs
from engine.store.liveness import HOST, STALE_SECONDS, Heartbeat, judge


def _running(run_dir, proc=None, **fields):
    pid = proc.pid if proc else None
    start = liveness.process_start(pid) if pid else None
    return runs.write_status(run_dir, state="running", pid=pid, pid_start=start, **fields)


def test_a_live_process_with_a_recent_heartbeat_is_running(tiny_config, runs_dir, engine_process):
    run_dir = runs.create_run(tiny_config(), runs_dir)
    _running(run_dir, engine_process, heartbeat=time.time(), host=HOST)
    status = runs.read_status(run_dir)
    assert status["state"] == "running" and not status.get("error")


def test_a_live_process_whose_heartbeat_stopped_is_stale_and_still_active(
    tiny_config, runs_dir, run_process
):
    run_dir = runs.create_run(tiny_config(), runs_dir)
    engine_process = run_process(run_dir)
    _running(run_dir, engine_process, heartbeat=time.time() - 10 * STALE_SECONDS, host=HOST)
    status = runs.read_status(run_dir)
    assert status["state"] == "stale"
    assert f"no heartbeat for {10 * STALE_SECONDS:.0f} s" in status["error"]
    assert f"process {engine_process.pid} on {HOST}" in status["error"]
    # Stale is not dead: it may wake up, so it cannot be deleted or launched twice, and Stop
    # still reaches its process.
    assert runs.is_active(run_dir)
    assert launcher.stop(run_dir)
    engine_process.wait(timeout=30)  # SIGTERM ended the stand-in


def test_a_dead_process_is_failed_whatever_its_last_heartbeat(tiny_config, runs_dir):
    run_dir = runs.create_run(tiny_config(), runs_dir)
    _running(run_dir, heartbeat=time.time(), host=HOST)  # no pid: nothing alive
    assert runs.read_status(run_dir)["state"] == "failed"


def test_a_status_without_a_heartbeat_is_judged_by_its_pid(tiny_config, runs_dir, engine_process):
    run_dir = runs.create_run(tiny_config(), runs_dir)
    _running(run_dir, engine_process)  # as written before heartbeats existed
    assert runs.read_status(run_dir)["state"] == "running"


def test_a_run_on_another_machine_is_judged_by_its_heartbeat_alone(tiny_config, runs_dir):
    run_dir = runs.create_run(tiny_config(), runs_dir)
    # Its pid means nothing here (no such process on this machine): not taken as dead.
    runs.write_status(run_dir, state="running", pid=999_999_999, host="gpu-box-7",
                      heartbeat=time.time())  # fmt: skip
    assert runs.read_status(run_dir)["state"] == "running"
    assert not launcher.stop(run_dir)  # its process cannot be signalled from here
    runs.write_status(run_dir, heartbeat=time.time() - 2 * STALE_SECONDS)
    status = runs.read_status(run_dir)
    assert status["state"] == "stale" and "gpu-box-7" in status["error"]


def test_judge_reads_only_the_status_it_is_given():
    now = 1_000_000.0
    other = {"state": "running", "host": "elsewhere", "heartbeat": now - 5}
    assert judge(other, now=now) == ("alive", None)
    verdict, why = judge({**other, "heartbeat": now - STALE_SECONDS - 1}, now=now)
    assert verdict == "stale" and "elsewhere" in why


def test_the_heartbeat_beats_while_the_training_thread_is_blocked():
    beats: list[dict] = []
    three = threading.Event()

    def write(**fields):
        beats.append(fields)
        if len(beats) >= 3:
            three.set()

    heartbeat = Heartbeat(write, every=0.01)
    heartbeat.update(step=7, epoch=1)
    with heartbeat:
        # This thread does nothing but wait, as it would inside a long evaluation.
        assert three.wait(timeout=30), "the heartbeat did not beat on its own"
    assert not heartbeat._thread.is_alive()  # ended with the with block: no beat after it
    assert all(b["host"] == HOST and isinstance(b["heartbeat"], float) for b in beats)
    assert beats[-1]["step"] == 7 and beats[-1]["epoch"] == 1


def test_a_failing_write_does_not_stop_the_heartbeat():
    calls = []
    two = threading.Event()

    def write(**fields):
        calls.append(fields)
        if len(calls) >= 2:
            two.set()
        raise OSError(28, "No space left on device")

    with Heartbeat(write, every=0.01):
        assert two.wait(timeout=30)


def test_a_finished_run_keeps_its_final_state_and_records_its_host(tiny_config, runs_dir):
    run_dir = runs.create_run(tiny_config(epochs=1), runs_dir)
    executor.execute(run_dir)
    status = runs.read_status(run_dir)
    assert status["state"] == "finished"  # the heartbeat stopped before the final write
    assert status["host"] == HOST and status["heartbeat"] <= status["ended"]


def test_another_machines_run_silent_for_long_is_taken_as_ended(tiny_config, runs_dir):
    from engine.store.liveness import GONE_SECONDS

    run_dir = runs.create_run(tiny_config(), runs_dir)
    runs.write_status(run_dir, state="running", pid=4242, host="old-container-id",
                      heartbeat=time.time() - 2 * GONE_SECONDS)  # fmt: skip
    status = runs.read_status(run_dir)
    assert status["state"] == "failed" and "old-container-id" in status["error"]
    assert not runs.is_active(run_dir)  # it can be resumed or deleted
    runs.write_status(run_dir, heartbeat=None)  # never beat (a renamed host, say)
    assert runs.read_status(run_dir)["state"] == "failed"


def test_launch_claims_the_run_for_this_machine(tiny_config, runs_dir, monkeypatch):
    from engine.execution import worker

    run_dir = runs.create_run(tiny_config(), runs_dir)
    runs.write_status(run_dir, host="elsewhere", heartbeat=1.0)  # e.g. an imported run
    monkeypatch.setattr(worker, "spawn_cold", lambda command, d: 999_999_999)
    launcher.launch(run_dir, warm=False)
    status = runs._read_json(runs.RunLayout(run_dir).status)
    assert status["host"] == HOST and status["heartbeat"] is None
