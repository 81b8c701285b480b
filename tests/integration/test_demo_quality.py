"""Slow: the default demo config, trained in full, reaches the accuracy the Home page promises;
the ResNets train through the same path. Run with `make test-slow`."""

from __future__ import annotations

import numpy as np
import pytest

from engine.config import ModelConfig, RunConfig
from engine.execution import executor
from engine.execution.quick import demo_config
from engine.store import runs
from engine.store.layout import RunLayout

pytestmark = pytest.mark.slow


def test_the_default_demo_reaches_97_percent_test_accuracy(runs_dir):
    cfg = demo_config()  # exactly what "Start the demo" trains
    run_dir = runs.create_run(cfg, runs_dir)
    summary = executor.execute(run_dir)
    assert summary["test_acc"] >= 0.97, summary
    assert RunLayout(run_dir).embedding_epochs() == cfg.snapshot_schedule()


def test_resnet18_for_32x32_trains_and_snapshots_512_d_features(runs_dir):
    # Three epochs: after the first, at the full learning rate, BatchNorm's running statistics
    # still lag the weights (validation ~20% while training accuracy is ~75%).
    cfg = RunConfig(model=ModelConfig(name="resnet18"), epochs=3, batch_size=64)
    run_dir = runs.create_run(cfg, runs_dir)
    summary = executor.execute(run_dir)
    emb = np.load(RunLayout(run_dir).embedding_file(3))
    assert emb["features"].shape[1] == 512
    assert summary["test_acc"] > 0.9, summary
