"""Hostile and damaged files on the sharing path (engine.sharing.archive, engine.sharing.export, `python -m
engine export` / `import`): decompression bombs, unsupported or encrypted members, damaged
JSON, control characters in names, snapshots of the wrong shape or type, spreadsheet formulas,
and exports aimed at a run's own files. Each is refused with one line naming the file (and
member), and leaves every run as it was."""

import hashlib
import json
import os
import stat
import struct
import threading
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine.cli.main import main
from engine.config import ConfigError
from engine.sharing import archive, export, projector_check
from engine.store import runs
from engine.store.layout import RunLayout

RUN_ID = "20260101-120000-small_cnn-abc123"
CONFIG = json.dumps({"model": {"name": "small_cnn"}, "epochs": 1}).encode()
STATUS = json.dumps({"state": "finished", "created": 1.0}).encode()
EVENT = {"time": 1.0, "name": "loss/train", "value": 0.5, "split": "train", "epoch": 1, "step": 1}


def snapshot_arrays(n: int = 6, d: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "features": rng.normal(size=(n, d)).astype(np.float32),
        "labels": np.arange(n) % 3,
        "sample_ids": np.arange(100, 100 + n),
        "predictions": (np.arange(n) + 1) % 3,
    }


def make_run(runs_dir: Path, run_id: str = RUN_ID, classes=("a", "b", "c"), **arrays) -> Path:
    """A run folder as training leaves it, without training: config, status, metrics, a
    checkpoint and one embedding snapshot (epoch 1) of `arrays` over the defaults."""
    run = runs_dir / run_id
    layout = RunLayout(run)
    layout.checkpoints.mkdir(parents=True)
    layout.embeddings.mkdir(parents=True)
    layout.config.write_bytes(CONFIG)
    status = {"state": "finished", "created": 1.0, "classes": list(classes)}
    layout.status.write_text(json.dumps(status))
    layout.metrics.write_text(json.dumps(EVENT) + "\n")
    layout.last_checkpoint.write_bytes(b"weights")
    np.savez_compressed(layout.embedding_file(1), **{**snapshot_arrays(), **arrays})
    return run


def checksums(folder: Path) -> dict[str, str | None]:
    """Every path under `folder` (hidden ones too) with its sha256 (None for a folder)."""
    if not folder.exists():
        return {}
    return {
        p.relative_to(folder).as_posix(): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
        )
        for p in sorted(folder.rglob("*"))
    }


def write_zip(path: Path, members, compression=zipfile.ZIP_DEFLATED) -> Path:
    """`members`: (name, bytes) written as they are, however wrong."""
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w", compression) as z:
        warnings.simplefilter("ignore")  # "Duplicate name": meant
        for name, data in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            z.writestr(info, data)
    return path


def patch_member(path: Path, member: str, method: int | None = None, flags: int = 0) -> None:
    """Rewrite `member`'s compression method and OR `flags` into its general-purpose flags,
    in both its local and its central directory header, as a hostile zip would have them."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    for signature, flag_at, method_at, name_at in (
        (b"PK\x03\x04", 6, 8, 30),  # local file header
        (b"PK\x01\x02", 8, 10, 46),  # central directory header
    ):
        at = 0
        while (at := data.find(signature, at)) >= 0:
            if data[at + name_at : at + name_at + len(name)] == name:
                old_flags, old_method = struct.unpack_from("<HH", data, at + flag_at)
                struct.pack_into("<H", data, at + flag_at, old_flags | flags)
                struct.pack_into(
                    "<H", data, at + method_at, old_method if method is None else method
                )
            at += 4
    path.write_bytes(bytes(data))


def refused_import(zip_path: Path, runs_dir: Path, match: str) -> archive.ArchiveError:
    """Import `zip_path` into `runs_dir` (which holds a run), expect the refusal, and check
    that it is one line naming the zip and that nothing in the runs folder changed."""
    before = checksums(runs_dir)
    with pytest.raises(archive.ArchiveError, match=match) as refused:
        archive.unpack_run(zip_path, runs_dir)
    message = str(refused.value)
    assert message.startswith(f"refused to import {zip_path}") and "\n" not in message
    assert checksums(runs_dir) == before  # nothing half-extracted, no staging folder left
    return refused.value


@pytest.fixture
def present(runs_dir) -> Path:
    """A run already in the runs folder, which no import may touch."""
    return make_run(runs_dir, "20250101-000000-small_cnn-000000")


# --- decompression bombs ---------------------------------------------------------------------
ZEROS = bytes(40 * 2**20)  # over RATIO_FREE_BYTES; deflates to about 40 KB: over 1000:1


def test_a_member_that_unpacks_over_the_ratio_is_refused_before_anything_is_written(
    present, runs_dir, tmp_path
):
    bomb = write_zip(tmp_path / "bomb.zip", [("run/config.json", CONFIG), ("run/zeros.bin", ZEROS)])
    assert bomb.stat().st_size < 100_000
    refused_import(bomb, runs_dir, r"member 'run/zeros\.bin': [\d,]+ bytes unpack to 41,943,040, "
                   r"over the limit of 200:1")  # fmt: skip
    with pytest.raises(archive.ArchiveError):
        archive.unpack_run(bomb, tmp_path / "new_runs")
    assert not (tmp_path / "new_runs").exists()  # refused from the central directory alone


def test_many_small_members_over_the_ratio_are_refused_as_a_whole(present, runs_dir, tmp_path):
    small = bytes(archive.RATIO_FREE_BYTES - 1)  # each under the per-member threshold
    members = [("run/config.json", CONFIG)] + [(f"run/z{i}.bin", small) for i in range(2)]
    bomb = write_zip(tmp_path / "many.zip", members)
    refused_import(bomb, runs_dir, r"many\.zip: its [\d,]+ bytes unpack to [\d,]+, over the "
                   r"limit of 200:1")  # fmt: skip


@pytest.mark.parametrize(
    "members, message",
    [([("run/zeros.bin", ZEROS), ("run/config.json", CONFIG)],
      r"member 'run/zeros\.bin': [\d,]+ bytes unpack to more than 33,554,432, over the limit "
      r"of 200:1"),
     ([("run/config.json", CONFIG), ("run/a.bin", ZEROS[: 20 * 2**20]),
       ("run/b.bin", ZEROS[: 20 * 2**20])],
      r"member 'run/b\.bin': it unpacks to more than 33,554,432 bytes, over 200 times its own "
      r"[\d,]+ \(a decompression bomb\?\)")],
)  # fmt: skip
def test_the_ratio_is_held_on_the_bytes_written_too(
    members, message, present, runs_dir, tmp_path, monkeypatch
):
    """The central directory's sizes may lie: with the up-front check fooled, extraction
    itself stops a member, or the whole zip, once it passes the ratio, and removes what it
    wrote."""
    monkeypatch.setattr(archive, "unpack_ratio_problem", lambda infos, packed: None)
    refused_import(write_zip(tmp_path / "bomb.zip", members), runs_dir, message)


def test_a_member_larger_than_it_declares_is_refused(present, runs_dir, tmp_path):
    zip_path = write_zip(tmp_path / "lies.zip", [("run/config.json", CONFIG),
                                                 ("run/data.bin", b"0123456789" * 1000)])  # fmt: skip
    data = bytearray(zip_path.read_bytes())
    central = data.rfind(b"PK\x01\x02")  # the last entry of the central directory: data.bin's
    assert data[central + 46 : central + 58] == b"run/data.bin"
    struct.pack_into("<I", data, central + 24, 100)  # uncompressed size: 100 instead of 10,000
    zip_path.write_bytes(bytes(data))
    refused_import(zip_path, runs_dir, r"member 'run/data\.bin': damaged")


# --- members this zipfile cannot, or must not, read ------------------------------------------
@pytest.mark.parametrize("member", ["run/config.json", "run/metrics.jsonl"])
def test_an_unsupported_compression_method_is_one_line(member, present, runs_dir, tmp_path):
    zip_path = write_zip(tmp_path / "method.zip", [("run/config.json", CONFIG),
                                                   ("run/metrics.jsonl", b"{}\n")])  # fmt: skip
    patch_member(zip_path, member, method=99)  # AES, as WinZip writes it: Python cannot read it
    refused_import(zip_path, runs_dir, rf"member '{member}': compression method 99 is not "
                   "supported")  # fmt: skip


def test_lzma_members_are_refused_though_python_reads_them(present, runs_dir, tmp_path):
    zip_path = write_zip(tmp_path / "lzma.zip", [("run/config.json", CONFIG)], zipfile.ZIP_LZMA)
    refused_import(zip_path, runs_dir, r"'run/config\.json': compression method 14 is not "
                   r"supported \(a run zip's members are stored or deflated\)")  # fmt: skip


def test_an_encrypted_member_is_one_line(present, runs_dir, tmp_path):
    zip_path = write_zip(tmp_path / "locked.zip", [("run/config.json", CONFIG),
                                                   ("run/log.txt", b"hello")])  # fmt: skip
    patch_member(zip_path, "run/log.txt", flags=0x1)
    refused_import(zip_path, runs_dir, r"member 'run/log\.txt': it is encrypted")


@pytest.mark.parametrize(
    "signature, offset, value, message",
    [(b"PK\x01\x02", 6, struct.pack("<H", 100),  # version needed to extract: 10.0
      r"not a readable zip file \(zip file version 10\.0\)"),
     (b"PK\x05\x06", 16, struct.pack("<I", 10_000),  # the directory's offset, too far: the
      r"member 'run/config\.json': damaged \(Invalid argument\)")],  # members' turn negative
)  # fmt: skip
def test_a_damaged_directory_is_one_line(signature, offset, value, message, present, runs_dir,
                                         tmp_path):  # fmt: skip
    zip_path = write_zip(tmp_path / "cd.zip", [("run/config.json", CONFIG)])
    data = bytearray(zip_path.read_bytes())
    at = data.rfind(signature) + offset
    data[at : at + len(value)] = value
    zip_path.write_bytes(bytes(data))
    refused_import(zip_path, runs_dir, message)


# --- config.json and status.json that do not parse ---------------------------------------------
DEEP = b"[" * 100_000 + b"]" * 100_000
DAMAGED_JSON = {
    "config not UTF-8": ("config.json", b'{"epochs": "\xff\xfe"}', r"invalid config: .*not UTF-8"),
    "config too deep": ("config.json", DEEP, r"invalid config: .*nested too deeply"),
    "status not UTF-8": ("status.json", b'{"state": "\xff"}', r"invalid status: .*not UTF-8"),
    "status not JSON": ("status.json", b'{"state": ', r"invalid status: .*not valid JSON"),
    "status too deep": ("status.json", DEEP, r"invalid status: .*nested too deeply"),
    "status a list": ("status.json", b"[1, 2]", r"invalid status: .*a JSON object, not list"),
    "status a folder": ("status.json/x", b"{}", r"a run's status\.json is a file, not a folder"),
    "config a folder": ("config.json/x", b"{}", r"a run's config\.json is a file, not a folder"),
    "metrics a folder": ("metrics.jsonl/x", b"", r"a run's metrics\.jsonl is a file, not a folder"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(DAMAGED_JSON))
def test_damaged_json_in_a_zip_is_one_line_naming_the_member(case, present, runs_dir, tmp_path):
    name, data, message = DAMAGED_JSON[case]
    members = {"run/config.json": CONFIG, "run/status.json": STATUS}
    members.pop(f"run/{name.split('/')[0]}", None)
    zip_path = write_zip(tmp_path / "json.zip", [*members.items(), (f"run/{name}", data)])
    error = refused_import(zip_path, runs_dir, message)
    assert f"member 'run/{name}'" in str(error)


def test_the_cli_prints_one_error_line_and_exits_2(present, runs_dir, tmp_path, capsys):
    zip_path = write_zip(tmp_path / "deep.zip", [("run/config.json", DEEP)])
    assert main(["--runs-dir", str(runs_dir), "import", str(zip_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: refused to import {zip_path}, member 'run/config.json'")
    assert err.count("\n") == 1 and "Traceback" not in err


# --- names ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["run\nx/config.json", "run/artifacts/a\rb.npy", "run/log\x1b[2J.txt", "run/\x85"]
)
def test_a_control_character_in_a_name_is_refused(name, present, runs_dir, tmp_path):
    members = [(name, CONFIG)] if name.endswith("config.json") else [("run/config.json", CONFIG),
                                                                     (name, b"x")]  # fmt: skip
    zip_path = write_zip(tmp_path / "names.zip", members)
    error = refused_import(zip_path, runs_dir, "a control character")
    assert repr(name) in str(error)  # named, escaped: the message stays on one line


def test_a_run_id_that_is_not_a_safe_name_is_sanitised(present, runs_dir, tmp_path, capsys):
    zip_path = write_zip(tmp_path / "odd.zip", [("my run (copy)/config.json", CONFIG)])
    taken = make_run(runs_dir, "my_run_copy")  # the sanitised name is taken: a suffix
    before = checksums(taken)
    assert main(["--runs-dir", str(runs_dir), "import", str(zip_path)]) == 0
    out = capsys.readouterr().out
    assert "its id 'my run (copy)' holds characters a run id may not: imported as my_run_copy" \
        in out and "imported as my_run_copy-imported" in out  # fmt: skip
    assert (runs_dir / "my_run_copy-imported" / "config.json").read_bytes() == CONFIG
    assert checksums(taken) == before
    assert runs.read_status(runs_dir / "my_run_copy-imported")["imported_run_id"] == "my run (copy)"
    assert sorted(r.run_id for r in runs.list_runs(runs_dir)) == [
        present.name,
        "my_run_copy",
        "my_run_copy-imported",
    ]


@pytest.mark.parametrize(
    "members",
    [[("run/config.json", CONFIG), ("run/a", b"1"), ("run/a/b", b"2")],
     [("run/config.json", CONFIG), ("run/a/b", b"2"), ("run/a", b"1")],
     [("run/config.json", CONFIG), ("run/a/", b""), ("run/a", b"1")]],
)  # fmt: skip
def test_a_file_where_a_folder_is_needed_is_refused(members, present, runs_dir, tmp_path):
    zip_path = write_zip(tmp_path / "clash.zip", members)
    refused_import(zip_path, runs_dir, r"member 'run/a': a file where other members need a folder")


def test_a_path_too_deep_is_refused(present, runs_dir, tmp_path):
    deep = "run/" + "a/" * 20 + "x.txt"
    zip_path = write_zip(tmp_path / "deep.zip", [("run/config.json", CONFIG), (deep, b"x")])
    refused_import(zip_path, runs_dir, r"22 folders deep, over the limit of 16")


def test_a_config_too_large_is_refused_unread(present, runs_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "MAX_CONFIG_BYTES", len(CONFIG) - 1)
    zip_path = write_zip(tmp_path / "big.zip", [("run/config.json", CONFIG)])
    refused_import(zip_path, runs_dir, rf"'run/config\.json': config\.json of {len(CONFIG)} bytes")


def test_the_same_path_twice_is_refused_before_anything_is_written(present, runs_dir, tmp_path):
    zip_path = write_zip(tmp_path / "twice.zip", [("run/config.json", CONFIG),
                                                  ("run/a.txt", b"1"), ("run/a.txt", b"2")])  # fmt: skip
    refused_import(zip_path, runs_dir, r"member 'run/a\.txt': the same path twice")
    with pytest.raises(archive.ArchiveError):
        archive.unpack_run(zip_path, tmp_path / "new_runs")
    assert not (tmp_path / "new_runs").exists()


# --- an imported run is never taken for a live one ------------------------------------------------
@pytest.mark.parametrize(
    "status, state, note",
    [({"state": "running"}, "stopped", "imported while running"),
     ({"state": "queued"}, "stopped", "imported while queued"),
     ({"state": "finished"}, "finished", None),
     ({"state": ["running"]}, "stopped", "imported in no known state"),
     ({"state": "running\nfinished"}, "stopped", "imported in no known state")],
)  # fmt: skip
def test_an_imported_run_never_has_our_process(status, state, note, present, runs_dir, tmp_path):
    from engine.store.liveness import HOST, process_start

    live = {"pid": os.getpid(), "pid_start": process_start(os.getpid()), "host": HOST,
            "heartbeat": 4e9, "stop_requested": True}  # this very process, beating  # fmt: skip
    zip_path = write_zip(tmp_path / "live.zip", [("run/config.json", CONFIG),
                                                 ("run/status.json", json.dumps({**status, **live}))])  # fmt: skip
    imported = archive.unpack_run(zip_path, runs_dir)
    got = runs.read_status(imported)
    assert (got["state"], got.get("note")) == (state, note and f"{note}; resume it to continue")
    assert all(got[k] is None for k in ("pid", "pid_start", "host", "heartbeat"))
    assert not runs.is_active(imported)


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
