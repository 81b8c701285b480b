"""Few-shot runs before training: the episodic task, the config, the CLI's flags and the
K x distance grid (which makes runs and trains none). Trained runs:
tests/integration/experiments/test_fewshot_run.py."""

from __future__ import annotations

import pytest
import torch

from engine.cli.common import config_from_flags
from engine.cli.main import build_parser, main
from engine.config import (
    ConfigError,
    DataConfig,
    FewShotConfig,
    ModelConfig,
    RunConfig,
    TransferConfig,
)
from engine.data.episodes import mean_and_ci95
from engine.execution import comparisons
from engine.experiments import presets
from engine.store import groups, runs
from engine.store.layout import RunLayout
from engine.train.tasks import Episodic
from tests.support.experiments import CPU, fewshot_config

# --- the task ----------------------------------------------------------------------------------


def test_the_episodic_task_scores_queries_and_a_ci_over_episodes():
    tally = Episodic().tally(CPU)
    y = torch.tensor([0, 0, 1, 1])
    right = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    for wrong in (0, 2, 3):  # episodes with 4/4, 2/4 and 1/4 queries right
        logits = right.clone()
        logits[:wrong] = logits[:wrong].flip(1)
        tally.add(logits, y, torch.tensor(0.5))
    r = tally.result()
    assert r.acc == pytest.approx(7 / 12) and r.score == r.acc
    assert r.metrics == {"acc_ci95": pytest.approx(mean_and_ci95([1.0, 0.5, 0.25])[1])}
    assert r.loss == pytest.approx(0.5)


# --- the config --------------------------------------------------------------------------------


def test_the_defaults_are_the_seed_s_settings():
    cfg = FewShotConfig().validate()
    assert (cfg.train_way, cfg.train_shot, cfg.train_query) == (10, 1, 15)
    assert (cfg.optim.name, cfg.optim.lr) == ("adam", 1e-4)
    assert (cfg.test_way, cfg.test_shots, cfg.test_query, cfg.test_episodes) == (
        5, [1, 5, 10], 15, 600,
    )  # fmt: skip
    assert (cfg.distance, cfg.mlp_head, cfg.model.name) == ("euclidean", True, "protonet")
    assert (cfg.data.name, cfg.data.image_size, cfg.meta_test_classes) == ("digits", 84, [])


def test_the_config_round_trips_through_json():
    cfg = fewshot_config(
        distance="cosine", mlp_head=False, test_shots=[1, 10], meta_test_classes=["0", "9"]
    )
    back = RunConfig.from_json(cfg.to_json())
    assert isinstance(back, FewShotConfig) and back == cfg


CONFIG_ERRORS = {
    "unknown distance": (
        {"distance": "manhattan"},
        "distance must be one of euclidean, cosine, parametric, got 'manhattan'",
    ),
    "no test shots": ({"test_shots": []}, "test_shots must be a non-empty list of shots >= 1"),
    "zero shots": ({"test_shots": [1, 0]}, "test_shots must be a non-empty list of shots >= 1"),
    "1-way training": ({"train_way": 1}, "train_way must be in [2, 10000], got 1"),
    "1-way test": ({"test_way": 1}, "test_way must be in [2, 10000], got 1"),
    "no queries": ({"train_query": 0}, "train_query must be in [1, 10000], got 0"),
    "no episodes": ({"episodes_per_epoch": 0}, "episodes_per_epoch must be in [1, 1e+06], got 0"),
    "no test episodes": ({"test_episodes": 0}, "test_episodes must be in [1, 1e+06], got 0"),
    "cifar10": (
        {"data": DataConfig(name="cifar10", path="/somewhere", image_size=32)},
        "few-shot data must be digits, folder or csv, got 'cifar10'",
    ),
    "too small for Conv-4": (
        {"data": DataConfig(name="digits", image_size=8)},
        "data.image_size must be >= 16 for Conv-4, got 8",
    ),
    "another model": ({"model": ModelConfig(name="small_cnn")}, "model.name must be 'protonet'"),
}


@pytest.mark.parametrize("changes, message", CONFIG_ERRORS.values(), ids=CONFIG_ERRORS.keys())
def test_config_errors_say_what_is_wrong(changes, message):
    with pytest.raises(ConfigError) as e:
        fewshot_config(**changes)
    assert message in str(e.value)


# --- the CLI -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--distance", "cosine"],
        ["--no-mlp-head"],
        ["--train-way", "5"],
        ["--train-shot", "5"],
        ["--test-shots", "1,5"],
        ["--test-episodes", "100"],
        ["--episodes-per-epoch", "10"],
        ["--kind", "transfer", "--distance", "parametric"],
    ],
)
def test_fewshot_flags_without_kind_fewshot_are_refused(args, runs_dir, capsys):
    assert main(["--runs-dir", str(runs_dir), "train", *args]) == 2
    assert "need --kind fewshot" in capsys.readouterr().err
    assert not runs_dir.exists()


def test_a_bad_fewshot_config_from_the_cli_is_refused_before_a_run_exists(runs_dir, capsys):
    argv = ["--runs-dir", str(runs_dir), "train", "--kind", "fewshot", "--train-way", "1"]
    assert main(argv) == 2
    assert "train_way must be in [2, 10000], got 1" in capsys.readouterr().err
    assert not runs_dir.exists()


def test_fewshot_flags_reach_the_config():
    a = build_parser().parse_args(
        ["train", "--kind", "fewshot", "--distance", "parametric", "--train-way", "5",
         "--train-shot", "5", "--test-shots", "10,5", "--test-episodes", "100",
         "--episodes-per-epoch", "20"]
    )  # fmt: skip
    cfg = config_from_flags(a)
    assert isinstance(cfg, FewShotConfig)
    assert (cfg.distance, cfg.mlp_head, cfg.train_way, cfg.train_shot) == ("parametric", True, 5, 5)
    assert (cfg.test_shots, cfg.test_episodes, cfg.episodes_per_epoch) == ([5, 10], 100, 20)
    assert (cfg.data.name, cfg.data.image_size, cfg.optim.lr) == ("digits", 84, 1e-4)


# --- the K x distance grid ---------------------------------------------------------------------


def test_the_fewshot_grid_makes_nine_runs_and_trains_none(runs_dir):
    base = FewShotConfig(data=DataConfig(name="digits", image_size=28), epochs=1, device="cpu")
    group = comparisons.create_group("fewshot-grid", base, runs_dir)
    assert presets.PRESET_KINDS["fewshot-grid"] == "fewshot"
    assert len(group.rows) == 9
    configs = [runs.load_config(d) for d in group.run_dirs(runs_dir)]
    assert all(isinstance(c, FewShotConfig) for c in configs)
    got = [(c.train_shot, c.distance, c.test_shots) for c in configs]
    assert sorted(got) == sorted(
        (k, d, [k]) for k in (1, 5, 10) for d in ("euclidean", "cosine", "parametric")
    )
    assert all(c.train_way == 5 and c.test_way == 5 for c in configs)  # 5-way K-shot both
    assert all((c.epochs, c.data, c.seed) == (1, base.data, base.seed) for c in configs)
    assert all(c.group == group.group_id for c in configs)
    assert [r.label for r in group.rows][:3] == ["1-shot · euclidean", "1-shot · cosine",
                                                  "1-shot · parametric"]  # fmt: skip
    for run_dir in group.run_dirs(runs_dir):
        assert runs.read_status(run_dir)["state"] == "queued"
        assert not RunLayout(run_dir).last_checkpoint.exists()
    table = groups.comparison_table(group, runs_dir)
    assert len(table) == 9 and all(r["test_ci95"] is None for r in table)


def test_the_fewshot_grid_refuses_other_kinds():
    with pytest.raises(ConfigError, match="compares fewshot runs, got a transfer config"):
        presets.preset_configs("fewshot-grid", TransferConfig())
