"""The run catalogue behind the Runs page (issue 13): a row per run with its best and test
metric, titles and tags, re-runs from a config, and curves on any x axis with smoothing."""

from __future__ import annotations

import json
import math

import pytest

from engine.config import ConfigError
from engine.execution import executor
from engine.execution.start import start_run
from engine.store import catalogue, runs


@pytest.fixture
def finished(tiny_config, runs_dir):
    run_dir = runs.create_run(tiny_config(epochs=2), runs_dir)
    executor.execute(run_dir)
    return run_dir


def test_a_row_per_run_with_its_metric_state_and_duration(finished, tiny_config, runs_dir):
    queued = runs.create_run(tiny_config(), runs_dir)
    rows = {r["run"]: r for r in catalogue.run_rows(runs_dir)}
    done = rows[finished.name]
    summary = runs.read_status(finished)["summary"]
    assert (done["kind"], done["model"], done["data"], done["state"]) == (
        "classify", "small_cnn", "digits", "finished",
    )  # fmt: skip
    assert done["metric"] == "acc" and done["best val"] == summary["best_val_acc"]
    assert done["test"] == summary["test_acc"]
    status = runs.read_status(finished)
    assert done["duration s"] == pytest.approx(status["ended"] - status["started"])
    assert rows[queued.name]["state"] == "queued" and rows[queued.name]["duration s"] is None
    assert rows[queued.name]["best val"] is None


def test_the_metric_follows_the_kind_of_run():
    assert catalogue.best_metric({"best_val_miou": 0.5, "test_miou": 0.4}) == ("miou", 0.5, 0.4)
    assert catalogue.best_metric({"best_val_knn_acc": 0.9, "test_knn_acc": 0.8, "test_acc": 0.8}) \
        == ("knn_acc", 0.9, 0.8)  # fmt: skip
    assert catalogue.best_metric({"test_acc": 0.47}) == ("acc", None, 0.47)  # few-shot
    assert catalogue.best_metric({}) == (None, None, None)


def test_title_and_tags_are_kept_in_the_status_and_shown(finished, runs_dir):
    catalogue.set_title(finished, "  first   try ")
    assert catalogue.set_tags(finished, "baseline, lr-sweep adam baseline") == [
        "baseline", "lr-sweep", "adam",
    ]  # fmt: skip
    (row,) = catalogue.run_rows(runs_dir)
    assert row["title"] == "first try" and row["tags"] == "baseline, lr-sweep, adam"
    assert (finished / "config.json").exists()  # the folder and id do not change


@pytest.mark.parametrize("bad", ["two words;", "a" * 33, "semi;colon"])
def test_a_bad_tag_is_refused_with_the_rule(finished, bad):
    with pytest.raises(ConfigError, match="use up to 32 letters"):
        catalogue.set_tags(finished, bad)


def test_a_too_long_title_is_refused(finished):
    with pytest.raises(ConfigError, match="at most 120 characters"):
        catalogue.set_title(finished, "x" * 121)


def test_a_rerun_is_a_new_run_with_the_same_config(finished, runs_dir):
    new = start_run(catalogue.config_from_text(catalogue.config_text(finished)), runs_dir, False)
    assert new != finished and runs.read_status(new)["state"] == "queued"
    assert runs.load_config(new).to_dict() == runs.load_config(finished).to_dict()


def test_a_clone_takes_the_edited_config_and_refuses_a_bad_one(finished, runs_dir):
    edited = json.loads(catalogue.config_text(finished))
    edited["epochs"] = 7
    new = start_run(catalogue.config_from_text(json.dumps(edited)), runs_dir, launch=False)
    assert runs.load_config(new).epochs == 7
    edited["epochs"] = 0
    with pytest.raises(ConfigError, match="epochs"):
        catalogue.config_from_text(json.dumps(edited))
    with pytest.raises(ConfigError, match="not valid JSON"):
        catalogue.config_from_text("{not json")


def test_a_clone_checks_its_data_path(finished, runs_dir):
    edited = json.loads(catalogue.config_text(finished))
    edited["data"].update(name="folder", path="/etc")

    def refuse(path):
        raise ConfigError(f"{path} is outside")

    with pytest.raises(ConfigError, match="/etc is outside"):
        catalogue.config_from_text(json.dumps(edited), check_paths=refuse)
    assert len(runs.list_runs(runs_dir)) == 1  # nothing made


def test_a_clone_is_checked_like_any_new_run_before_a_folder_is_made(finished, runs_dir, tmp_path):
    """Re-run and clone go through start_run: data that cannot be read is refused first."""
    from engine.data.datasets import DataError

    empty = tmp_path / "empty"
    empty.mkdir()
    edited = json.loads(catalogue.config_text(finished))
    edited["data"].update(name="folder", path=str(empty))
    with pytest.raises(DataError):
        start_run(catalogue.config_from_text(json.dumps(edited)), runs_dir, launch=False)
    assert len(runs.list_runs(runs_dir)) == 1  # nothing made


def test_curves_by_step_epoch_or_time():
    events = [
        {"time": 100.0, "name": "acc", "split": "val", "epoch": 1, "step": 10, "value": 0.5},
        {"time": 101.0, "name": "loss", "split": "train", "epoch": 1, "step": 10, "value": 2.0},
        {"time": 103.5, "name": "acc", "split": "val", "epoch": 2, "step": 20, "value": 0.7},
    ]
    assert catalogue.metric_names(events) == ["acc/val", "loss/train"]
    assert catalogue.curve(events, "acc/val", "step") == ([10, 20], [0.5, 0.7])
    assert catalogue.curve(events, "acc/val", "epoch")[0] == [1, 2]
    assert catalogue.curve(events, "acc/val", "time")[0] == [0.0, 3.5]
    with pytest.raises(ValueError, match="x axis"):
        catalogue.curve(events, "acc/val", "wall")


def test_smoothing_is_a_debiased_moving_average():
    assert catalogue.smooth([1.0, 2.0, 3.0], 0.0) == [1.0, 2.0, 3.0]
    out = catalogue.smooth([1.0, 1.0, 1.0], 0.9)
    assert out == pytest.approx([1.0, 1.0, 1.0])  # debiased: a constant stays itself
    steps = catalogue.smooth([0.0, 10.0], 0.5)
    assert steps == pytest.approx([0.0, (0.5 * 0 + 0.5 * 10) / (1 - 0.5**2)])
    nan = catalogue.smooth([1.0, float("nan"), 3.0], 0.5)
    assert math.isnan(nan[1]) and nan[2] == pytest.approx((0.25 * 1 + 0.5 * 3) / 0.75)
    with pytest.raises(ValueError):
        catalogue.smooth([1.0], 1.0)


def test_a_damaged_or_hostile_status_does_not_break_the_table(finished, runs_dir):
    # status.json of an imported zip can hold anything JSON (and Python's json reads NaN).
    runs.write_status(finished, created=1e20, started=float("nan"), tags=[1, "a"], summary=[])
    (row,) = catalogue.run_rows(runs_dir)
    # Fields of the wrong type are dropped and the run is shown as damaged (issue 19).
    assert row["created"] is None and row["duration s"] is None and row["tags"] == ""
    assert row["state"] == "damaged"
    assert row["best val"] is None and row["metric"] == ""


def test_curves_skip_values_that_are_not_numbers():
    events = [
        {"time": "noon", "name": "acc", "split": "val", "epoch": 1, "step": 1, "value": "high"},
        {"time": 5.0, "name": "acc", "split": "val", "epoch": 2, "step": 2, "value": 0.5},
    ]
    x, y = catalogue.curve(events, "acc/val", "time", 0.5)
    assert x == [0.0, 0.0] and y[0] is None and y[1] == pytest.approx(0.5)
