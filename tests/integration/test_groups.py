"""Comparison groups: presets, creation all-or-nothing, runs one after another, stop, remove."""

import threading
from dataclasses import replace

import pytest
import torch
import torchvision

from engine.config import ConfigError
from engine.core.settings import REPO_ROOT
from engine.execution import comparisons, executor
from engine.experiments import presets
from engine.models.backbones import build_transfer_net
from engine.models.weights import WeightsError
from engine.store import groups, liveness, runs
from engine.store.layout import RunLayout
from tests.support.helpers import wait_until_ended


@pytest.fixture(autouse=True)
def _weight_cache_made(cache):
    """Every test here has a (created, empty) weight cache: see tests/support/fixtures.py."""


def _running_as(run_dir, proc):
    runs.write_status(
        run_dir, state="running", pid=proc.pid, pid_start=liveness.process_start(proc.pid)
    )


def _rows(preset, base, **kw):
    return [
        (label, cfg and (cfg.mode, cfg.weights, cfg.model.name), note)
        for label, cfg, note in presets.preset_configs(preset, base, **kw)
    ]


def _run_folders(runs_dir):
    return (
        sorted(p.name for p in runs_dir.iterdir() if p.name != ".groups")
        if runs_dir.exists()
        else []
    )


# --- presets ---------------------------------------------------------------------------------------


CONTROL = ("frozen", "none")  # the random-init frozen control: mode and weights


def _head_budget(cfg, base):
    """Frozen rows train their head to convergence (the cap, early stopping, one snapshot);
    every other row keeps the base's epochs and trains every one of them."""
    if cfg.mode == "frozen":
        assert cfg.epochs == max(presets.HEAD_EPOCH_CAP, base.epochs) == 100
        assert (cfg.patience, cfg.snapshot_epochs) == (presets.HEAD_PATIENCE, [1]) == (5, [1])
    else:
        assert (cfg.epochs, cfg.patience, cfg.snapshot_epochs) == (base.epochs, 0, None)


def test_finetune_vs_frozen_rows_differ_only_in_mode_and_weights(base):
    assert _rows("finetune-vs-frozen", base) == [
        ("resnet18: fine-tuned", ("finetune", "imagenet", "resnet18"), ""),
        ("resnet18: frozen", ("frozen", "imagenet", "resnet18"), ""),
        ("resnet18: from scratch", ("scratch", "imagenet", "resnet18"), ""),
        ("resnet18: random init, frozen (control)", (*CONTROL, "resnet18"), ""),
    ]
    rows = presets.preset_configs("finetune-vs-frozen", base, include_scratch=False)
    assert [label for label, _, _ in rows] == [
        "resnet18: fine-tuned", "resnet18: frozen", "resnet18: random init, frozen (control)",
    ]  # fmt: skip
    for label, cfg, _ in rows:
        assert cfg.label == label
        assert (cfg.data, cfg.optim, cfg.seed) == (base.data, base.optim, 3)
        _head_budget(cfg, base)
        cfg.validate()
    assert rows[2][1].backbone_weights == "none"  # the control starts from nothing
    assert base.mode == "finetune" and base.label == "" and base.epochs == 1  # base unchanged
    assert base.patience == 0 and base.snapshot_epochs is None


def test_frozen_rows_keep_a_longer_base_budget_and_only_cap_precomputed_heads(base):
    longer = replace(base, epochs=150)
    frozen = {label: cfg for label, cfg, _ in presets.preset_configs("finetune-vs-frozen", longer)}
    assert frozen["resnet18: frozen"].epochs == 150  # max(cap, base.epochs): never fewer
    assert frozen["resnet18: frozen"].patience == presets.HEAD_PATIENCE
    assert frozen["resnet18: fine-tuned"].epochs == 150
    # Augmented or not precomputed: every epoch costs a backbone pass, the base budget holds.
    augmented = replace(base, data=replace(base.data, augment=True))
    for changed in (augmented, replace(base, precompute_features=False)):
        for label, cfg, _ in presets.preset_configs("finetune-vs-frozen", changed):
            assert (cfg.epochs, cfg.patience, cfg.snapshot_epochs) == (1, 0, None), label


def test_the_nthu_preset_compares_two_backbones_fine_tuned_and_frozen(base):
    assert _rows("resnet34-vs-mobilenet", base) == [
        ("resnet34: fine-tuned", ("finetune", "imagenet", "resnet34"), ""),
        ("resnet34: frozen", ("frozen", "imagenet", "resnet34"), ""),
        ("resnet34: random init, frozen (control)", (*CONTROL, "resnet34"), ""),
        ("mobilenet_v3_large: fine-tuned", ("finetune", "imagenet", "mobilenet_v3_large"), ""),
        ("mobilenet_v3_large: frozen", ("frozen", "imagenet", "mobilenet_v3_large"), ""),
        ("mobilenet_v3_large: random init, frozen (control)",
         (*CONTROL, "mobilenet_v3_large"), ""),
    ]  # fmt: skip
    for label, cfg, _ in presets.preset_configs("resnet34-vs-mobilenet", base):
        assert cfg.label == label
        _head_budget(cfg, base)
    assert base.model.name == "resnet18"


def test_a_to_e_waits_for_a_self_supervised_backbone_in_rows_c_and_e(base, tmp_path):
    control = ("F: random init, frozen (control)", (*CONTROL, "resnet18"), "")
    rows = _rows("a-e", base)
    assert [r[0][0] for r in rows] == list("ABCDEF")
    assert rows[0][1] == ("scratch", "imagenet", "resnet18")
    assert rows[1][1] == ("finetune", "imagenet", "resnet18")
    assert rows[3][1] == ("frozen", "imagenet", "resnet18")
    for i in (2, 4):
        assert rows[i][1] is None and rows[i][2] == presets.SSL_WAITING
    assert rows[5] == control  # the control needs no weights: it is there from the start
    ssl = str(tmp_path / "byol.pt")
    rows = _rows("a-e", base, ssl_weights=ssl)
    assert rows[2] == ("C: self-supervised, fine-tuned", ("finetune", ssl, "resnet18"), "")
    assert rows[4] == ("E: self-supervised, frozen", ("frozen", ssl, "resnet18"), "")
    assert rows[5] == control
    for _, cfg, _ in presets.preset_configs("a-e", base, ssl_weights=ssl):
        _head_budget(cfg, base)


def test_unknown_preset_is_named(base):
    with pytest.raises(ConfigError, match="unknown preset 'a-z'; choose one of finetune-vs-frozen"):
        presets.preset_configs("a-z", base)


# --- creating a group: whole or not at all ---------------------------------------------------------


def test_a_to_e_group_makes_runs_for_rows_that_can_run(runs_dir, base, resnet18_cached):
    group = comparisons.create_group("a-e", base, runs_dir, name="my grid")
    assert [(r.label[0], bool(r.run_id), r.note) for r in group.rows] == [
        ("A", True, ""), ("B", True, ""), ("C", False, presets.SSL_WAITING),
        ("D", True, ""), ("E", False, presets.SSL_WAITING), ("F", True, ""),
    ]  # fmt: skip
    assert _run_folders(runs_dir) == sorted(r.run_id for r in group.rows if r.run_id)
    for row in group.rows:
        if row.run_id:
            cfg = runs.load_config(runs_dir / row.run_id)
            assert (cfg.group, cfg.label, cfg.name) == (group.group_id, row.label, row.label)
            assert runs.read_status(runs_dir / row.run_id)["state"] == "queued"
    again = groups.load_group(group.group_id, runs_dir)
    assert again == group and again.name == "my grid" and again.preset == "a-e"


def test_a_to_e_group_with_ssl_weights_fills_every_row(runs_dir, base, resnet18_cached, tmp_path):
    ssl = tmp_path / "byol.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), ssl)
    group = comparisons.create_group("a-e", base, runs_dir, ssl_weights=str(ssl))
    assert all(r.run_id and not r.note for r in group.rows)
    c, e = (runs.load_config(runs_dir / group.rows[i].run_id) for i in (2, 4))
    assert (c.mode, c.weights, e.mode, e.weights) == ("finetune", str(ssl), "frozen", str(ssl))


@pytest.mark.parametrize(
    "preset, kw", [("resnet34-vs-mobilenet", {}), ("a-e", {"ssl_weights": "/no/byol.pt"})]
)
def test_missing_weights_fail_before_anything_is_created(
    runs_dir, base, resnet18_cached, preset, kw
):
    with pytest.raises((WeightsError, ConfigError)) as raised:
        comparisons.create_group(preset, base, runs_dir, **kw)
    message = str(raised.value)
    if preset == "resnet34-vs-mobilenet":  # resnet34's file is not in the (empty) cache
        assert "python -m engine weights fetch resnet34" in message
    else:
        assert "'/no/byol.pt': no such weight file, run folder or run id" in message
    assert _run_folders(runs_dir) == []
    assert groups.list_groups(runs_dir) == []


def test_a_damaged_manifest_is_named_and_listed_as_its_error(runs_dir, base, resnet18_cached):
    damaged = comparisons.create_group("finetune-vs-frozen", base, runs_dir, include_scratch=False)
    good = comparisons.create_group("finetune-vs-frozen", base, runs_dir, include_scratch=False)
    path = groups.groups_dir(runs_dir) / f"{damaged.group_id}.json"
    path.write_text('{"group_id": "x", "rows": [')
    with pytest.raises(runs.RunError, match="is damaged") as raised:
        groups.load_group(damaged.group_id, runs_dir)
    assert str(path) in str(raised.value)
    found = groups.list_groups(runs_dir)
    assert len(found) == 2 and good in found
    errors = [g for g in found if isinstance(g, runs.RunError)]
    assert len(errors) == 1 and str(path) in str(errors[0])
    with pytest.raises(runs.RunError, match="no comparison group 'nope'"):
        groups.load_group("nope", runs_dir)


def test_list_groups_is_newest_first_even_within_one_second(runs_dir):
    # Ids share a one-second stamp and end in random hex, as run ids do: the order must come
    # from the creation time, not from the name.
    older = groups.Group("20260101-120000-a-e-ffff", "older", "a-e", created=1000.0)
    newer = groups.Group("20260101-120000-a-e-0000", "newer", "a-e", created=1000.5)
    for group in (older, newer):
        groups.save_group(group, runs_dir)
    assert [g.name for g in groups.list_groups(runs_dir)] == ["newer", "older"]


@pytest.mark.parametrize("given", ["home", "relative"])
def test_ssl_weights_accepted_at_creation_are_found_by_the_launched_run(
    runs_dir, base, resnet18_cached, tmp_path, monkeypatch, given
):
    """The check runs where the user is; a launched run starts in the repository root."""
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir(parents=True)
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    torch.manual_seed(2)
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, (home if given == "home" else work) / "byol.pt")
    weights = "~/byol.pt" if given == "home" else "byol.pt"
    group = comparisons.create_group("a-e", base, runs_dir, ssl_weights=weights)  # accepted
    monkeypatch.chdir(REPO_ROOT)  # where launcher.launch starts the run's process
    cfg = runs.load_config(runs_dir / group.rows[2].run_id)
    model, report = build_transfer_net("resnet18", 2, 16, cfg.backbone_weights)
    assert report.loaded == report.total
    assert torch.equal(model.body.conv1.weight, state["conv1.weight"])


# --- running a group one run after another --------------------------------------------------------


def test_a_sequential_group_trains_its_runs_one_after_another(runs_dir, base, resnet18_cached):
    # An lr too small to move the loss: the frozen rows' heads plateau at once and stop after
    # HEAD_PATIENCE epochs without improvement (not at the 100-epoch cap: seconds, not minutes).
    still = replace(base, optim=replace(base.optim, lr=1e-9))
    group = comparisons.create_group("finetune-vs-frozen", still, runs_dir, include_scratch=False)
    first, second, control = group.run_dirs(runs_dir)
    pids = comparisons.launch_group(group, runs_dir)
    assert len(pids) == 3
    assert runs.read_status(second)["after"] == [first.name]
    assert runs.read_status(control)["after"] == [first.name, second.name]
    done = [wait_until_ended(first), wait_until_ended(second), wait_until_ended(control)]
    for status, run_dir in zip(done, (first, second, control), strict=True):
        assert status["state"] == "finished", RunLayout(run_dir).log.read_text()
    assert done[1]["started"] >= done[0]["ended"]  # the second waited for the first
    assert done[2]["started"] >= done[1]["ended"]  # and the control for the second
    assert [s["summary"]["mode"] for s in done] == ["finetune", "frozen", "frozen"]
    summaries = [s["summary"] for s in done]
    assert (summaries[0]["epochs_done"], summaries[0]["early_stopped"]) == (1, False)  # base's
    for head in summaries[1:]:  # the best epoch, then HEAD_PATIENCE epochs without improvement
        assert (head["epochs_done"], head["early_stopped"]) == (1 + presets.HEAD_PATIENCE, True)
    assert comparisons.launch_group(group, runs_dir) == []  # nothing left to train


def test_stopping_a_group_stops_a_waiting_run_before_it_trains(
    runs_dir, base, resnet18_cached, run_process
):
    group = comparisons.create_group("finetune-vs-frozen", base, runs_dir, include_scratch=False)
    first, second, third = group.run_dirs(runs_dir)
    engine_process = run_process(first)
    _running_as(first, engine_process)  # the first run is training
    pids = comparisons.launch_group(group, runs_dir)
    assert len(pids) == 2  # the active one is left alone; the others queue behind it
    for waiting, after in ((second, [first.name]), (third, [first.name, second.name])):
        status = runs.read_status(waiting)
        assert status["state"] == "queued" and status["after"] == after
        assert runs.is_active(waiting)

    assert comparisons.stop_group(group, runs_dir) == 3
    for waiting in (second, third):
        status = wait_until_ended(waiting, timeout=60)
        assert status["state"] == "stopped" and "started" not in status
        layout = RunLayout(waiting)
        assert not layout.metrics.exists() and not layout.checkpoints.exists()
    assert engine_process.wait(timeout=30) != 0  # the stand-in got its SIGTERM too


def test_wait_for_turn_waits_while_an_earlier_run_is_active(runs_dir, base, engine_process):
    before = runs.create_run(base, runs_dir)
    run_dir = runs.create_run(base, runs_dir)
    runs.write_status(run_dir, after=[before.name])
    _running_as(before, engine_process)
    result = []
    waiter = threading.Thread(
        target=lambda: result.append(executor.wait_for_turn(run_dir, poll=0.01))
    )
    waiter.start()
    waiter.join(timeout=0.5)
    assert waiter.is_alive() and result == []  # still waiting
    engine_process.kill()
    engine_process.wait()
    waiter.join(timeout=30)
    assert result == [True]  # the earlier run ended (here: it died, and reads as failed)


def test_a_waiting_run_asked_to_stop_ends_stopped_without_training(runs_dir, base, engine_process):
    before = runs.create_run(base, runs_dir)
    run_dir = runs.create_run(base, runs_dir)
    _running_as(before, engine_process)
    runs.write_status(run_dir, after=[before.name], stop_requested=True)
    assert executor.wait_for_turn(run_dir) is False
    assert executor.execute(run_dir, launched=True) == {"stopped_before_start": True}
    status = runs.read_status(run_dir)
    assert status["state"] == "stopped" and "started" not in status
    assert not RunLayout(run_dir).metrics.exists()


# --- removing runs ---------------------------------------------------------------------------------


def test_remove_row_run_deletes_the_folder_and_keeps_the_row(runs_dir, base, resnet18_cached):
    group = comparisons.create_group("finetune-vs-frozen", base, runs_dir)
    gone = group.rows[1].run_id
    kept = [r.run_id for r in group.rows if r.run_id != gone]
    groups.remove_row_run(group, gone, runs_dir)
    assert not (runs_dir / gone).exists()
    assert _run_folders(runs_dir) == sorted(kept)
    for g in (group, groups.load_group(group.group_id, runs_dir)):
        assert [(r.run_id, r.note) for r in g.rows] == [
            (kept[0], ""),
            (None, "removed"),
            (kept[1], ""),
            (kept[2], ""),
        ]
        assert g.rows[1].label == "resnet18: frozen"


def test_an_active_run_is_not_deleted(runs_dir, base, resnet18_cached, engine_process):
    group = comparisons.create_group("finetune-vs-frozen", base, runs_dir, include_scratch=False)
    run_dir = group.run_dirs(runs_dir)[0]
    _running_as(run_dir, engine_process)
    with pytest.raises(runs.RunError, match="still active; stop it before removing it"):
        runs.delete_run(run_dir)
    with pytest.raises(runs.RunError, match="still active"):
        groups.remove_row_run(group, run_dir.name, runs_dir)
    assert (run_dir / "config.json").exists()
    assert groups.load_group(group.group_id, runs_dir).rows[0].run_id == run_dir.name
    engine_process.kill()
    engine_process.wait()
    runs.delete_run(run_dir)  # ended (it reads as failed): now it can go
    assert not run_dir.exists()
    with pytest.raises(runs.RunError, match="is not a run folder"):
        runs.delete_run(runs_dir / "nothing-here")


# --- found in review ------------------------------------------------------------------------------


def test_a_group_run_stopped_while_waiting_resumes_from_the_command_line(
    runs_dir, base, resnet18_cached, engine_process, capsys
):
    from engine.cli.main import main

    before = runs.create_run(base, runs_dir)
    run_dir = runs.create_run(base, runs_dir)
    _running_as(before, engine_process)
    runs.write_status(run_dir, after=[before.name], stop_requested=True)  # as launch + stop leave
    assert main(["--runs-dir", str(runs_dir), "resume", run_dir.name]) == 0  # a person, now
    status = runs.read_status(run_dir)
    assert status["state"] == "finished" and status["summary"]["epochs_done"] == 1
    assert status["after"] == [] and status["stop_requested"] is False
    assert "test acc" in capsys.readouterr().out


def test_running_a_run_that_another_process_has_queued_is_refused(runs_dir, base, engine_process):
    run_dir = runs.create_run(base, runs_dir)
    runs.write_status(
        run_dir, state="queued", pid=engine_process.pid,
        pid_start=liveness.process_start(engine_process.pid),
    )  # fmt: skip
    with pytest.raises(runs.RunError, match="queued in another process"):
        executor.execute(run_dir)


def test_a_weight_file_that_is_not_a_state_dict_is_refused_before_anything_is_made(
    runs_dir, base, resnet18_cached, tmp_path
):
    bogus = tmp_path / "bogus.pt"
    torch.save({"epoch": 3}, bogus)
    with pytest.raises(WeightsError, match="not a state dict"):
        comparisons.create_group("a-e", base, runs_dir, ssl_weights=str(bogus))
    other = tmp_path / "other.pt"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), other)
    with pytest.raises(WeightsError, match="fit the resnet18 backbone"):
        comparisons.create_group("a-e", base, runs_dir, ssl_weights=str(other))
    assert _run_folders(runs_dir) == [] and groups.list_groups(runs_dir) == []


def test_the_table_carries_a_failed_runs_error(runs_dir, base, resnet18_cached):
    group = comparisons.create_group("finetune-vs-frozen", base, runs_dir, include_scratch=False)
    runs.write_status(runs_dir / group.rows[0].run_id, state="failed", error="out of memory")
    table = groups.comparison_table(group, runs_dir)
    assert (table[0]["state"], table[0]["error"]) == ("failed", "out of memory")
    assert table[1]["error"] is None


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda d: d.update(created="yesterday"), "'created'"),
        (lambda d: d["rows"][0].update(run_id=7), "row 0"),
        (lambda d: d["rows"][0].update(run_id="../../etc"), "outside the runs folder"),
        (lambda d: d.update(rows="none"), "'rows'"),
    ],
)
def test_a_manifest_with_wrong_types_is_named_not_a_crash(
    runs_dir, base, resnet18_cached, change, problem
):
    import json

    group = comparisons.create_group("finetune-vs-frozen", base, runs_dir, include_scratch=False)
    path = groups.groups_dir(runs_dir) / f"{group.group_id}.json"
    d = json.loads(path.read_text())
    change(d)
    path.write_text(json.dumps(d))
    good = comparisons.create_group("finetune-vs-frozen", base, runs_dir, include_scratch=False)
    listed = groups.list_groups(runs_dir)
    assert [g.group_id for g in listed if isinstance(g, groups.Group)] == [good.group_id]
    (error,) = [g for g in listed if not isinstance(g, groups.Group)]
    assert str(path) in str(error) and problem in str(error)


def test_a_group_stored_under_the_presets_old_name_reads_as_the_new(runs_dir):
    group = groups.Group("g-old", "NTHU", "seed003", 1.0, [groups.Row("x", None)], True)
    groups.save_group(group, runs_dir)
    assert groups.load_group("g-old", runs_dir).preset == "resnet34-vs-mobilenet"
    assert "resnet34-vs-mobilenet" in presets.PRESETS and "seed003" not in presets.PRESETS
