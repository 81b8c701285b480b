"""Run folders and names that look like others (issue 19): run arguments that are patterns,
prefixes, temporary files left by dead writers, and exports aimed at a run's own files. The
damaged files of a run folder: tests/integration/hostile/test_hostile_runs_*.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

from engine.store import runs
from engine.store.layout import RunLayout


# --- leftovers and look-alikes -------------------------------------------------------------------
def test_run_arguments_are_literal_not_patterns(folder):
    f = folder()
    for pattern in ("*", "2026*", "[", "?0260101*"):
        rc, _, err = f.cli("show", pattern)
        assert rc == 2 and "no run" in err, (pattern, err)


def test_a_unique_prefix_still_names_a_run(folder):
    f = folder()
    rc, out, err = f.cli("show", f.run.name[:-2])  # -aaaa.. vs -bbbb..: unique
    assert rc == 0 and f.run.name in out, err


def test_the_training_process_sweeps_on_open(folder):
    f = folder()
    layout = RunLayout(f.run)
    dead = layout.artifacts / ".epoch_0001.npz.999999999-zzz999.tmp"
    dead.write_bytes(b"half")
    runs.write_status(f.run, state="stopped")
    rc, _, err = f.cli("resume", f.run.name)  # finished epochs: nothing left to train
    assert rc == 0, err
    assert not dead.exists()


def test_write_atomic_names_its_temporary_file_after_its_writer(tmp_path, monkeypatch):
    import tempfile

    from engine.core.atomic import write_bytes

    seen = []
    real = tempfile.mkstemp

    def spy(*a, **k):
        fd, name = real(*a, **k)
        seen.append(Path(name).name)
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", spy)
    write_bytes(tmp_path / "x.json", b"{}")
    assert seen and seen[0].startswith(f".x.json.{os.getpid()}-") and seen[0].endswith(".tmp")


def test_project_never_writes_over_a_run_s_own_files(folder):
    f = folder()
    config = RunLayout(f.run).config
    before = config.read_bytes()
    rc, _, err = f.cli("project", f.run.name, "--out", str(config))
    assert rc == 2 and "inside the run folder" in err
    assert config.read_bytes() == before
    out = f.root.parent / "pca.csv"
    out.write_text("mine")
    rc, _, err = f.cli("project", f.run.name, "--out", str(out))
    assert rc == 2 and "--force" in err and out.read_text() == "mine"
    rc, _, err = f.cli("project", f.run.name, "--out", str(out), "--force")
    assert rc == 0 and out.read_text().startswith("sample_id,label"), err


def test_list_says_why_a_run_is_damaged_and_lists_the_others(folder):
    f = folder()
    status = json.loads(RunLayout(f.run).status.read_text())
    RunLayout(f.run).status.write_text(json.dumps({**status, "pid": "abc", "created": 1e300}))
    rc, out, _ = f.cli("list")
    assert rc == 0 and f.other.name in out
    lines = out.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith(f.run.name))
    assert "damaged" in lines[row]
    assert "status.json" in lines[row + 1] and "pid 'abc' is not a process id" in lines[row + 1]
