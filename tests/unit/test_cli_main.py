"""The command line through main() in this process: error paths and flags that need no
subprocess (`python -m engine` itself is run in tests/integration/test_cli.py)."""

import re
from pathlib import Path

import pytest
import torch

from engine.cli.main import main
from engine.store import runs
from engine.store.layout import RunLayout


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_a_device_that_is_not_here_exits_2_and_creates_no_run(tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    assert main(["--runs-dir", str(runs_dir), "train", "--device", "cuda", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: device 'cuda' was asked for, but no CUDA GPU is available")
    assert "use device 'auto'" in err
    assert runs.list_runs(runs_dir) == []


def test_resume_of_a_missing_path_exits_2(tmp_path, capsys):
    assert main(["--runs-dir", str(tmp_path), "resume", str(tmp_path / "gone" / "run")]) == 2
    assert "no run" in capsys.readouterr().err


def test_resume_without_a_run_exits_2(capsys):
    assert main(["resume"]) == 2
    assert "resume needs a run id or folder" in capsys.readouterr().err


def test_train_with_a_broken_config_file_names_it(tmp_path, capsys):
    path = tmp_path / "broken.json"
    path.write_text('{"epochs": ')
    assert main(["--runs-dir", str(tmp_path / "runs"), "train", "--config", str(path)]) == 2
    assert str(path) in capsys.readouterr().err


def test_train_snapshots_exactly_at_the_epochs_asked_for(runs_dir, capsys):
    args = ["train", "--epochs", "2", "--batch-size", "64", "--device", "cpu"]
    assert main([*args, "--snapshot-epochs", "2, 1"]) == 0
    out = capsys.readouterr().out
    run_dir = Path(re.search(r"^run folder: (.+)$", out, re.MULTILINE).group(1))
    assert run_dir.parent == runs_dir
    assert runs.load_config(run_dir).snapshot_epochs == [1, 2]
    layout = RunLayout(run_dir)
    assert layout.embedding_epochs() == layout.confusion_epochs() == [1, 2]
    assert runs.read_status(run_dir)["state"] == "finished"


@pytest.mark.parametrize("value", ["1,x", "x"])
def test_snapshot_epochs_that_are_not_numbers_are_a_usage_error(runs_dir, capsys, value):
    with pytest.raises(SystemExit) as e:
        main(["train", "--epochs", "2", "--snapshot-epochs", value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--snapshot-epochs" in err and repr(value) in err and "Traceback" not in err
    assert not runs_dir.exists()


def test_snapshot_epochs_beyond_the_last_epoch_exit_2(runs_dir, capsys):
    assert main(["train", "--epochs", "2", "--snapshot-epochs", "1,3"]) == 2
    assert "snapshot_epochs must lie in [1, 2], got [3]" in capsys.readouterr().err
    assert not runs_dir.exists()


def test_snapshot_size_sets_how_many_images_each_snapshot_embeds(runs_dir, capsys):
    args = ["train", "--epochs", "1", "--batch-size", "64", "--device", "cpu"]
    assert main([*args, "--snapshot-size", "50"]) == 0
    out = capsys.readouterr().out
    run_dir = Path(re.search(r"^run folder: (.+)$", out, re.MULTILINE).group(1))
    assert runs.load_config(run_dir).snapshot_size == 50
    from engine.inspect.snapshots import load_embedding

    assert len(load_embedding(run_dir, 1)["labels"]) == 50
