"""The finished run the export tests share (tests/unit/sharing, tests/integration/sharing: their
conftest.py imports the fixtures), and how to read where an export says it wrote."""

import re
import shutil
from pathlib import Path

import pytest

from engine.execution import executor
from engine.store import runs

CLASSES = ["2", "3", "5", "7", "8"]  # relabelled 0..4: names and indices differ


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_config):
    """A real run, trained once for the module: five digit classes, snapshots at epochs 1, 2."""
    cfg = tiny_config(snapshot_size=40)
    cfg.data.classes = list(CLASSES)
    run_dir = runs.create_run(cfg.validate(), tmp_path_factory.mktemp("export_runs"))
    executor.execute(run_dir)
    return run_dir


@pytest.fixture
def run_dir(finished, runs_dir):
    """This test's own copy of the finished run, in `runs_dir`."""
    return Path(shutil.copytree(finished, runs_dir / finished.name))


def wrote(out: str) -> Path:
    """The path an export's output line says it wrote."""
    (path,) = re.findall(r"wrote (.+?)(?: \(|$)", out, re.MULTILINE)
    return Path(path)
