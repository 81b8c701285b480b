"""Quick demos (engine.execution.quick): one click per experiment. Every demo's config is
valid and its page exists; a demo clicked twice starts one run; a demo started while another
run trains queues behind it and says so."""

from __future__ import annotations

import pytest

from engine.execution import launcher
from engine.execution.quick import PREFIX, QUICK, start_quick
from engine.experiments.presets import PRESET_KINDS
from engine.store import groups, liveness, runs
from tests.support.helpers import wait_until_ended
from tests.support.pages import APP


@pytest.mark.parametrize("key", list(QUICK))
def test_every_demo_is_a_valid_experiment_with_a_page(key):
    demo = QUICK[key]
    cfg = demo.config().validate()
    assert cfg.kind == demo.kind
    assert (APP / "views" / f"{demo.page}.py").is_file()
    rows = demo.configs()  # what a click starts: the estimate on its card adds these up
    if demo.preset:
        assert PRESET_KINDS[demo.preset] == demo.kind
        assert len(rows) >= 2 and all(r.kind == demo.kind for r in rows)
    else:
        assert len(rows) == 1 and rows[0].name == cfg.name
    assert 0 < demo.seconds <= 90  # "about a minute on 2 CPU cores", measured by the bench
    assert "seed 00" not in demo.course.lower()


def _stop(run_dirs):
    for run_dir in run_dirs:
        launcher.stop(run_dir)
    for run_dir in run_dirs:
        wait_until_ended(run_dir, 60)


def test_a_demo_clicked_twice_starts_one_run(runs_dir):
    first = start_quick("train", runs_dir)
    try:
        second = start_quick("train", runs_dir)
        assert second.already and second.run_dir == first.run_dir
        assert "already started" in second.message()
        assert len(runs.list_runs(runs_dir)) == 1
        assert runs.load_config(first.run_dir).name == PREFIX + "Training and embeddings"
    finally:
        _stop([first.run_dir])


def test_a_comparison_demo_clicked_twice_starts_one_group(runs_dir):
    first = start_quick("longtail", runs_dir)
    try:
        group = groups.load_group(first.group_id, runs_dir)
        assert group.name == QUICK["longtail"].name
        second = start_quick("longtail", runs_dir)
        assert second.already and second.group_id == first.group_id
        assert len(groups.list_groups(runs_dir)) == 1
    finally:
        _stop(group.run_dirs(runs_dir))


def test_a_demo_started_while_another_run_trains_queues_behind_it(
    runs_dir, tiny_config, engine_process
):
    other = runs.create_run(tiny_config(), runs_dir)
    runs.write_status(other, state="running", pid=engine_process.pid,
                      pid_start=liveness.process_start(engine_process.pid))  # fmt: skip
    started = start_quick("inside", runs_dir)
    try:
        assert started.queued_behind == [other.name]
        assert "queued behind 1 training run" in started.message()
        status = runs.read_status(started.run_dir)
        assert status["after"] == [other.name] and status["state"] == "queued"
    finally:
        engine_process.kill()
        engine_process.wait()
        _stop([started.run_dir])
