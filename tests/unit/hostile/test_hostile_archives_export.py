"""Hostile and damaged files on the export path (engine.sharing.archive packing,
engine.sharing.export, `python -m engine export`): pipes and control characters in a run
folder, snapshots of the wrong shape or type, spreadsheet formulas, and exports aimed at a
run's own files. Each is refused with one line naming the file, and leaves every run as it
was. The import side: test_hostile_archives_import.py."""

import os
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine.cli.main import main
from engine.config import ConfigError
from engine.sharing import archive, export, projector_check
from engine.store import runs
from engine.store.layout import RunLayout
from tests.support.archives import checksums, make_run, patch_member, snapshot_arrays


# --- the zip side: packing a run folder ------------------------------------------------------------
def test_a_pipe_in_a_run_folder_is_left_out_of_its_zip(present, tmp_path):
    fifo = present / "artifacts" / "pipe"
    os.mkfifo(fifo)
    done = {}
    packing = threading.Thread(
        target=lambda: done.update(n=archive.pack_run(present, tmp_path / "r.zip")), daemon=True
    )
    packing.start()
    packing.join(20)
    if packing.is_alive():  # reading the pipe waits for a writer: let it end, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("pack_run waited on a named pipe in the run folder")
    names = zipfile.ZipFile(tmp_path / "r.zip").namelist()
    assert f"{present.name}/config.json" in names and not [n for n in names if "pipe" in n]


def test_a_control_character_in_a_run_file_name_stops_the_pack(present, tmp_path):
    (present / "artifacts" / "bad\nname.npy").write_bytes(b"x")
    with pytest.raises(runs.RunError, match=r"cannot pack '.*bad\\nname\.npy': a control char"):
        archive.pack_run(present, tmp_path / "r.zip")
    assert not (tmp_path / "r.zip").exists()


def test_a_run_folder_name_is_made_safe_in_its_zip(tmp_path):
    run = make_run(tmp_path, "my run")
    archive.pack_run(run, tmp_path / "r.zip")
    assert {n.split("/")[0] for n in zipfile.ZipFile(tmp_path / "r.zip").namelist()} == {"my_run"}
    assert archive.unpack_run(tmp_path / "r.zip", tmp_path / "other").name == "my_run"


# --- snapshots that are damaged or hostile ----------------------------------------------------------
def _not_a_zip(path: Path) -> None:
    path.write_bytes(b"PK\x03\x04 truncated")


def _bomb(path: Path) -> None:
    np.savez_compressed(
        path, **{**snapshot_arrays(), "features": np.zeros((2**16, 160), np.float32)}
    )


def _arrays(**arrays):
    return lambda path: np.savez_compressed(path, **{**snapshot_arrays(), **arrays})


def _encrypted(path: Path) -> None:
    np.savez_compressed(path, **snapshot_arrays())
    patch_member(path, "labels.npy", flags=0x1)


DAMAGED_SNAPSHOTS = {
    "not a zip": (_not_a_zip, r"not a readable embedding snapshot \(\.npz\)"),
    "bomb": (_bomb, r"member 'features\.npy': [\d,]+ bytes unpack to 41,943,168, over the "
                    r"limit of 200:1"),
    "encrypted": (_encrypted, r"member 'labels\.npy': not a readable embedding snapshot"),
    "wrong shape": (_arrays(labels=np.zeros(5, np.int64)), r"labels must have shape \(6,\)"),
    "float labels": (_arrays(labels=np.zeros(6)), r"labels must be whole numbers, not float64"),
    "text ids": (_arrays(sample_ids=np.array(["a\tb"] * 6)), r"sample_ids must be whole numbers"),
    "text features": (_arrays(features=np.full((6, 2), "=1")), r"features must be numbers"),
    "negative labels": (_arrays(labels=-np.ones(6, np.int64)),
                        r"labels must be class indices from 0 to 99,999, found -1 to -1"),
    "huge predictions": (_arrays(predictions=np.full(6, 2**62)),
                         r"predictions must be class indices .* found 4611686018427387904"),
}  # fmt: skip


@pytest.mark.parametrize("fmt", ["projector", "npz", "csv"])
@pytest.mark.parametrize("case", list(DAMAGED_SNAPSHOTS))
def test_a_damaged_snapshot_is_one_line_naming_the_file(case, fmt, runs_dir, tmp_path, capsys):
    damage, message = DAMAGED_SNAPSHOTS[case]
    run = make_run(runs_dir)
    path = RunLayout(run).embedding_file(1)
    damage(path)
    before = checksums(run)
    with pytest.raises(ConfigError, match=message) as refused:
        export.snapshot(run)
    assert str(path) in str(refused.value)
    out = tmp_path / "out"
    assert main(["--runs-dir", str(runs_dir), "export", run.name, "--format", fmt,
                 "--out", str(out)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}") and err.count("\n") == 1
    assert checksums(run) == before and not out.exists()


@pytest.mark.parametrize(
    "status", [{"summary": [1, 2]}, {"summary": "x"}, {"classes": "abc"}, {"classes": ["a"]}]
)
def test_class_names_survive_a_status_of_the_wrong_shape(status, runs_dir, monkeypatch):
    run = make_run(runs_dir)
    monkeypatch.setattr(export, "read_status", lambda run_dir: {"state": "finished", **status})
    assert export.class_names(run, snapshot_arrays()) == ["0", "1", "2"]


# --- text from the run in the files it exports --------------------------------------------------------
HOSTILE_CLASSES = ['=HYPERLINK("http://x","click")', "a\tb", "c\nd", "+1+1", "-2.5",
                   "@SUM(A1)", "\r=cmd", "e\u2028f"]  # fmt: skip


def test_class_names_cannot_break_metadata_tsv_or_run_as_formulas(runs_dir, tmp_path):
    n = len(HOSTILE_CLASSES)
    labels = np.arange(n)
    run = make_run(runs_dir, classes=HOSTILE_CLASSES, features=np.ones((n, 2), np.float32),
                   labels=labels, predictions=labels, sample_ids=labels)  # fmt: skip
    export.export_projector(run, tmp_path / "p", sprite=False)
    p = projector_check.read_projector(tmp_path / "p")  # row and column counts agree
    assert [r[1] for r in p.metadata] == [
        "'=HYPERLINK(\"http://x\",\"click\")", "a b", "c d", "'+1+1", "-2.5", "'@SUM(A1)",
        " =cmd", "e f",
    ]  # fmt: skip
    lines = (tmp_path / "p" / "metadata.tsv").read_bytes().split(b"\n")
    assert len(lines) == n + 2 and all(line.count(b"\t") == 3 for line in lines[:-1])

    export.export_csv(run, tmp_path / "e.csv")
    import csv

    with open(tmp_path / "e.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    assert [r[1] for r in rows] == [r[1] for r in p.metadata]  # the same defused names


@pytest.mark.parametrize(("cell", "formula"), [("\t=1", True), ("\r@x", True), ("\t5", False)])
def test_a_cell_starting_with_a_tab_or_return_is_defused(cell, formula):
    assert export._formula(cell) is formula


def test_a_run_name_with_control_characters_stays_one_protobuf_string(tmp_path):
    run = make_run(tmp_path, 'run "x"\x01\\y')
    export.export_projector(run, tmp_path / "p", sprite=False)
    p = projector_check.read_projector(tmp_path / "p")
    assert p.config["tensor_name"] == ['run "x"\x01\\y epoch 1']
    assert "\x01" not in (tmp_path / "p" / "projector_config.pbtxt").read_text()


@pytest.mark.parametrize("key", ["tensor_path", "metadata_path"])
def test_read_projector_does_not_follow_paths_out_of_its_folder(key, runs_dir, tmp_path):
    export.export_projector(make_run(runs_dir), tmp_path / "p", sprite=False)
    config = tmp_path / "p" / "projector_config.pbtxt"
    (tmp_path / "secret.tsv").write_text("1\t2\t3\n")
    name = "tensors.tsv" if key == "tensor_path" else "metadata.tsv"
    config.write_text(config.read_text().replace(f'"{name}"', '"../secret.tsv"'))
    with pytest.raises(ValueError, match=f"{key} '../secret.tsv' is outside"):
        projector_check.read_projector(tmp_path / "p")


# --- exports aimed at a run's own files ---------------------------------------------------------------
OWN_FILES = [("npz", "checkpoints/last.pt"), ("metrics", "config.json"),
             ("metrics", "metrics.jsonl"), ("csv", "status.json"), ("zip", "log.txt"),
             ("projector", "."), ("projector", "artifacts/embeddings"), ("csv", "artifacts"),
             ("npz", "new.npz")]  # fmt: skip


@pytest.mark.parametrize("force", [[], ["--force"]])
@pytest.mark.parametrize("fmt, target", OWN_FILES)
def test_an_export_never_writes_inside_a_run_folder(fmt, target, force, runs_dir, capsys):
    run = make_run(runs_dir)
    other = make_run(runs_dir, "20250101-000000-small_cnn-000000")
    before = checksums(runs_dir)
    for folder in (run, other):  # the run exported, and any other run in the runs folder
        out = folder / target
        argv = ["--runs-dir", str(runs_dir), "export", run.name, "--format", fmt, "--out", str(out)]
        assert main([*argv, *force]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: refused to write {out}") and err.count("\n") == 1
        assert f"inside the run folder {folder}" in err and f"under {folder / 'exports'}" in err
        assert checksums(runs_dir) == before


def test_a_link_into_a_run_is_resolved(runs_dir, tmp_path, capsys):
    run = make_run(runs_dir)
    before = checksums(run)
    link = tmp_path / "innocent.npz"
    link.symlink_to(RunLayout(run).last_checkpoint)
    (tmp_path / "folder").symlink_to(RunLayout(run).checkpoints)
    for out in (link, tmp_path / "folder" / "new.npz"):
        argv = ["--runs-dir", str(runs_dir), "export", run.name, "--format", "npz"]
        assert main([*argv, "--out", str(out), "--force"]) == 2
        err = capsys.readouterr().err
        assert f"refused to write {out} (which is {out.resolve()})" in err
    assert checksums(run) == before and link.is_symlink()


def test_an_existing_file_is_replaced_only_with_force(runs_dir, tmp_path, capsys):
    run = make_run(runs_dir)
    out = tmp_path / "mine.csv"
    out.write_text("keep me")
    argv = ["--runs-dir", str(runs_dir), "export", run.name, "--format", "csv", "--out", str(out)]
    assert main(argv) == 2
    assert capsys.readouterr().err == (f"error: refused to overwrite {out}: it exists (add "
                                       "--force to replace it)\n")  # fmt: skip
    assert out.read_text() == "keep me"
    assert main([*argv, "--force"]) == 0
    assert out.read_text().startswith("sample_id,label")


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_force_never_replaces_a_device_or_a_fifo(runs_dir, tmp_path, capsys, kind):
    run = make_run(runs_dir)
    if kind == "device":
        out = tmp_path / "null"
        out.symlink_to("/dev/null")  # as `--out /dev/null`, without touching the real one
    else:
        out = tmp_path / "pipe"
        os.mkfifo(out)
    argv = ["--runs-dir", str(runs_dir), "export", run.name, "--format", "csv", "--out", str(out)]
    assert main([*argv, "--force"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: refused to write {out}: it is ") and "--force" in err
    assert (
        out.is_symlink() and Path("/dev/null").is_char_device()
        if kind == "device"
        else (out.is_fifo())
    )


def test_a_projector_folder_that_is_not_empty_needs_force(runs_dir, tmp_path, capsys):
    run = make_run(runs_dir)
    out = tmp_path / "p"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    argv = ["--runs-dir", str(runs_dir), "export", run.name, "--no-sprite", "--out", str(out)]
    assert main(argv) == 2
    assert f"refused to write into {out}: the folder is not empty (add --force" in (
        capsys.readouterr().err
    )
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert main([*argv, "--force"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "tensors.tsv").is_file()
    (tmp_path / "f").write_text("a file")
    assert main([*argv[:-1], str(tmp_path / "f"), "--force"]) == 2
    assert "it is a file, and the projector writes a folder" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["projector", "npz", "csv", "metrics"])
def test_the_default_export_is_replaced_by_a_re_export(fmt, runs_dir, capsys):
    run = make_run(runs_dir)
    argv = ["--runs-dir", str(runs_dir), "export", run.name, "--format", fmt, "--no-sprite"][
        : None if fmt == "projector" else -1
    ]
    assert main(argv) == 0
    assert main(argv) == 0  # the same command again: our own output, replaced
    mine = run / "exports" / "mine.csv"
    mine.write_text("keep me")
    assert main(["--runs-dir", str(runs_dir), "export", run.name, "--format", "metrics",
                 "--out", str(mine)]) == 2  # fmt: skip
    assert mine.read_text() == "keep me"
    capsys.readouterr()


def test_the_default_zip_beside_us_is_not_ours_to_replace(runs_dir, tmp_path, monkeypatch, capsys):
    run = make_run(runs_dir)
    monkeypatch.chdir(tmp_path)
    argv = ["--runs-dir", str(runs_dir), "export", run.name, "--format", "zip"]
    assert main(argv) == 0
    assert main(argv) == 2
    assert "add --force" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0
