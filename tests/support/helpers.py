"""Test helpers: waiting for another process with a deadline, and reading a run's metrics."""

from __future__ import annotations

import time

import pytest

from engine.execution import launcher
from engine.store import runs
from engine.store.layout import RunLayout
from engine.train import read_events


def wait_for(condition, timeout: float, what: str):
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def wait_until_ended(run_dir, timeout: float = 120) -> dict:
    """Wait for a launched run to leave queued/running; on timeout, stop it and fail."""
    try:
        wait_for(lambda: runs.read_status(run_dir).get("state") not in runs.ACTIVE, timeout,
                 f"{run_dir} to end")  # fmt: skip
    except pytest.fail.Exception:
        launcher.stop(run_dir)
        raise
    return runs.read_status(run_dir)


def val_events(run_dir) -> list[tuple]:
    """(name, split, epoch, step, value) of every validation and test metric of a run."""
    return [
        (e["name"], e["split"], e["epoch"], e["step"], e["value"])
        for e in read_events(RunLayout(run_dir).metrics)[0]
        if e["split"] in ("val", "test")
    ]


def plotly_values(v):
    """A plotly array as numpy: plain, or in plotly's typed-array form {"dtype", "bdata"}."""
    import base64

    import numpy as np

    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
        shape = v.get("shape")
        return a.reshape([int(d) for d in str(shape).split(",")]) if shape else a
    return np.asarray(v)
