"""How much to trust a 2-D picture (engine.analysis.layout_quality): trustworthiness of an
identity layout is 1 and of a random one near 0.5; continuity likewise; kNN accuracy of well
separated classes is 1 and of shuffled labels near chance; bad input named; the CLI prints
the numbers per epoch."""

from __future__ import annotations

import numpy as np
import pytest

from engine.analysis.layout_quality import knn_accuracy, layout_quality


def _clusters(n=300, d=16, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = 10 * rng.standard_normal((classes, d))
    return centres[labels] + rng.standard_normal((n, d)), labels


def test_an_identity_layout_is_fully_trustworthy_and_continuous():
    rng = np.random.default_rng(1)
    xy = rng.standard_normal((200, 2))
    q = layout_quality(xy, xy.copy(), np.zeros(200, dtype=int))
    assert q.trustworthiness == pytest.approx(1.0) and q.continuity == pytest.approx(1.0)


def test_a_random_layout_is_near_one_half():
    features, labels = _clusters()
    layout = np.random.default_rng(2).standard_normal((len(features), 2))
    q = layout_quality(features, layout, labels)
    assert 0.4 < q.trustworthiness < 0.6 and 0.4 < q.continuity < 0.6


def test_knn_accuracy_separated_classes_and_shuffled_labels():
    features, labels = _clusters()
    assert knn_accuracy(features, labels) == 1.0
    shuffled = np.random.default_rng(3).permutation(labels)
    assert knn_accuracy(features, shuffled) < 0.55  # three classes: chance is a third


def test_large_snapshots_are_subsampled_and_said():
    features, labels = _clusters(n=2500)
    q = layout_quality(features, features[:, :2], labels, max_points=500)
    assert q.points == 500


def test_mismatched_and_tiny_inputs_are_named():
    with pytest.raises(ValueError, match="must be the same points"):
        layout_quality(np.zeros((5, 3)), np.zeros((4, 2)), np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="too few"):
        layout_quality(np.zeros((2, 3)), np.zeros((2, 2)), np.zeros(2, dtype=int))


@pytest.fixture
def finished_run_dir(runs_dir, tiny_config):
    """A real two-epoch digits run with a snapshot at each epoch, trained here."""
    import contextlib
    import io

    from engine.execution import executor
    from engine.store import runs

    run_dir = runs.create_run(tiny_config(snapshot_size=60), runs_dir)
    with contextlib.redirect_stdout(io.StringIO()):
        executor.execute(run_dir)
    return run_dir


def test_the_command_line_prints_them_per_epoch(finished_run_dir, capsys):
    from engine.cli.main import main

    assert main(["--runs-dir", str(finished_run_dir.parent), "project", finished_run_dir.name,
                 "--metrics"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "trustworthiness" in out and "continuity" in out and "kNN accuracy" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [int(r[0]) for r in rows] == [1, 2]  # both snapshot epochs
    assert all(0 <= float(r[1]) <= 1 and 0 <= float(r[2]) <= 1 for r in rows)
