"""The torch-free promise: what a waiting process (a queued run), the command line's bookkeeping
commands and the run store import must not pull in torch (~2 s and hundreds of MB). Checked
in a fresh interpreter per module, since this test process has torch loaded already. The
layering itself is checked by import-linter in `make lint` (pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys

import pytest

TORCH_FREE = [
    "engine.cli",
    "engine.cli.main",
    "engine.store",
    "engine.store.runs",
    "engine.store.groups",
    "engine.store.catalogue",
    "engine.store.events",
    "engine.execution.launcher",
    "engine.execution.executor",
    "engine.execution.comparisons",
    "engine.core.atomic",
    "engine.core.jsonfile",
    "engine.config",
]


@pytest.mark.parametrize("module", TORCH_FREE)
def test_module_imports_without_torch(module):
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"{module} imports torch: {out.stdout}"


def test_the_control_a_torch_module_is_seen():
    """The check above can fail: a module that needs torch is reported as such."""
    code = "import sys, engine.train.trainer; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr
