"""t-SNE that converges in front of the user (issue 24): the layout handed out while openTSNE
optimises, and the row links between two runs' snapshots."""

from __future__ import annotations

import numpy as np
import pytest

from engine.analysis.projections import TSNE_EVERY, project
from engine.inspect.snapshots import linked_rows


def _clusters(n: int = 150, d: int = 80, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    centres = rng.normal(size=(3, d)) * 6
    return (centres[labels] + rng.normal(size=(n, d))).astype(np.float32), labels


def test_tsne_hands_out_its_layout_as_it_optimises_and_ends_on_the_result():
    x, _ = _clusters()
    steps = []
    out = project(x, "tsne", {"n_iter": 100}, on_step=lambda i, n, xy: steps.append((i, n, xy)))
    iterations = [i for i, _, _ in steps]
    assert iterations == list(range(TSNE_EVERY, 350 + 1, TSNE_EVERY))  # 250 early + 100
    assert all(n == 350 and xy.shape == (150, 2) for _, n, xy in steps)
    # The last one is the result but for openTSNE's final step; the first one is far from it.
    assert np.abs(steps[-1][2] - out).max() < 0.02 * np.ptp(out)
    assert np.abs(steps[0][2] - out).max() > 0.2 * np.ptp(out)


def test_the_step_callback_does_not_change_the_layout_and_pca_umap_never_call_it():
    x, _ = _clusters(seed=1)
    params = {"n_iter": 50}
    np.testing.assert_array_equal(
        project(x, "tsne", params, seed=3),
        project(x, "tsne", params, seed=3, on_step=lambda *a: None),
    )
    called = []
    project(x, "pca", on_step=lambda *a: called.append(a))
    assert called == []


def test_project_run_says_which_epoch_a_partial_layout_belongs_to(tmp_path):
    from engine.core.atomic import save_npz
    from engine.inspect.projection_cache import project_run
    from engine.store.layout import RunLayout

    layout = RunLayout(tmp_path)
    for epoch in (1, 2):
        x, labels = _clusters(seed=epoch)
        save_npz(layout.embedding_file(epoch), features=x, labels=labels, predictions=labels,
                 sample_ids=np.arange(len(labels)))  # fmt: skip
    seen = []
    project_run(tmp_path, "tsne", {"n_iter": 50}, partial=lambda e, i, n, xy: seen.append((e, i)))
    assert [e for e, _ in seen] == [1] * 12 + [2] * 12  # (250 + 50) / 25 layouts per epoch
    seen.clear()
    project_run(tmp_path, "tsne", {"n_iter": 50}, partial=lambda e, i, n, xy: seen.append((e, i)))
    assert seen == []  # cached: nothing to watch


def test_linked_rows_find_each_image_in_the_other_snapshot():
    data = {"name": "fashion_mnist", "split_seed": 0}
    ids_a, ids_b = np.array([10, 30, 20, 40]), np.array([40, 10, 20, 30])
    to_b = linked_rows(data, ids_a, data, ids_b)
    assert (ids_b[to_b] == ids_a).all()
    assert linked_rows(data, ids_a, {**data, "image_size": 224}, ids_b).tolist() == to_b.tolist()


@pytest.mark.parametrize(
    ("data_b", "ids_b", "said"),
    [
        ({"name": "fashion_mnist", "split_seed": 1}, [40, 10, 20, 30], "split_seed: 0 vs 1"),
        ({"name": "mnist", "split_seed": 0}, [40, 10, 20, 30], "different data"),
        ({"name": "fashion_mnist", "split_seed": 0}, [40, 10, 20], "4 and 3 points"),
        ({"name": "fashion_mnist", "split_seed": 0}, [40, 10, 20, 31], "1 of the first not in"),
        ({"name": "fashion_mnist", "split_seed": 0}, [], "4 and 0 points"),
        ({"name": "fashion_mnist", "split_seed": 0}, [40, 10, 10, 30], "more than once"),
    ],
)
def test_snapshots_that_cannot_be_linked_say_why(data_b, ids_b, said):
    data = {"name": "fashion_mnist", "split_seed": 0}
    with pytest.raises(ValueError, match="cannot be linked|different data|more than once") as e:
        linked_rows(data, np.array([10, 30, 20, 40]), data_b, np.array(ids_b, dtype=int))
    assert said in str(e.value)
