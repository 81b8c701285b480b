"""Run zips (engine.sharing.archive, `python -m engine export` / `import` through main()): zips
that round-trip and malicious zips refused with nothing left behind. `python -m engine export`
as a subprocess: tests/integration/sharing/test_export_command.py."""

import json
import os
import re
import stat
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine.cli.main import main
from engine.sharing import archive, export, projector_check
from engine.store import runs
from engine.store.layout import RunLayout
from tests.support.export import CLASSES, wrote


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` (hidden ones too) with its bytes (None for a folder)."""
    if not folder.exists():
        return {}
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


# --- a run as a zip -------------------------------------------------------------------------
def test_a_run_zip_round_trips(run_dir, tmp_path):
    (RunLayout(run_dir).embeddings / ".epoch_0003.npz.x1.tmp").write_bytes(b"half a file")
    assert (run_dir / ".status.lock").exists() and (run_dir / ".train.lock").exists()
    zip_path = tmp_path / "share.zip"
    count = archive.pack_run(run_dir, zip_path)
    names = zipfile.ZipFile(zip_path).namelist()
    assert count == len(names) and all(n.startswith(f"{run_dir.name}/") for n in names)
    assert f"{run_dir.name}/checkpoints/best.pt" in names
    assert not [n for n in names if n.endswith((".tmp", ".lock"))]

    elsewhere = tmp_path / "elsewhere"
    imported = archive.unpack_run(zip_path, elsewhere)
    assert imported == elsewhere / run_dir.name
    want, got = tree(run_dir), tree(imported)
    left_out = {k for k in want if re.search(r"(^|/)\.[^/]*\.tmp$|^\.(status|train)\.lock$", k)}
    assert left_out == {
        ".status.lock",
        ".train.lock",
        "artifacts/embeddings/.epoch_0003.npz.x1.tmp",
    }
    got.pop(".status.lock")  # the import writes status.json, under its lock
    status, want_status = json.loads(got.pop("status.json")), json.loads(want.pop("status.json"))
    assert got == {k: v for k, v in want.items() if k not in left_out}
    here = ("pid", "pid_start", "host", "heartbeat")  # the other machine's process: not ours
    assert {k: v for k, v in status.items() if k in want_status and k not in ("updated", *here)} \
        == {k: v for k, v in want_status.items() if k not in ("updated", *here)}  # fmt: skip
    assert all(status[k] is None for k in here)
    assert status["imported_from"] == str(zip_path.resolve()) and status["state"] == "finished"
    assert runs.load_config(imported).to_dict() == runs.load_config(run_dir).to_dict()
    (listed,) = runs.list_runs(elsewhere)
    assert (listed.run_id, listed.state) == (run_dir.name, "finished")
    assert sorted(p.name for p in elsewhere.iterdir()) == [run_dir.name]  # no staging left


def test_a_zip_without_checkpoints_still_imports(run_dir, tmp_path):
    archive.pack_run(run_dir, tmp_path / "light.zip", checkpoints=False)
    names = zipfile.ZipFile(tmp_path / "light.zip").namelist()
    assert f"{run_dir.name}/config.json" in names and f"{run_dir.name}/metrics.jsonl" in names
    assert not [n for n in names if "/checkpoints/" in n]
    imported = archive.unpack_run(tmp_path / "light.zip", tmp_path / "other")
    assert runs.load_config(imported).to_dict() == runs.load_config(run_dir).to_dict()
    assert not RunLayout(imported).checkpoints.exists()


def test_an_id_already_present_gets_a_suffix(run_dir, tmp_path):
    archive.pack_run(run_dir, tmp_path / "r.zip")
    first = archive.unpack_run(tmp_path / "r.zip", tmp_path / "other")
    before = tree(first)
    second = archive.unpack_run(tmp_path / "r.zip", tmp_path / "other")
    third = archive.unpack_run(tmp_path / "r.zip", tmp_path / "other")
    assert first.name == run_dir.name
    assert (second.name, third.name) == (f"{run_dir.name}-imported", f"{run_dir.name}-imported-2")
    assert tree(first) == before  # never overwritten
    assert len(runs.list_runs(tmp_path / "other")) == 3
    assert runs.resolve_run(run_dir.name, tmp_path / "other") == first
    assert runs.read_status(second)["imported_run_id"] == run_dir.name


def test_a_run_packed_while_running_is_imported_as_stopped(run_dir, tmp_path):
    runs.write_status(run_dir, state="running", pid=os.getpid(), host="another-machine")
    archive.pack_run(run_dir, tmp_path / "r.zip")
    imported = archive.unpack_run(tmp_path / "r.zip", tmp_path / "other")
    status = runs.read_status(imported)
    assert status["state"] == "stopped" and status["pid"] is None
    assert status["imported_from"] == str((tmp_path / "r.zip").resolve())
    assert "imported while running" in status["note"]
    assert not runs.is_active(imported)


CONFIG = json.dumps({"model": {"name": "small_cnn"}, "epochs": 1}).encode()
LINK, FIFO = stat.S_IFLNK | 0o777, stat.S_IFIFO | 0o644


def write_zip(path: Path, members, compression=zipfile.ZIP_DEFLATED) -> Path:
    """`members`: (name, bytes, Unix mode or None) written as they are, however wrong."""
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w", compression) as z:
        warnings.simplefilter("ignore")  # "Duplicate name": meant
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            info.external_attr = (mode if mode is not None else stat.S_IFREG | 0o644) << 16
            z.writestr(info, data)
    return path


def _corrupt(path: Path) -> None:
    """Flip a byte inside the stored data of run/big.bin: its CRC no longer matches."""
    data = bytearray(path.read_bytes())
    at = data.index(b"0123456789" * 10)
    data[at + 50] ^= 0xFF
    path.write_bytes(bytes(data))


MALICIOUS = {
    "absolute": ([("run/config.json", CONFIG, None), ("/tmp/evil.txt", b"x", None)],
                 r"'/tmp/evil.txt': an absolute path"),
    "dotdot": ([("run/config.json", CONFIG, None), ("run/../evil.txt", b"x", None)],
               r"'run/\.\./evil.txt': a '\.\.' in its path"),
    "symlink": ([("run/config.json", CONFIG, None), ("run/link", b"/etc/passwd", LINK)],
                r"'run/link': a symbolic link"),
    "fifo": ([("run/config.json", CONFIG, None), ("run/pipe", b"", FIFO)],
             r"'run/pipe': not a file or a folder"),
    "two folders": ([("run/config.json", CONFIG, None), ("other/config.json", CONFIG, None)],
                    r"'run': 2 top-level entries \(other, run\)"),
    "no config": ([("run/status.json", b"{}", None)], r"'run/config.json': no config.json"),
    "bad config": ([("run/config.json", b'{"optim": {"lr": -1}}', None)],
                   r"'run/config.json': invalid config: .*lr must be > 0"),
    "not json": ([("run/config.json", b"{not json", None)],
                 r"'run/config.json': invalid config: .*not valid JSON"),
    "bomb": ([("run/config.json", CONFIG, None), ("run/zeros.bin", bytes(50_000), None)],
             r"'run/zeros.bin': it unpacks to 50,\d+ bytes, over the limit of 10,000"),
    "same path twice": ([("run/config.json", CONFIG, None), ("run/a.txt", b"1", None),
                         ("run/a.txt", b"2", None)], r"'run/a.txt': the same path twice"),
    "damaged": ([("run/config.json", CONFIG, None),
                 ("run/big.bin", b"0123456789" * 10, None)], r"'run/big.bin': damaged"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(MALICIOUS))
def test_a_malicious_zip_is_refused_and_leaves_the_runs_folder_as_it_was(
    case, run_dir, runs_dir, tmp_path, monkeypatch
):
    members, message = MALICIOUS[case]
    if case == "bomb":
        monkeypatch.setattr(archive, "MAX_UNPACKED_BYTES", 10_000)
    stored = zipfile.ZIP_STORED if case == "damaged" else zipfile.ZIP_DEFLATED
    zip_path = write_zip(tmp_path / f"{case}.zip", members, stored)
    if case == "damaged":
        _corrupt(zip_path)
    before = tree(runs_dir)
    with pytest.raises(archive.ArchiveError, match=message) as refused:
        archive.unpack_run(zip_path, runs_dir)
    assert f"refused to import {zip_path}" in str(refused.value)
    assert tree(runs_dir) == before  # nothing half-extracted, no staging folder
    if case not in ("same path twice", "damaged"):  # refused before anything was created
        with pytest.raises(archive.ArchiveError):
            archive.unpack_run(zip_path, tmp_path / "new_runs")
        assert not (tmp_path / "new_runs").exists()


def test_a_file_that_is_not_a_zip_is_refused(runs_dir, tmp_path):
    (tmp_path / "run.zip").write_text("hello")
    with pytest.raises(archive.ArchiveError, match=r"run\.zip: not a readable zip file"):
        archive.unpack_run(tmp_path / "run.zip", runs_dir)
    assert not runs_dir.exists()


# --- the command line -----------------------------------------------------------------------
def test_cli_export_projector_says_where_and_how_to_open_it(run_dir, runs_dir, capsys):
    assert main(["--runs-dir", str(runs_dir), "export", run_dir.name]) == 0
    out = capsys.readouterr().out
    folder = wrote(out)
    assert folder == run_dir / "exports" / "projector_epoch_0002"
    assert len(projector_check.read_projector(folder).metadata) == 40
    assert f"tensorboard --logdir {folder}" in out and "projector.tensorflow.org" in out
    assert "sprite of 16 px thumbnails" in out

    mine = run_dir / "exports" / "mine"  # inside a run, only its exports/ may be written
    assert main(["--runs-dir", str(runs_dir), "export", run_dir.name, "--epoch", "1",
                 "--no-sprite", "--out", str(mine)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert wrote(out) == mine and "no sprite: not asked for" in out
    assert projector_check.read_projector(mine).sprite is None
    assert projector_check.read_projector(mine).config["tensor_name"][0].endswith("epoch 1")


@pytest.mark.parametrize("fmt, default", [("npz", "embeddings_epoch_0002.npz"),
                                          ("csv", "embeddings_epoch_0002.csv"),
                                          ("metrics", "metrics.csv")])  # fmt: skip
def test_cli_export_files_go_where_it_says(fmt, default, run_dir, runs_dir, capsys):
    assert main(["--runs-dir", str(runs_dir), "export", run_dir.name, "--format", fmt]) == 0
    path = wrote(capsys.readouterr().out)
    assert path == run_dir / "exports" / default and path.is_file()
    if fmt == "npz":
        with np.load(path, allow_pickle=False) as npz:
            assert npz["classes"].tolist() == CLASSES
    else:
        header = path.read_text().splitlines()[0]
        assert header.startswith("sample_id,label" if fmt == "csv" else "time,name,split")


def test_cli_zip_export_and_import(run_dir, runs_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--runs-dir", str(runs_dir), "export", run_dir.name, "--format", "zip",
                 "--no-checkpoints"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    zip_path = wrote(out)
    assert zip_path.resolve() == (tmp_path / f"{run_dir.name}.zip").resolve()
    assert "checkpoints left out" in out
    assert not [n for n in zipfile.ZipFile(zip_path).namelist() if "/checkpoints/" in n]

    other = tmp_path / "other"
    assert main(["--runs-dir", str(other), "import", str(zip_path)]) == 0
    assert f"-> {other / run_dir.name}" in capsys.readouterr().out
    assert main(["--runs-dir", str(other), "import", str(zip_path)]) == 0
    out = capsys.readouterr().out
    assert f"imported as {run_dir.name}-imported" in out
    assert main(["--runs-dir", str(other), "list"]) == 0
    assert capsys.readouterr().out.count(run_dir.name) == 2


def test_cli_errors_are_one_line(run_dir, runs_dir, tmp_path, capsys):
    argv = ["--runs-dir", str(runs_dir), "export", run_dir.name]
    assert main([*argv, "--format", "metrics", "--epoch", "1"]) == 2
    assert "--epoch does not apply to --format metrics" in capsys.readouterr().err
    assert main([*argv, "--epoch", "7"]) == 2
    assert "no snapshot at epoch 7; snapshots exist at epochs [1, 2]" in capsys.readouterr().err
    bad = write_zip(tmp_path / "bad.zip", [("run/../x", b"", None)])
    assert main(["--runs-dir", str(runs_dir), "import", str(bad)]) == 2
    assert f"error: refused to import {bad}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("cell", "formula"),
    [("=HYPERLINK(1)", True), ("@SUM(A1)", True), ("-cmd|' /C calc'!A0", True), ("+1+1", True),
     ("-0.5", False), ("cat", False), (3, False)],
)  # fmt: skip
def test_a_cell_a_spreadsheet_would_run_is_defused(cell, formula):
    assert export._formula(cell) is formula
