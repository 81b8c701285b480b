"""The run store: creating, listing and reading runs, and executing one in this process."""

import json
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from engine.config import ConfigError, DataConfig
from engine.data import DataError, load_dataset
from engine.execution import executor, launcher
from engine.experiments import classify
from engine.store import runs
from engine.store.layout import RunLayout
from engine.train import load_checkpoint, read_events
from tests.support.helpers import val_events

# --- the store ------------------------------------------------------------------------------


def test_create_run_writes_config_and_queued_status(runs_dir, tiny_config):
    cfg = tiny_config()
    run_dir = runs.create_run(cfg)  # no runs_dir: WORKBENCH_RUNS_DIR decides
    assert run_dir.parent == runs_dir
    assert json.loads((run_dir / "config.json").read_text()) == cfg.to_dict()
    assert runs.load_config(run_dir) == cfg
    status = runs.read_status(run_dir)
    assert status["state"] == "queued" and "created" in status


def test_create_run_refuses_an_invalid_config_and_creates_nothing(runs_dir, tiny_config):
    cfg = tiny_config()
    cfg.optim.lr = -1
    with pytest.raises(ConfigError, match="lr must be > 0"):
        runs.create_run(cfg)
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_simultaneous_create_run_calls_get_distinct_folders(runs_dir, tiny_config):
    cfg = tiny_config()
    n = 24
    barrier = threading.Barrier(n)

    def create(_):
        barrier.wait()  # all threads call create_run at the same moment
        return runs.create_run(cfg, runs_dir)

    with ThreadPoolExecutor(n) as pool:
        folders = list(pool.map(create, range(n)))
    assert len(set(folders)) == n
    assert sorted(p.name for p in runs_dir.iterdir()) == sorted(p.name for p in folders)
    for folder in folders:
        assert runs.load_config(folder) == cfg


def test_list_runs_is_newest_first(runs_dir, tiny_config):
    created = [runs.create_run(tiny_config(seed=i), runs_dir) for i in range(5)]
    listed = runs.list_runs(runs_dir)
    assert [r.path for r in listed] == created[::-1]
    assert [r.state for r in listed] == ["queued"] * 5
    assert listed[0].model == "small_cnn" and listed[0].dataset == "digits"


def test_list_runs_shows_damaged_runs_instead_of_hiding_them(runs_dir, tiny_config):
    good = runs.create_run(tiny_config(), runs_dir)
    broken_status = runs.create_run(tiny_config(), runs_dir)
    RunLayout(broken_status).status.write_text('{"state": "runn')
    broken_config = runs.create_run(tiny_config(), runs_dir)
    RunLayout(broken_config).config.write_text("not json")
    (runs_dir / "not-a-run").mkdir()  # no config.json: not a run
    by_path = {r.path: r for r in runs.list_runs(runs_dir)}
    assert set(by_path) == {good, broken_status, broken_config}
    assert by_path[good].state == "queued" and by_path[good].error is None
    assert by_path[broken_status].state == "damaged"
    assert "status.json" in by_path[broken_status].status["error"]
    assert "config.json is not valid JSON" in by_path[broken_config].error
    assert by_path[broken_config].state == "damaged"
    assert by_path[broken_config].model == "?"


def test_list_runs_of_a_missing_folder_is_empty(tmp_path):
    assert runs.list_runs(tmp_path / "nothing here") == []


def test_write_status_merges_fields(runs_dir, tiny_config):
    run_dir = runs.create_run(tiny_config(), runs_dir)
    created = runs.read_status(run_dir)["created"]
    runs.write_status(run_dir, state="running", pid=123)
    status = runs.write_status(run_dir, step=7)
    assert status["state"] == "running" and status["pid"] == 123 and status["step"] == 7
    assert status["created"] == created and status["updated"] >= created
    assert json.loads(RunLayout(run_dir).status.read_text()) == status


def test_resolve_run_by_id_prefix_and_path(runs_dir, tiny_config):
    run_dir = runs.create_run(tiny_config(), runs_dir)
    other = runs.create_run(tiny_config(), runs_dir)
    assert runs.resolve_run(run_dir.name) == run_dir
    assert runs.resolve_run(run_dir.name, runs_dir) == run_dir
    assert runs.resolve_run(str(run_dir)) == run_dir
    assert runs.resolve_run(run_dir) == run_dir
    # The ids differ only in their last characters; the prefix up to the first difference is unique.
    common = 0
    while run_dir.name[common] == other.name[common]:
        common += 1
    assert runs.resolve_run(run_dir.name[: common + 1]) == run_dir


def test_resolve_run_errors_are_clear(runs_dir, tiny_config):
    a = runs.create_run(tiny_config(), runs_dir)
    b = runs.create_run(tiny_config(), runs_dir)
    with pytest.raises(runs.RunError, match="no run 'nope'") as e:
        runs.resolve_run("nope")
    assert str(runs_dir) in str(e.value)
    with pytest.raises(runs.RunError, match="matches several runs") as e:
        runs.resolve_run(a.name[:8])
    assert a.name in str(e.value) and b.name in str(e.value)
    missing = runs_dir.parent / "elsewhere" / "some-run"
    with pytest.raises(runs.RunError, match="no run"):
        runs.resolve_run(str(missing))  # an absolute path that does not exist


# --- executing a run in this process --------------------------------------------------------


@pytest.fixture(scope="module")
def executed(tmp_path_factory, tiny_config):
    """A tiny digits run (small_cnn, 2 epochs, a snapshot every epoch), executed once."""
    cfg = tiny_config(image_size=16, epochs=2, snapshot_every=1)
    run_dir = runs.create_run(cfg, tmp_path_factory.mktemp("runs"))
    summary = executor.execute(run_dir)
    return run_dir, cfg, summary


def test_execute_writes_status_config_metrics_and_checkpoints(executed):
    run_dir, cfg, summary = executed
    layout = RunLayout(run_dir)
    assert runs.load_config(run_dir) == cfg
    status = runs.read_status(run_dir)
    assert status["state"] == "finished" and status["error"] is None
    assert status["pid"] > 0 and status["ended"] >= status["started"]
    assert status["summary"] == summary
    assert summary["epochs_done"] == 2 and 0 <= summary["test_acc"] <= 1
    splits = load_dataset(cfg.data)
    assert status["data"] == splits.describe() == summary["data"]
    assert status["total_steps"] == 2 * math.ceil(len(splits.train) / cfg.batch_size)

    events = read_events(layout.metrics)[0]
    val_acc = [e for e in events if (e["name"], e["split"]) == ("acc", "val")]
    assert [e["epoch"] for e in val_acc] == [1, 2]
    assert summary["best_val_acc"] == max(e["value"] for e in val_acc)
    (test_acc,) = [e["value"] for e in events if (e["name"], e["split"]) == ("acc", "test")]
    assert test_acc == summary["test_acc"]

    assert load_checkpoint(layout.last_checkpoint)["progress"]["epoch"] == 2
    best = load_checkpoint(layout.best_checkpoint)
    assert best["progress"]["best_score"] == summary["best_val_acc"]
    assert best["extra"]["classes"] == [str(i) for i in range(10)]


def test_execute_writes_embedding_snapshots_of_the_validation_set(executed):
    run_dir, cfg, _ = executed
    layout = RunLayout(run_dir)
    assert layout.embedding_epochs() == [1, 2]
    val = load_dataset(cfg.data).val
    snaps = [np.load(layout.embedding_file(epoch)) for epoch in (1, 2)]
    for snap in snaps:
        assert set(snap.files) == {"features", "labels", "sample_ids", "predictions"}
        assert snap["features"].shape == (len(val), 64) and snap["features"].dtype == np.float32
        assert np.isfinite(snap["features"]).all()
        assert snap["labels"].dtype == np.int64 and snap["predictions"].dtype == np.int64
        # The snapshot holds the whole validation set here (~270 < snapshot_size), by id.
        np.testing.assert_array_equal(snap["sample_ids"], val.ids.numpy())
        np.testing.assert_array_equal(snap["labels"], val.labels.numpy())
    np.testing.assert_array_equal(snaps[0]["sample_ids"], snaps[1]["sample_ids"])
    assert not np.array_equal(snaps[0]["features"], snaps[1]["features"])  # it learned


def test_execute_writes_confusion_matrices_that_agree_with_the_metrics(executed):
    run_dir, cfg, _ = executed
    layout = RunLayout(run_dir)
    assert layout.confusion_epochs() == [1, 2]
    cm = np.load(layout.confusion_file(2))
    assert cm.shape == (10, 10) and cm.sum() == len(load_dataset(cfg.data).val)
    events = read_events(layout.metrics)[0]
    (val_acc,) = [
        e["value"] for e in events if (e["name"], e["split"], e["epoch"]) == ("acc", "val", 2)
    ]
    assert np.trace(cm) / cm.sum() == pytest.approx(val_acc, abs=1e-12)
    # The snapshot's predictions and the evaluation's confusion matrix are the same model's.
    snap = np.load(layout.embedding_file(2))
    assert (snap["predictions"] == snap["labels"]).sum() == np.trace(cm)


def test_execute_with_a_bad_dataset_path_ends_failed_naming_the_path(runs_dir, tiny_config):
    missing = runs_dir.parent / "no" / "such" / "folder"
    cfg = tiny_config()
    cfg.data = DataConfig(name="folder", path=str(missing), image_size=16)
    run_dir = runs.create_run(cfg.validate(), runs_dir)
    with pytest.raises(DataError):
        executor.execute(run_dir)
    status = runs.read_status(run_dir)
    assert status["state"] == "failed"
    assert str(missing) in status["error"]
    assert "DataError" in RunLayout(run_dir).log.read_text()  # the traceback, for a developer


# --- stop after epoch 1, resume, finish == an uninterrupted run ------------------------------


def _classify(cfg, run_dir, resume=False, stop_at_step=None):
    steps = {}

    def on_data(splits, total_steps):
        steps["per_epoch"] = total_steps // cfg.epochs

    def on_step(state):
        steps["done"] = state.global_step

    def should_stop():
        return stop_at_step is not None and steps.get("done") == stop_at_step(steps["per_epoch"])

    summary = classify.run(
        cfg, run_dir, resume=resume, should_stop=should_stop, on_step=on_step, on_data=on_data
    )
    return summary, steps


@pytest.mark.parametrize(
    "stop_at_step",
    [
        lambda per_epoch: per_epoch,  # the last batch of epoch 1, before it is evaluated
        lambda per_epoch: per_epoch + 1,  # just after epoch 1 was evaluated and saved
    ],
    ids=["end-of-epoch-1", "start-of-epoch-2"],
)
def test_stop_resume_finish_equals_an_uninterrupted_run(tmp_path, tiny_config, stop_at_step):
    cfg = tiny_config(epochs=3, image_size=8)  # the digits' own size: the cheapest run
    straight_dir, resumed_dir = tmp_path / "straight", tmp_path / "resumed"
    expected, _ = _classify(cfg, straight_dir)

    partial, steps = _classify(cfg, resumed_dir, stop_at_step=stop_at_step)
    assert "test_acc" not in partial  # stopped: no test evaluation yet
    assert steps["done"] == stop_at_step(steps["per_epoch"])
    assert RunLayout(resumed_dir).last_checkpoint.exists()
    final, _ = _classify(cfg, resumed_dir, resume=True)

    for timed in (final, expected):  # the clock is the one thing a resume cannot replay
        assert timed.pop("seconds_per_epoch") > 0
    assert final == expected  # epochs, best val acc, test acc and loss, exactly
    assert val_events(resumed_dir) == val_events(straight_dir)
    a = load_checkpoint(RunLayout(straight_dir).last_checkpoint)["model"]
    b = load_checkpoint(RunLayout(resumed_dir).last_checkpoint)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    for epoch in (1, 2, 3):
        x = np.load(RunLayout(straight_dir).embedding_file(epoch))
        y = np.load(RunLayout(resumed_dir).embedding_file(epoch))
        assert all(np.array_equal(x[k], y[k]) for k in x.files)


# --- JSON files that parse but are not objects --------------------------------------------------


@pytest.mark.parametrize("content", ["[]", '"x"', "3", "null"])
def test_a_status_json_that_is_not_an_object_reads_as_damaged(runs_dir, tiny_config, content):
    run_dir = runs.create_run(tiny_config(), runs_dir)
    RunLayout(run_dir).status.write_text(content)
    status = runs.read_status(run_dir)
    assert status["state"] == "damaged" and "status.json" in status["error"]
    assert runs.is_active(run_dir) is False and launcher.stop(run_dir) is False
    (listed,) = runs.list_runs(runs_dir)
    assert listed.path == run_dir and listed.state == "damaged"
    assert listed.config is not None and listed.error is None  # config.json is fine
    # The next write replaces the damaged file instead of failing on it.
    assert runs.write_status(run_dir, state="queued")["state"] == "queued"
    assert runs.read_status(run_dir)["state"] == "queued"


@pytest.mark.parametrize("content", ["[]", '"x"', "3", "null"])
def test_a_config_json_that_is_not_an_object_is_listed_with_its_problem(
    runs_dir, tiny_config, content
):
    run_dir = runs.create_run(tiny_config(), runs_dir)
    RunLayout(run_dir).config.write_text(content)
    (listed,) = runs.list_runs(runs_dir)
    assert listed.path == run_dir and listed.state == "damaged"
    assert listed.config is None and "config.json" in listed.error
    assert listed.model == listed.dataset == "?"
    with pytest.raises(ConfigError, match="config.json"):
        runs.load_config(run_dir)


def test_config_sections_that_are_not_objects_show_as_unknown(runs_dir, tiny_config):
    run_dir = runs.create_run(tiny_config(), runs_dir)
    RunLayout(run_dir).config.write_text('{"model": ["small_cnn"], "data": "digits"}')
    (listed,) = runs.list_runs(runs_dir)
    assert listed.model == listed.dataset == "?"


# --- relative dataset paths ----------------------------------------------------------------------


def test_create_run_stores_the_data_path_absolute(runs_dir, tiny_config, tmp_path, monkeypatch):
    pets = tmp_path / "data" / "pets"
    pets.mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "data")
    cfg = tiny_config()
    cfg.data = DataConfig(name="folder", path="./pets/../pets", image_size=16)
    run_dir = runs.create_run(cfg.validate())
    # The run's process starts in the repository root, not here: the path must not depend on it.
    stored = json.loads(RunLayout(run_dir).config.read_text())["data"]["path"]
    assert stored == str(pets.resolve())
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg.data.path = "~/data/pets"
    assert runs.load_config(runs.create_run(cfg)).data.path == str(pets.resolve())
