"""A finished run's test score carries its 95% interval over the test items, in its summary,
in the one-line summary and through status.json's checks (which a new summary entry must
pass, or the run would read as damaged)."""

from __future__ import annotations

import pytest
import torch

from engine.execution import executor
from engine.experiments.ssl import versus_random_init
from engine.ssl.monitor import KnnProbe
from engine.store import runs
from engine.store.status import summary_value_problem
from engine.store.summary import summary_line


def test_a_finished_run_s_interval_contains_its_accuracy_and_reads_back_clean(
    tiny_config, runs_dir
):
    run_dir = runs.create_run(tiny_config(epochs=1).validate(), runs_dir)
    executor.execute(run_dir)
    status = runs.read_status(run_dir)
    assert status["state"] == "finished", status.get("error")
    summary = status["summary"]
    iv = summary["test_interval"]
    assert iv["low"] <= summary["test_acc"] <= iv["high"] and iv["high"] - iv["low"] > 0
    assert iv["method"].startswith("Wilson") and iv["n"] > 0
    assert f"[{iv['low']:.4f}, {iv['high']:.4f}]" in summary_line(summary)


@pytest.mark.parametrize("value, problem", [
    ({"low": 0.1, "high": 0.2, "method": "Wilson"}, None),
    (None, None),  # too few test items for an interval
    ({"low": "0.1", "high": 0.2}, "has a non-numeric low"),
    ([0.1, 0.2], "is not an object"),
])  # fmt: skip
def test_the_interval_entry_is_checked_like_every_summary_value(value, problem):
    assert summary_value_problem("test_interval", value) == problem


def test_byol_s_comparison_with_random_init_passes_the_status_checks():
    labels = torch.zeros(20, dtype=torch.long)
    probe = KnnProbe(torch.zeros(20, 2), labels, torch.zeros(20, dtype=torch.long))
    other = KnnProbe(torch.zeros(20, 2), labels, torch.ones(20, dtype=torch.long))
    value = versus_random_init(probe, other)
    assert summary_value_problem("test_knn_vs_random_init", value) is None
    value["ci95"] = [0.1]
    assert "ci95" in summary_value_problem("test_knn_vs_random_init", value)
