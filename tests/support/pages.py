"""Page helpers of the AppTest tests (tests/dashboard): open a page or the whole app, train a
comparison group in this process, and give a test its own copy of a template runs folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from engine.execution import executor

APP = Path(__file__).resolve().parents[2] / "dashboard"


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
