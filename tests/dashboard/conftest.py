"""Fixtures for the page tests: an isolated runs folder and one small finished run. The page
helpers (page, app, train_group, private_copy) are in tests/support/pages.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.execution import executor
from engine.store import runs


@pytest.fixture(scope="session")
def finished_run_template(tmp_path_factory) -> Path:
    """A real 3-epoch run on the digits, trained once per test session."""
    root = tmp_path_factory.mktemp("runs-template")
    cfg = RunConfig(name="fixture", epochs=3, snapshot_every=1, log_every=2)
    run_dir = runs.create_run(cfg, root)
    executor.execute(run_dir)
    return run_dir


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "runs"
    root.mkdir()
    monkeypatch.setenv("WORKBENCH_RUNS_DIR", str(root))
    return root


@pytest.fixture
def finished_run(runs_dir, finished_run_template) -> Path:
    """A private copy of the finished run, so a test may change or damage it."""
    dst = runs_dir / finished_run_template.name
    shutil.copytree(finished_run_template, dst)
    return dst
