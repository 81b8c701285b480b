"""A damaged-run-folder kit for the hostile-runs tests (tests/unit/hostile and
tests/integration/hostile: their conftest.py imports the fixtures): hypothesis strategies of
any JSON and of process ids, a finished template run, a fresh folder per example holding the
run to damage and a healthy bystander, and a recorder of the signals `stop` would send."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import signal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from engine.cli.main import main
from engine.execution import executor
from engine.store import runs

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Any JSON value: what a damaged or crafted file may hold once parsed.
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
# Numbers that have hurt before: pid 1 (init) as `true`, process groups (0, -1), ourselves.
PIDS = st.one_of(
    st.booleans(),
    st.integers(min_value=-3, max_value=3),
    st.just(os.getpid()),
    st.just(os.getppid()),
    st.just(os.getpgrp()),
    st.integers(min_value=2, max_value=2**40),
    JSON,
)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A finished 2-epoch run (checkpoints, metrics, snapshots), trained once."""
    from engine.config import DataConfig, ModelConfig, RunConfig

    cfg = RunConfig(
        data=DataConfig(image_size=8), model=ModelConfig(name="small_cnn"), epochs=2,
        batch_size=128, snapshot_size=50, cpu_threads=1,
    )  # fmt: skip
    run_dir = runs.create_run(cfg, tmp_path_factory.mktemp("template"))
    executor.execute(run_dir)
    return run_dir


class Signals(list):
    """(pid, signal) of every signal sent, recorded instead of sent. Passed through: signal
    0 (a liveness probe that delivers nothing) and the SIGKILL a test ends its own child
    process with."""

    def __init__(self) -> None:
        super().__init__()
        self.children: set[int] = set()


@pytest.fixture
def signals(monkeypatch, engine_process):
    sent, real_kill = Signals(), os.kill
    sent.children.add(engine_process.pid)

    def record(pid, sig):
        if sig == 0 or (sig == signal.SIGKILL and pid in sent.children):
            return real_kill(pid, sig)
        sent.append((pid, sig))

    monkeypatch.setattr(os, "kill", record)
    return sent


class Folder:
    """A fresh runs folder per example: the run to damage and a healthy bystander."""

    def __init__(self, root: Path, template: Path) -> None:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        self.root = root
        self.run = root / "20260101-000000-small_cnn-aaaaaa"
        self.other = root / "20260101-000000-small_cnn-bbbbbb"
        shutil.copytree(template, self.run)
        shutil.copytree(template, self.other)
        self.before = digest(self.other)

    def cli(self, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(["--runs-dir", str(self.root), *args])
            except SystemExit as e:  # argparse
                rc = e.code
        return rc, out.getvalue(), err.getvalue()

    def assert_other_run_untouched(self) -> None:
        assert digest(self.other) == self.before


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def assert_clean_outcome(rc: int, err: str, names: tuple[str, ...]) -> None:
    """Worked (0; `stop` of a run that is not running: 1), or one `error:` line naming one
    of `names`. Never a traceback."""
    assert "Traceback" not in err, err
    assert rc in (0, 1, 2), (rc, err)
    if rc == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert any(n in lines[0] for n in names), err


@pytest.fixture
def folder(tmp_path, template):
    return lambda: Folder(tmp_path / "runs", template)


# --- status.json ----------------------------------------------------------------------------
