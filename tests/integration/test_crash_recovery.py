"""Runs never lose work (issue 11): a training process killed with SIGKILL mid-epoch resumes
from last.pt and ends with the numbers of an uninterrupted run; a checkpoint write that dies
half-way leaves the previous checkpoint valid."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from engine.execution import executor, launcher
from engine.store import runs
from engine.store.layout import RunLayout
from engine.train import load_checkpoint, read_events
from engine.train.checkpoint import save_checkpoint
from tests.support.helpers import val_events, wait_for


def _steps_in_epoch(run_dir, epoch: int) -> bool:
    events, _ = read_events(RunLayout(run_dir).metrics)
    return any(e["name"] == "loss" and e["split"] == "train" and e["epoch"] == epoch
               for e in events)  # fmt: skip


def test_a_run_killed_mid_epoch_resumes_to_the_numbers_of_an_uninterrupted_one(
    tiny_config, tmp_path
):
    cfg = tiny_config(image_size=32, epochs=4, log_every=1)
    cfg.batch_size = 16  # ~80 steps an epoch: time to be killed inside one
    # One thread in every process (the launched one, this one resuming, the reference): the
    # numbers are then bit-for-bit whatever OMP_NUM_THREADS the test session has.
    cfg.cpu_threads = 1
    cfg = cfg.validate()
    killed = runs.create_run(cfg, tmp_path / "killed")
    pid = launcher.launch(killed, warm=False)
    wait_for(lambda: _steps_in_epoch(killed, 3), 180, "the launched run to reach epoch 3")
    os.kill(pid, signal.SIGKILL)  # no handler runs: nothing is saved on the way out
    wait_for(lambda: runs.read_status(killed)["state"] == "failed", 30, "the death to show")
    saved = load_checkpoint(RunLayout(killed).last_checkpoint)["progress"]
    assert saved["epoch"] >= 2 and saved["step_in_epoch"] == 0  # the last epoch end it passed
    lost = max(e["epoch"] for e in read_events(RunLayout(killed).metrics)[0]) - saved["epoch"]
    assert lost <= 1  # at most the epoch in progress

    summary = executor.execute(killed, resume=True)
    clean = runs.create_run(cfg, tmp_path / "clean")
    reference = executor.execute(clean)
    assert summary["epochs_done"] == reference["epochs_done"] == 4
    assert summary["best_val_acc"] == reference["best_val_acc"]
    assert summary["test_acc"] == reference["test_acc"]
    assert val_events(killed) == val_events(clean)  # every validation number, epoch by epoch


def test_a_checkpoint_write_that_dies_half_way_leaves_the_last_one_valid(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    good = {"model": {"w": torch.arange(4.0)}, "progress": {"epoch": 3}}
    save_checkpoint(path, good)

    def dying_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip file")  # what a crash leaves mid-write
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError, match="cannot write .*last.pt: the disk is full. Nothing was"):
        save_checkpoint(path, {"model": {"w": torch.zeros(4)}, "progress": {"epoch": 4}})
    monkeypatch.undo()
    again = load_checkpoint(path)
    assert again["progress"]["epoch"] == 3 and torch.equal(again["model"]["w"], good["model"]["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no half-written file beside it
