"""Resuming after a stop or a hard kill: training continues from last.pt and every event of
the run is in metrics.jsonl exactly once, as if it had never been interrupted."""

from collections import Counter

from engine.execution import executor, launcher
from engine.experiments import classify
from engine.store import runs
from engine.store.layout import RunLayout
from engine.train import EventLog, load_checkpoint, read_events
from tests.support.helpers import wait_until_ended

FAKE = 9.0  # the value of events a killed process logged after its last checkpoint


def _events(run_dir) -> list[dict]:
    return read_events(RunLayout(run_dir).metrics)[0]


def _keys(run_dir) -> list[tuple]:
    return sorted((e["name"], e["split"], e["epoch"], e["step"]) for e in _events(run_dir))


def _train_and_stop(run_dir, steps_into_epoch_2: int) -> int:
    """Train the run in this process, stopping `steps_into_epoch_2` steps into epoch 2
    (last.pt is saved then); returns the steps per epoch."""
    cfg = runs.load_config(run_dir)
    seen = {}

    def on_data(splits, total_steps):
        seen["per_epoch"] = total_steps // cfg.epochs

    def on_step(state):
        seen["step"] = state.global_step

    def should_stop():
        return seen["step"] == seen["per_epoch"] + steps_into_epoch_2

    summary = classify.run(cfg, run_dir, should_stop=should_stop, on_step=on_step, on_data=on_data)
    assert "test_acc" not in summary  # stopped
    return seen["per_epoch"]


def _assert_each_event_once(run_dir, epochs: int) -> None:
    events = _events(run_dir)
    steps = Counter(
        (e["name"], e["split"], e["step"])
        for e in events
        if (e["name"], e["split"]) == ("loss", "train")
    )
    assert steps and set(steps.values()) == {1}, steps
    per_epoch = Counter(
        (e["name"], e["split"], e["epoch"])
        for e in events
        if (e["name"], e["split"]) != ("loss", "train")
    )
    assert set(per_epoch.values()) == {1}, per_epoch
    val_acc = [e["epoch"] for e in events if (e["name"], e["split"]) == ("acc", "val")]
    assert sorted(val_acc) == list(range(1, epochs + 1))
    assert [e["split"] for e in events if e["name"] == "acc"].count("test") == 1
    assert all(e["value"] != FAKE for e in events)


def test_resume_after_a_hard_kill_logs_each_event_once(runs_dir, tmp_path, tiny_config):
    cfg = tiny_config(epochs=2, image_size=8, log_every=5)
    run_dir = runs.create_run(cfg, runs_dir)
    per_epoch = _train_and_stop(run_dir, steps_into_epoch_2=3)
    saved_at = load_checkpoint(RunLayout(run_dir).last_checkpoint)["progress"]["global_step"]
    assert saved_at == per_epoch + 3
    # The process went on after saving last.pt and was then killed: what it logged since
    # is replayed by the resumed run, and must not be there twice.
    next_logged = (saved_at // cfg.log_every + 1) * cfg.log_every
    assert next_logged < 2 * per_epoch
    end = 2 * per_epoch
    with EventLog(RunLayout(run_dir).metrics) as log:
        log.emit("loss", FAKE, split="train", epoch=2, step=next_logged)
        for name, split in (("loss", "train_epoch"), ("acc", "val"), ("loss", "val")):
            log.emit(name, FAKE, split=split, epoch=2, step=end)
        log.emit("acc", FAKE, split="test", epoch=2, step=end)

    summary = executor.execute(run_dir, resume=True)
    assert summary["epochs_done"] == 2
    _assert_each_event_once(run_dir, epochs=2)
    (test_acc,) = [
        e["value"] for e in _events(run_dir) if e["split"] == "test" and e["name"] == "acc"
    ]
    assert test_acc == summary["test_acc"]
    # The same events as a run that was never interrupted, and the same result.
    straight = tmp_path / "straight"
    assert _untimed(classify.run(cfg, straight)) == _untimed(summary)
    assert _keys(run_dir) == _keys(straight)


def _untimed(summary: dict) -> dict:
    """A summary without its clock (the median epoch time), the one thing a rerun differs in."""
    assert summary["seconds_per_epoch"] > 0
    return {k: v for k, v in summary.items() if k != "seconds_per_epoch"}


def test_resume_without_a_checkpoint_starts_over(runs_dir, tmp_path, tiny_config):
    cfg = tiny_config(epochs=1, image_size=8)
    run_dir = runs.create_run(cfg, runs_dir)
    # Killed during epoch 1, before the first last.pt.
    with EventLog(RunLayout(run_dir).metrics) as log:
        log.emit("loss", FAKE, split="train", epoch=1, step=1)
        log.emit("loss", FAKE, split="train", epoch=1, step=5)
    assert not RunLayout(run_dir).last_checkpoint.exists()

    summary = executor.execute(run_dir, resume=True)
    _assert_each_event_once(run_dir, epochs=1)
    straight = tmp_path / "straight"
    assert _untimed(classify.run(cfg, straight)) == _untimed(summary)  # from scratch, exactly
    assert _keys(run_dir) == _keys(straight)


def test_launch_resume_of_a_stopped_run_continues_from_last_pt(runs_dir, tiny_config):
    cfg = tiny_config(epochs=3, image_size=8)
    run_dir = runs.create_run(cfg, runs_dir)
    _train_and_stop(run_dir, steps_into_epoch_2=3)
    layout = RunLayout(run_dir)
    saved_at = load_checkpoint(layout.last_checkpoint)["progress"]["global_step"]
    runs.write_status(run_dir, state="stopped", stop_requested=True)  # as a stopped run leaves it

    logged_before = _events(run_dir)
    launcher.launch(run_dir, resume=True)
    wait_until_ended(run_dir)

    status = runs.read_status(run_dir)
    assert status["state"] == "finished", layout.log.read_text()
    assert status["summary"]["epochs_done"] == cfg.epochs
    assert status["stop_requested"] is False  # the old request does not outlive the relaunch
    _assert_each_event_once(run_dir, epochs=cfg.epochs)
    # Continued, not restarted: the stopped run's events up to last.pt are kept, and the
    # resumed process logged only the steps after it.
    events = _events(run_dir)
    assert logged_before and all(e["step"] <= saved_at for e in logged_before)
    assert [e for e in events if e in logged_before] == logged_before
    new = [e for e in events if e not in logged_before]
    assert new and all(e["step"] > saved_at for e in new)
