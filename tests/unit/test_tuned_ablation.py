"""The ablation with a tuned learning rate, BYOL against its random-init backbone, and the
statistics in the offline report: each compares what it says it compares."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
import torch

from engine.analysis.comparison import RowStats, is_tuned, tuned_choice
from engine.config import ConfigError, RunConfig, TransferConfig
from engine.execution import executor
from engine.experiments import presets
from engine.experiments.ssl import versus_random_init
from engine.sharing.report import group_report
from engine.ssl.monitor import KnnProbe
from engine.store import runs
from engine.store.groups import Group, Row, save_group
from engine.store.outcomes import read_outcomes


def test_tuning_runs_each_optimiser_over_its_own_grid_with_momentum():
    rows = presets.preset_configs("ablation", RunConfig(epochs=12), tune_lr=True)
    assert len(rows) == 24
    by_opt = {}
    for label, cfg, _ in rows:
        assert label.endswith(f" · lr {cfg.optim.lr:g}") and cfg.optim.momentum == 0.9
        by_opt.setdefault(cfg.optim.name, set()).add(cfg.optim.lr)
        cfg.validate()
    assert by_opt == {name: set(grid) for name, grid in presets.LR_GRID.items()}
    plain = presets.preset_configs("ablation", RunConfig(epochs=12))
    assert {label.split(" · lr ")[0] for label, _, _ in rows} == {label for label, _, _ in plain}


def test_tuning_is_refused_for_another_preset():
    with pytest.raises(ConfigError, match="tune_lr.*'ablation'"):
        presets.preset_configs("finetune-vs-frozen", TransferConfig(), tune_lr=True)


def _row(label, val, test):
    return RowStats(label, "accuracy", values=[test], val_values=[val], seeds=[0])


def test_the_rate_is_chosen_on_validation_never_on_test():
    rows = [_row("SGD · aug · lr 0.1", val=0.80, test=0.99),  # best test, worse validation
            _row("SGD · aug · lr 0.01", val=0.90, test=0.70),
            _row("Adam · aug · lr 0.001", val=0.85, test=0.85),
            _row("Adam · aug · lr 0.0003", val=0.84, test=0.95)]  # fmt: skip
    assert is_tuned(rows) and not is_tuned([_row("plain", 0.5, 0.5)])
    chosen = tuned_choice(rows)
    assert [r.label for r in chosen] == ["SGD · aug · lr 0.01", "Adam · aug · lr 0.001"]


def _probe(correct: list[bool]) -> KnnProbe:
    labels = torch.zeros(len(correct), dtype=torch.long)
    predictions = torch.tensor([0 if c else 1 for c in correct])
    return KnnProbe(torch.zeros(len(correct), 2), labels, predictions)


def test_byol_against_random_init_is_a_paired_test_on_the_same_images():
    n = 200
    better = _probe([True] * 190 + [False] * 10)
    worse = _probe([True] * 150 + [False] * 50)
    v = versus_random_init(better, worse)
    assert v["verdict"] == "differs" and v["p"] < 1e-6 and v["difference"] == pytest.approx(0.2)
    assert v["ci95"][0] < 0.95 < v["ci95"][1] and v["random_init_ci95"][0] < 0.75 < v[
        "random_init_ci95"][1]  # fmt: skip
    same = versus_random_init(better, _probe([True] * 190 + [False] * 10))
    assert same["verdict"] == "within noise" and same["p"] == 1.0
    # Two images apart out of 200: the control of a difference the data cannot tell.
    near = versus_random_init(_probe([True] * 152 + [False] * 48), worse)
    assert near["verdict"] == "within noise" and near["detail"].startswith("2 images")
    assert n == len(better.labels)


def test_the_report_carries_each_row_s_interval_and_the_pair_s_verdict(tiny_config, runs_dir):
    made = []
    for lr in (1e-6, 3e-3):  # a learning rate that cannot learn, and one that can
        cfg = tiny_config(epochs=2)
        cfg.optim.lr = lr
        run_dir = runs.create_run(cfg.validate(), runs_dir)
        executor.execute(run_dir)
        made.append(run_dir)
    g = Group("g-stats", "two rates", "ablation", time.time(),
              [Row("frozen in place", made[0].name), Row("learns", made[1].name)])  # fmt: skip
    save_group(g, runs_dir)
    page = group_report(g, runs_dir)
    assert "Test accuracy, with 95% intervals" in page
    for run_dir in made:
        o = read_outcomes(run_dir)
        acc = float(np.mean(o.correct))
        assert acc == pytest.approx(runs.read_status(run_dir)["summary"]["test_acc"])
        assert f"{acc:.2%} [" in page and "Wilson" in page
    assert re.search(r"frozen in place vs learns</td><td>(differs|within noise) \(p", page)
