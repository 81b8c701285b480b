"""`python -m engine export` as a user runs it: a subprocess in the repository root (the rest
of the export tests: tests/unit/sharing/)."""

import subprocess
import sys
from pathlib import Path

from tests.support.export import wrote

REPO = Path(__file__).resolve().parents[3]


def test_python_m_engine_has_the_export_command(run_dir, runs_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "engine", "--runs-dir", str(runs_dir), "export", run_dir.name,
         "--format", "metrics", "--out", str(tmp_path / "m.csv")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert wrote(result.stdout) == tmp_path / "m.csv"
    assert (tmp_path / "m.csv").read_text().startswith("time,name,split,epoch,step,value")
