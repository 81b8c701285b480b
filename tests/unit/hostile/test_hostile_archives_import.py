"""Hostile and damaged zips on the import path (engine.sharing.archive, `python -m engine
import`): decompression bombs, unsupported or encrypted members, damaged JSON, control
characters and unsafe names, and imported runs that claim a live process. Each is refused
with one line naming the file (and member), and leaves every run as it was. The export side:
test_hostile_archives_export.py."""

import json
import os
import stat
import struct
import warnings
import zipfile
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.sharing import archive
from engine.store import runs
from tests.support.archives import CONFIG, checksums, make_run, patch_member

STATUS = json.dumps({"state": "finished", "created": 1.0}).encode()


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
