"""A full disk or an unwritable runs folder (issue 11): a message in our words naming the file,
and nothing half-written that a reader could take for valid."""

from __future__ import annotations

import errno
import json
import os

import pytest

from engine.core.atomic import WriteError, write_bytes, write_json
from engine.execution import executor
from engine.store import events as events_module
from engine.store import runs
from engine.store.events import EventLog, read_events
from engine.store.layout import RunLayout
from engine.train import load_checkpoint


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_is_said_in_words_and_the_old_file_stays(tmp_path):
    path = tmp_path / "status.json"
    write_json(path, {"state": "running"})

    def half_then_full(f):
        f.write(b'{"state": "fini')
        _disk_full()

    from engine.core.atomic import write_atomic

    with pytest.raises(WriteError) as caught:
        write_atomic(path, half_then_full)
    assert str(caught.value).startswith(f"cannot write {path}: the disk is full.")
    assert caught.value.errno == errno.ENOSPC  # still an OSError, with the system's errno
    assert json.loads(path.read_text()) == {"state": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_a_file_where_a_folder_should_be_is_named(tmp_path):
    (tmp_path / "artifacts").write_text("not a folder")
    with pytest.raises(WriteError, match="part of the path is a file, not a folder"):
        write_bytes(tmp_path / "artifacts" / "x.npy", b"123")


def test_an_event_cut_short_by_a_full_disk_leaves_only_whole_lines(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    real_write = os.write
    with EventLog(path) as log:
        log.emit("loss", 1.0, split="train", epoch=0, step=1)

        def half_a_line(fd, data):
            return real_write(fd, data[: len(data) // 2])  # what a filling disk does

        monkeypatch.setattr(events_module.os, "write", half_a_line)
        with pytest.raises(WriteError, match="metrics.jsonl: the disk is full"):
            log.emit("loss", 0.5, split="train", epoch=0, step=2)
        monkeypatch.undo()
        log.emit("loss", 0.25, split="train", epoch=0, step=3)  # space again: goes on cleanly
    events, _ = read_events(path)
    assert [e["step"] for e in events] == [1, 3]
    assert all(line.startswith("{") for line in path.read_text().splitlines())


def test_a_run_folder_that_cannot_be_written_is_not_left_behind(tiny_config, runs_dir, monkeypatch):
    monkeypatch.setattr(runs, "write_json", _disk_full)
    with pytest.raises(runs.RunError) as caught:
        runs.create_run(tiny_config(), runs_dir)
    assert str(caught.value).startswith(f"cannot create a run in {runs_dir}: the disk is full")
    assert "WORKBENCH_RUNS_DIR" in str(caught.value)  # and where to choose another folder
    assert list(runs_dir.iterdir()) == []  # no folder that looks like a run and is not one


def test_a_run_that_fills_the_disk_fails_with_our_message_and_keeps_its_checkpoint(
    tiny_config, runs_dir, monkeypatch
):
    import torch

    run_dir = runs.create_run(tiny_config(epochs=3), runs_dir)
    real_save = torch.save

    def save_until_full(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and "progress" in obj and obj["progress"]["epoch"] >= 2:
            f.write(b"PK\x03\x04 half")
            _disk_full()
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_full)
    with pytest.raises(WriteError):
        executor.execute(run_dir)
    monkeypatch.undo()
    status = runs.read_status(run_dir)
    assert status["state"] == "failed"
    assert status["error"].startswith("cannot write ") and ": the disk is full." in status["error"]
    last = load_checkpoint(RunLayout(run_dir).last_checkpoint)
    assert last["progress"]["epoch"] == 1  # the epoch before the disk filled, intact
    checkpoints = RunLayout(run_dir).last_checkpoint.parent
    assert not [p.name for p in checkpoints.iterdir() if p.name.endswith(".tmp")]
