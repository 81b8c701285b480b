"""Comparison groups with repeats (N runs per row, one per seed), the random-init frozen control
and early stopping on the validation loss (Trainer.patience; the frozen rows' heads)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from torch import nn

from engine.cli.main import main
from engine.config import ConfigError
from engine.config.base import MAX_SEED
from engine.execution import comparisons, executor
from engine.experiments import presets
from engine.store import groups, runs
from engine.store.layout import RunLayout
from engine.store.outcomes import read_outcomes
from engine.train import load_checkpoint, read_events

LABELS = ["resnet18: fine-tuned", "resnet18: frozen", "resnet18: random init, frozen (control)"]


@pytest.fixture(autouse=True)
def _weight_cache_made(cache):
    """Every test here has a (created, empty) weight cache: see tests/support/fixtures.py."""


def _run_folders(runs_dir):
    return (
        sorted(p.name for p in runs_dir.iterdir() if p.name != ".groups")
        if runs_dir.exists()
        else []
    )


def _manifest(group, runs_dir):
    return groups.groups_dir(runs_dir) / f"{group.group_id}.json"


def _group(runs_dir, base, repeats=3):
    """finetune-vs-frozen without the scratch row: fine-tuned, frozen, the control."""
    return comparisons.create_group(
        "finetune-vs-frozen", base, runs_dir, include_scratch=False, repeats=repeats
    )


def _still(base):
    """The base with an lr too small to move the loss: a frozen head plateaus at once, and
    stops after presets.HEAD_PATIENCE epochs (not at the 100-epoch cap)."""
    return replace(base, optim=replace(base.optim, lr=1e-9))


# --- repeats: N runs per row --------------------------------------------------------------------


def test_repeats_make_one_run_per_seed_on_the_same_data(runs_dir, base, resnet18_cached):
    group = _group(runs_dir, base, repeats=3)
    assert [r.label for r in group.rows] == LABELS and group.repeats == 3
    every = [rid for row in group.rows for rid in row.run_ids]
    assert len(every) == len(set(every)) == 9
    assert _run_folders(runs_dir) == sorted(every)
    for row in group.rows:
        assert row.run_ids == [row.run_id, *row.repeats] and len(row.repeats) == 2
        assert row.note == ""
        configs = [runs.load_config(runs_dir / rid) for rid in row.run_ids]
        assert [c.seed for c in configs] == [base.seed, base.seed + 1, base.seed + 2] == [3, 4, 5]
        assert [c.name for c in configs] == [f"{row.label} · seed {s}" for s in (3, 4, 5)]
        for cfg in configs:
            assert (cfg.group, cfg.label) == (group.group_id, row.label)
            assert cfg.data == configs[0].data  # the same data and split for every seed
            assert cfg.data.split_seed == base.data.split_seed
            same = {k: v for k, v in cfg.to_dict().items() if k not in ("seed", "name")}
            assert same == {k: v for k, v in configs[0].to_dict().items()
                            if k not in ("seed", "name")}  # fmt: skip
        for rid in row.run_ids:
            assert runs.read_status(runs_dir / rid)["state"] == "queued"
    # the frozen rows' head budget holds for every seed
    control = runs.load_config(runs_dir / group.rows[2].repeats[1])
    assert (control.mode, control.weights, control.epochs, control.patience) == (
        "frozen", "none", presets.HEAD_EPOCH_CAP, presets.HEAD_PATIENCE,
    )  # fmt: skip
    saved = json.loads(_manifest(group, runs_dir).read_text())
    assert [r["repeats"] for r in saved["rows"]] == [r.repeats for r in group.rows]
    again = groups.load_group(group.group_id, runs_dir)
    assert again == group
    assert [r.run_ids for r in again.rows] == [r.run_ids for r in group.rows]
    assert again.repeats == 3


def test_one_repeat_is_one_run_per_row_named_by_its_label(runs_dir, base, resnet18_cached):
    group = _group(runs_dir, base, repeats=1)
    assert all(r.repeats == [] and r.run_ids == [r.run_id] for r in group.rows)
    assert group.repeats == 1 and len(_run_folders(runs_dir)) == 3
    for row in group.rows:
        assert runs.load_config(runs_dir / row.run_id).name == row.label  # no " · seed" suffix


def test_run_dirs_go_seed_by_seed_and_a_sequential_group_queues_in_that_order(
    runs_dir, base, resnet18_cached, monkeypatch
):
    group = _group(runs_dir, base, repeats=2)
    want = [row.run_ids[i] for i in range(2) for row in group.rows]
    assert [d.name for d in group.run_dirs(runs_dir)] == want
    assert all(d.parent == runs_dir for d in group.run_dirs(runs_dir))
    launched = []
    monkeypatch.setattr(comparisons.launcher, "launch",
                        lambda run_dir, **kw: launched.append((run_dir.name, kw["after"])) or 1)  # fmt: skip
    assert comparisons.launch_group(group, runs_dir) == [1] * 6
    # every run waits for all before it: the first seed of every row, then the second seeds
    assert launched == [(rid, want[:i]) for i, rid in enumerate(want)]


def test_run_dirs_with_uneven_rows_and_placeholders(tmp_path):
    group = groups.Group("g", "g", "a-e", 0.0, rows=[
        groups.Row("A", "a0", "", ["a1", "a2"]),
        groups.Row("C", None, presets.SSL_WAITING),
        groups.Row("D", "d0", "", ["d1"]),
        groups.Row("F", "f0"),
    ])  # fmt: skip
    assert [d.name for d in group.run_dirs(tmp_path)] == ["a0", "d0", "f0", "a1", "d1", "a2"]
    assert group.repeats == 3
    assert groups.Group("e", "e", "a-e", 0.0).run_dirs(tmp_path) == []


def test_a_manifest_written_before_repeats_still_loads(runs_dir, base, resnet18_cached):
    group = _group(runs_dir, base, repeats=1)
    path = _manifest(group, runs_dir)
    d = json.loads(path.read_text())
    for row in d["rows"]:
        del row["repeats"]
    path.write_text(json.dumps(d))
    again = groups.load_group(group.group_id, runs_dir)
    assert again == group and all(r.repeats == [] for r in again.rows)
    assert [d.name for d in again.run_dirs(runs_dir)] == [r.run_id for r in group.rows]
    assert groups.list_groups(runs_dir) == [again]
    table = groups.comparison_table(again, runs_dir)
    assert [e["seeds"] for e in table] == [[None]] * 3


@pytest.mark.parametrize("repeats", [0, -1, 21, True, False, 2.5, "3", None])
def test_repeats_out_of_range_are_refused_before_anything_is_made(
    runs_dir, base, resnet18_cached, repeats
):
    with pytest.raises(ConfigError, match=r"repeats must be a whole number in \[1, 20\]"):
        _group(runs_dir, base, repeats=repeats)
    assert not runs_dir.exists() or _run_folders(runs_dir) == []
    assert not groups.groups_dir(runs_dir).exists()
    assert groups.list_groups(runs_dir) == []


def test_a_last_seed_beyond_the_seed_range_is_refused_before_anything_is_made(
    runs_dir, base, resnet18_cached
):
    top = replace(base, seed=MAX_SEED)
    with pytest.raises(ConfigError, match="seed"):
        _group(runs_dir, top, repeats=2)
    assert _run_folders(runs_dir) == [] and groups.list_groups(runs_dir) == []
    assert len(_group(runs_dir, top, repeats=1).rows) == 3  # one seed: MAX_SEED itself is fine


def test_the_most_repeats_are_made(runs_dir, base, resnet18_cached):
    group = comparisons.create_group(
        "finetune-vs-frozen", base, runs_dir, include_scratch=False, repeats=groups.MAX_REPEATS
    )
    assert group.repeats == 20 and len(_run_folders(runs_dir)) == 3 * 20
    assert groups.load_group(group.group_id, runs_dir) == group
    seeds = [runs.load_config(d).seed for d in group.run_dirs(runs_dir)[::3]]
    assert seeds == list(range(3, 23))


@pytest.mark.parametrize(
    "repeats, problem",
    [
        ("x", "'repeats' that are not a list of run ids"),
        ({"a": 1}, "'repeats' that are not a list of run ids"),
        ([7], "'repeats' that are not a list of run ids"),
        ([None], "'repeats' that are not a list of run ids"),
        (["../../etc"], "names a run outside the runs folder"),
        ([".."], "names a run outside the runs folder"),
        ([f"r{i}" for i in range(20)], "more than 20 repeats"),
    ],
)
def test_damaged_repeats_in_a_manifest_are_named(runs_dir, base, resnet18_cached, repeats, problem):
    group = _group(runs_dir, base, repeats=2)
    path = _manifest(group, runs_dir)
    d = json.loads(path.read_text())
    d["rows"][1]["repeats"] = repeats
    path.write_text(json.dumps(d))
    with pytest.raises(runs.RunError) as raised:
        groups.load_group(group.group_id, runs_dir)
    message = str(raised.value)
    assert str(path) in message and "is damaged" in message
    assert "row 1 (resnet18: frozen)" in message and problem in message
    (listed,) = groups.list_groups(runs_dir)
    assert isinstance(listed, runs.RunError) and str(path) in str(listed)


def test_removing_a_rows_first_run_promotes_the_next_seed(runs_dir, base, resnet18_cached):
    group = _group(runs_dir, base, repeats=3)
    row = group.rows[1]
    first, second, third = row.run_ids
    others = [r.run_ids for r in group.rows if r is not row]

    def check(run_id, repeats, note=""):
        for g in (group, groups.load_group(group.group_id, runs_dir)):
            assert (g.rows[1].run_id, g.rows[1].repeats, g.rows[1].note) == (run_id, repeats, note)
            assert g.rows[1].label == "resnet18: frozen"
            assert [r.run_ids for i, r in enumerate(g.rows) if i != 1] == others

    groups.remove_row_run(group, first, runs_dir)
    assert not (runs_dir / first).exists() and (runs_dir / second).is_dir()
    check(second, [third])  # seed 4 is the row's run now
    assert runs.load_config(runs_dir / group.rows[1].run_id).seed == 4
    groups.remove_row_run(group, third, runs_dir)  # a further seed: just gone
    assert not (runs_dir / third).exists()
    check(second, [])
    groups.remove_row_run(group, second, runs_dir)  # the last one: the row says removed
    check(None, [], "removed")
    assert _run_folders(runs_dir) == sorted(rid for ids in others for rid in ids)
    assert [d.name for d in group.run_dirs(runs_dir)] == [
        others[0][0], others[1][0], others[0][1], others[1][1], others[0][2], others[1][2],
    ]  # fmt: skip


def test_the_table_carries_each_seeds_test_score(runs_dir, base, resnet18_cached):
    group = _group(runs_dir, base, repeats=3)
    a, b, c = group.rows[0].run_ids
    runs.write_status(runs_dir / a, state="finished", summary={"test_acc": 0.75})
    runs.write_status(runs_dir / c, state="finished", summary={"test_acc": 1})
    flag = {"test_acc": True}  # a flag is not a score
    runs.write_status(runs_dir / group.rows[1].run_id, state="finished", summary=flag)
    table = groups.comparison_table(group, runs_dir)
    assert table[0]["seeds"] == [0.75, None, 1.0]
    assert table[1]["seeds"] == [None, None, None]
    assert table[2]["seeds"] == [None, None, None]
    groups.remove_row_run(group, b, runs_dir)
    assert groups.comparison_table(group, runs_dir)[0]["seeds"] == [0.75, 1.0]


def test_seeds_of_a_row_train_differently_and_test_on_the_same_items(
    runs_dir, base, resnet18_cached
):
    group = _group(runs_dir, _still(base), repeats=2)
    control = group.rows[2]
    summaries = [executor.execute(runs_dir / rid) for rid in control.run_ids]
    outcomes = [read_outcomes(runs_dir / rid) for rid in control.run_ids]
    assert all(o is not None and o.kind == "accuracy" and len(o) > 0 for o in outcomes)
    assert outcomes[0].same_items(outcomes[1])  # the same split whatever the seed
    heads = [load_checkpoint(RunLayout(runs_dir / rid).best_checkpoint)["model"]
             for rid in control.run_ids]  # fmt: skip
    assert not torch.equal(heads[0]["head.weight"], heads[1]["head.weight"])  # seeds differ
    (entry,) = [e for e in groups.comparison_table(group, runs_dir) if e["label"] == LABELS[2]]
    assert entry["seeds"] == [pytest.approx(s["test_acc"]) for s in summaries]


# --- the command line --------------------------------------------------------------------------


def _compare_argv(runs_dir, pets, *extra):
    return ["--runs-dir", str(runs_dir), "compare", "--preset", "finetune-vs-frozen",
            "--model", "resnet18", "--dataset", "folder", "--data-path", str(pets),
            "--image-size", "16", "--epochs", "1", "--no-scratch", "--background",
            *extra]  # fmt: skip


@pytest.mark.parametrize("value", ["0", "-1", "21", "two", "2.5"])
def test_compare_refuses_repeats_out_of_range_and_makes_nothing(
    runs_dir, pets, resnet18_cached, capsys, value
):
    with pytest.raises(SystemExit) as raised:
        main(_compare_argv(runs_dir, pets, "--repeats", value))
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert "--repeats" in err and value in err
    assert "must be 1..20" in err or "must be a whole number" in err
    assert not runs_dir.exists() or _run_folders(runs_dir) == []
    assert groups.list_groups(runs_dir) == []


def test_compare_with_repeats_makes_a_run_per_row_and_seed(
    runs_dir, pets, resnet18_cached, capsys, monkeypatch
):
    launched = []
    monkeypatch.setattr(
        comparisons, "launch_group", lambda g, d=None, after=(): launched.append(g) or []
    )
    assert main(_compare_argv(runs_dir, pets, "--repeats", "2", "--seed", "7")) == 0
    (group,) = launched
    assert f"group {group.group_id}: 6 runs" in capsys.readouterr().out
    assert [r.label for r in group.rows] == LABELS
    for row in group.rows:
        assert [runs.load_config(runs_dir / rid).seed for rid in row.run_ids] == [7, 8]
    assert groups.load_group(group.group_id, runs_dir) == group


# --- early stopping in a preset's frozen rows ------------------------------------------------------


def test_a_frozen_rows_head_stops_when_its_validation_loss_plateaus(runs_dir, base):
    (_, cfg, _), *_ = [r for r in presets.preset_configs("finetune-vs-frozen", _still(base))
                       if r[0].endswith("(control)")]  # fmt: skip
    assert (cfg.mode, cfg.weights, cfg.epochs, cfg.patience, cfg.snapshot_epochs) == (
        "frozen", "none", presets.HEAD_EPOCH_CAP, presets.HEAD_PATIENCE, [1],
    )  # fmt: skip
    run_dir = runs.create_run(cfg, runs_dir)
    summary = executor.execute(run_dir)
    assert summary["early_stopped"] is True
    assert summary["epochs_done"] == 1 + presets.HEAD_PATIENCE < presets.HEAD_EPOCH_CAP
    assert runs.read_status(run_dir)["summary"]["early_stopped"] is True
    layout = RunLayout(run_dir)
    stops = [e for e in read_events(layout.metrics)[0] if e["name"] == "early_stop"]
    assert [e["epoch"] for e in stops] == [1 + presets.HEAD_PATIENCE]
    assert load_checkpoint(layout.last_checkpoint)["progress"]["converged"] is True
    assert read_outcomes(run_dir) is not None  # the test ran on best.pt


class _Batches:
    def batches(self, epoch):
        g = torch.Generator().manual_seed(0)
        for _ in range(3):
            yield torch.randn(16, 3, 32, 32, generator=g), None, None


def test_the_random_control_s_batch_norm_learns_the_data_s_statistics_first():
    from engine.experiments.transfer import calibrate_batch_norm
    from engine.models.backbones import build_transfer_net

    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    model, _ = build_transfer_net("efficientnet_lite0", 3, 32, "none")
    model.freeze_backbone()
    with torch.no_grad():
        dead = model.body(x).abs().mean().item()
    assert dead < 1e-6  # PyTorch's default statistics: the features vanish block by block
    assert calibrate_batch_norm(model.body, _Batches()) == 48
    assert not model.body.training  # still frozen, in eval mode
    with torch.no_grad():
        alive = model.body(x)
    assert alive.abs().mean().item() > 1e-2 and alive.std(0).mean().item() > 1e-2
    assert calibrate_batch_norm(nn.Linear(2, 2), _Batches()) == 0  # nothing to calibrate
