"""Time estimates (engine.analysis.estimates): from this machine's finished runs when there
are some, else from the reference; scaled by pixels; few-shot by episodes; a frozen head on
features in milliseconds; unknown data sizes give no estimate; the time left of a run."""

from __future__ import annotations

import pytest

from engine.analysis import estimates
from engine.config import DataConfig, FewShotConfig, ModelConfig, RunConfig, TransferConfig


def _finished(model="resnet18", size=32, seconds=20.0, images=1000, kind="classify"):
    cfg = {"kind": kind, "model": {"name": model}, "data": {"image_size": size}}
    return cfg, {"seconds_per_epoch": seconds, "data": f"x: {images:,} train / 10 val / 10 test"}


def test_the_reference_when_nothing_finished_here():
    cfg = RunConfig(model=ModelConfig(name="resnet18"), epochs=10)
    est = estimates.estimate(cfg)
    per_epoch = estimates.REFERENCE[("classify", "resnet18")] * 1259
    assert est.per_epoch == pytest.approx(per_epoch)
    assert est.seconds == pytest.approx(estimates.STARTUP + 10 * per_epoch)
    assert "the reference for resnet18" in est.text() and "10 epochs" in est.text()


def test_this_machines_runs_come_first_and_scale_with_pixels():
    cfg = RunConfig(model=ModelConfig(name="resnet18"), epochs=2)
    same = estimates.estimate(cfg, [_finished(seconds=20.0, images=1000)])
    assert same.per_epoch == pytest.approx(0.02 * 1259)
    assert "1 finished run of resnet18 at 32 px here" in same.basis
    bigger = estimates.estimate(
        RunConfig(model=ModelConfig(name="resnet18"), data=DataConfig(image_size=64)),
        [_finished(seconds=20.0, images=1000)],
    )
    assert bigger.per_epoch == pytest.approx(4 * 0.02 * 1259)  # four times the pixels
    assert "scaled to 64 px" in bigger.basis


def test_runs_of_the_same_settings_here_give_their_whole_time():
    """A second click of the same experiment: the median whole time of the runs that finished
    here with its settings (the name, the seeds and the group do not count)."""
    cfg = RunConfig(name="mine", seed=3, epochs=5)
    ran = [(RunConfig(name="other", seed=s, epochs=5).to_dict(),
            {"seconds_per_epoch": 1.5, "run_seconds": whole, "epochs_done": 5,
             "data": "x: 1,259 train / 10 val / 10 test"})
           for s, whole in [(0, 12.0), (1, 14.0), (2, 30.0)]]  # fmt: skip
    est = estimates.estimate(cfg, ran)
    assert est.seconds == 14.0 and est.per_epoch == 1.5 and est.here
    assert "3 finished runs of these settings here" in est.text()
    longer = estimates.estimate(RunConfig(epochs=10), ran)  # other settings: scaled per image
    assert "of these settings" not in longer.basis and longer.here


def test_the_time_outside_the_epochs_is_learned_from_runs_here():
    """Start-up, the test and what is saved at the end: each run's whole time less its
    epochs, in place of the fixed start-up of the reference."""
    cfg = RunConfig(model=ModelConfig(name="resnet18"), epochs=2)
    ran = _finished(seconds=20.0, images=1259)
    ran[1].update(run_seconds=3 * 20.0 + 11.0, epochs_done=3)  # 11 s outside its 3 epochs
    est = estimates.estimate(cfg, [ran])
    assert est.seconds == pytest.approx(11.0 + 2 * 20.0)
    assert estimates.estimate(cfg).seconds == pytest.approx(  # nothing here: the reference
        estimates.STARTUP + 2 * estimates.REFERENCE[("classify", "resnet18")] * 1259
    )
    assert not estimates.estimate(cfg).here
    damaged = dict(ran[1], run_seconds="soon", epochs_done=True)
    assert estimates.measured_overheads([(ran[0], damaged)]) == {}


def test_the_training_images_asked_for_count():
    counts = RunConfig(data=DataConfig(name="fashion_mnist", class_counts=[100] * 10))
    assert estimates.train_images(counts) == 1000
    half = RunConfig(data=DataConfig(classes=["0", "1", "2", "3", "4"]))
    assert estimates.train_images(half) == round(1259 / 2)
    assert estimates.train_images(RunConfig(data=DataConfig(name="folder", path="/x"))) is None
    assert estimates.estimate(RunConfig(data=DataConfig(name="folder", path="/x"))) is None


def test_few_shot_counts_episodes_and_a_frozen_head_costs_milliseconds():
    cfg = FewShotConfig(epochs=4, episodes_per_epoch=50, val_episodes=10, test_episodes=100,
                        test_shots=[1, 5])  # fmt: skip
    few = estimates.estimate(cfg)
    assert few.per_epoch == pytest.approx(60 * estimates.FEWSHOT_EPISODE)
    test = 2 * 100 * estimates.FEWSHOT_TEST_EPISODE
    fixed = estimates.STARTUP + estimates.FEWSHOT_FIXED
    assert few.seconds == pytest.approx(fixed + 4 * few.per_epoch + test)
    head = estimates.estimate(TransferConfig(mode="frozen", epochs=100))
    assert head.per_epoch == estimates.FEATURES_EPOCH and "features computed once" in head.basis


def test_slow_runs_are_flagged_and_durations_read_well():
    long = estimates.estimate(RunConfig(model=ModelConfig(name="resnet50"), epochs=50))
    assert long.slow
    assert not estimates.estimate(RunConfig(epochs=12)).slow
    assert estimates.duration(42) == "about 42 s"
    assert estimates.duration(360) == "about 6 min"
    assert estimates.duration(7200) == "about 2.0 h"


def test_time_left_is_the_epochs_left_at_the_mean_so_far():
    assert estimates.remaining([10.0, 20.0], 2, 5) == pytest.approx(45.0)
    assert estimates.remaining([], 0, 5) is None
    assert estimates.remaining([10.0], 5, 5) is None


def test_a_finished_run_keeps_its_median_epoch_time(tiny_config, runs_dir):
    import contextlib
    import io

    from engine.execution import executor
    from engine.store import runs

    run_dir = runs.create_run(tiny_config(epochs=3), runs_dir)
    with contextlib.redirect_stdout(io.StringIO()):
        summary = executor.execute(run_dir)
    assert summary["seconds_per_epoch"] > 0
    learned = estimates.measured_costs([(runs.load_config(run_dir).to_dict(), summary)])
    assert list(learned) == [("classify", "small_cnn", 16)]
