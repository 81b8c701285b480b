"""The run store reading the liveness of a run's process: a real child process per test (the
rest of the store's tests are in tests/unit/test_runs.py)."""

import json
import subprocess
import sys

from engine.store import runs
from engine.store.layout import RunLayout


def test_read_status_reports_a_dead_running_process_as_failed(runs_dir, tiny_config):
    run_dir = runs.create_run(tiny_config(), runs_dir)
    # A live process whose command line names the engine, as a real run's does.
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()", "engine"], stdin=subprocess.PIPE
    )
    try:
        runs.write_status(run_dir, state="running", pid=proc.pid, error=None)  # as execute() does
        assert runs.read_status(run_dir)["state"] == "running"
    finally:
        proc.communicate(b"")  # let it end, and reap it
    status = runs.read_status(run_dir)
    assert status["state"] == "failed"
    assert "ended without saying why" in status["error"]
    # The file itself is left as the run wrote it.
    assert json.loads(RunLayout(run_dir).status.read_text())["state"] == "running"


def test_read_status_reports_a_launched_run_that_never_started_as_failed(runs_dir, tiny_config):
    run_dir = runs.create_run(tiny_config(), runs_dir)
    assert runs.read_status(run_dir)["state"] == "queued"  # not launched yet: no pid
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    runs.write_status(run_dir, state="queued", pid=proc.pid, error=None)  # as launch() does
    status = runs.read_status(run_dir)
    assert status["state"] == "failed" and status["error"]
