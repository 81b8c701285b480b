"""`python -m engine ...` as a user runs it: a subprocess in the repository root. The error
paths that need no subprocess are in tests/unit/test_cli_main.py."""

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.cli.main import main
from engine.store import runs
from engine.store.layout import RunLayout

REPO = Path(__file__).resolve().parents[2]


def cli(*args, runs_dir, timeout=180) -> subprocess.CompletedProcess:
    env = {**os.environ, "WORKBENCH_RUNS_DIR": str(runs_dir)}
    return subprocess.run(
        [sys.executable, "-m", "engine", *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`train --epochs 2 --snapshot-every 1` on the digits, once for the whole module."""
    runs_dir = tmp_path_factory.mktemp("cli_runs")
    result = cli("train", "--epochs", 2, "--snapshot-every", 1, runs_dir=runs_dir)
    match = re.search(r"^run folder: (.+)$", result.stdout, re.MULTILINE)
    run_dir = Path(match.group(1)) if match else None
    return result, runs_dir, run_dir


def test_train_prints_the_run_folder_and_test_accuracy(trained):
    result, runs_dir, run_dir = trained
    assert result.returncode == 0, result.stderr
    assert run_dir is not None and run_dir.parent == runs_dir and run_dir.is_dir()
    status = runs.read_status(run_dir)
    assert status["state"] == "finished"
    test_acc = status["summary"]["test_acc"]
    assert f"test acc {test_acc:.4f}" in result.stdout
    assert "epochs 2," in result.stdout


def test_list_shows_the_run(trained):
    _, runs_dir, run_dir = trained
    result = cli("list", runs_dir=runs_dir)
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith(run_dir.name)]
    test_acc = runs.read_status(run_dir)["summary"]["test_acc"]
    assert line.split()[1:4] == ["finished", "small_cnn", "digits"]
    assert line.split()[-1] == f"{test_acc:.4f}"


def test_show_prints_the_state_and_snapshots(trained):
    _, runs_dir, run_dir = trained
    result = cli("show", run_dir.name, runs_dir=runs_dir)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^state\s+finished$", result.stdout, re.MULTILINE)
    assert f"run     {run_dir}" in result.stdout
    assert "snapshots (epochs): [1, 2]" in result.stdout
    assert re.search(r"val/acc\s+\d\.\d{4}\s+\(epoch 2\)", result.stdout)


def test_project_writes_a_csv_row_per_snapshot_sample(trained, tmp_path):
    _, runs_dir, run_dir = trained
    out = tmp_path / "x.csv"
    result = cli(
        "project", run_dir.name, "--method", "pca", "--epoch", 2, "--out", out, runs_dir=runs_dir
    )
    assert result.returncode == 0, result.stderr
    snapshot = np.load(RunLayout(run_dir).embedding_file(2))
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["sample_id", "label", "prediction", "x", "y"]
    body = rows[1:]
    assert len(body) == len(snapshot["sample_ids"]) > 200  # the whole validation set
    assert [int(r[0]) for r in body] == snapshot["sample_ids"].tolist()
    assert [int(r[1]) for r in body] == snapshot["labels"].tolist()
    assert [int(r[2]) for r in body] == snapshot["predictions"].tolist()
    xy = np.array([[float(r[3]), float(r[4])] for r in body])
    assert np.isfinite(xy).all() and xy.std(axis=0).min() > 0


def test_negative_learning_rate_exits_2_and_creates_no_run(tmp_path):
    result = cli("train", "--lr", -1, runs_dir=tmp_path / "runs")
    assert result.returncode == 2
    assert "lr must be > 0, got -1" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_missing_dataset_folder_exits_with_an_error_naming_it(tmp_path):
    missing = tmp_path / "nonexistent"
    result = cli("train", "--dataset", "folder", "--data-path", missing, runs_dir=tmp_path / "runs")
    assert result.returncode == 2
    assert str(missing) in result.stderr and "Traceback" not in result.stderr
    # Checked before anything is written: no run folder for an input that cannot work.
    assert runs.list_runs(tmp_path / "runs") == []


def test_resume_of_an_unknown_run_exits_2(tmp_path):
    result = cli("resume", "nope", runs_dir=tmp_path / "runs")
    assert result.returncode == 2
    assert "no run 'nope'" in result.stderr and "Traceback" not in result.stderr


# --- quicker error paths on the trained run, through main() in this process ------------------
# (those that need no trained run are in tests/unit/test_cli_main.py)


def test_stop_of_a_finished_run_says_it_is_not_running(trained, capsys):
    _, runs_dir, run_dir = trained
    assert main(["--runs-dir", str(runs_dir), "stop", run_dir.name]) == 1
    assert "is not running" in capsys.readouterr().out


def test_project_of_a_missing_snapshot_epoch_exits_2(trained, capsys):
    _, runs_dir, run_dir = trained
    assert main(["--runs-dir", str(runs_dir), "project", run_dir.name, "--epoch", "5"]) == 2
    assert "no snapshot at epoch 5; snapshots exist at epochs [1, 2]" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, said",
    [
        (["--method", "tsne", "--perplexity", "0"], "perplexity must be > 0, got 0.0"),
        (["--method", "umap", "--n-neighbors", "1"], "n_neighbors must be >= 2, got 1"),
        (["--method", "pca", "--perplexity", "5"], "unknown parameter(s) perplexity for pca"),
    ],
)
def test_project_parameters_are_checked_before_any_work(trained, capsys, args, said):
    _, runs_dir, run_dir = trained
    assert main(["--runs-dir", str(runs_dir), "project", run_dir.name, *args]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: {said}") and captured.err.count("\n") == 1
    assert "projections" not in captured.err + captured.out  # no progress bar came first


def test_project_to_a_folder_that_does_not_exist_exits_2_with_one_line(trained, capsys):
    _, runs_dir, run_dir = trained
    out = "/nonexistent/dir/x.csv"
    args = ["project", run_dir.name, "--method", "umap", "--out", out]
    assert main(["--runs-dir", str(runs_dir), *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert out in line and "does not exist" in line
    assert not Path(out).parent.exists()
    # Checked before the projection is computed, not after minutes of t-SNE or UMAP.
    projections = RunLayout(run_dir).projections
    assert not any(projections.glob("umap*")), list(projections.iterdir())
