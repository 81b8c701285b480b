"""Fixtures for the page tests: an isolated runs folder and one small finished run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.execution import executor
from engine.store import runs

APP = Path(__file__).resolve().parents[2] / "dashboard"


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


def page(name: str):
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(APP / "views" / f"{name}.py"), default_timeout=60)


def app():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(APP / "app.py"), default_timeout=60)


def train_group(root: Path, preset: str, base, **options):
    """A comparison group made from `preset` in `root` and trained to the end, in this process."""
    from engine.execution import comparisons

    group = comparisons.create_group(preset, base, root, **options)
    for run_dir in group.run_dirs(root):
        executor.execute(run_dir)
    return root, group


def _link_checkpoints(src: str, dst: str) -> None:
    # Checkpoints are hundreds of MB per template and pages only read them; the engine
    # replaces them by rename, never in place, so a hard link cannot leak a change back.
    if src.endswith(".pt"):
        try:
            os.link(src, dst)
            return
        except OSError:
            pass  # another file system: copy
    shutil.copy2(src, dst)


def private_copy(runs_dir: Path, template: Path) -> None:
    """Replace `runs_dir` by a copy of `template`, so a test may change or damage it
    (everything but the checkpoints, which are shared read-only)."""
    shutil.rmtree(runs_dir)
    shutil.copytree(template, runs_dir, copy_function=_link_checkpoints)
