"""Long-tailed training (seed 004, task C): the exponential profile, a long-tailed training
split with balanced validation and test, Balanced Softmax and class-weighted cross-entropy,
the long-tail preset, and the report the page draws (many / medium / few, drift)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.analysis.long_tail import long_tail_report, shot_groups
from engine.cli.common import config_from_flags
from engine.cli.main import main
from engine.config import ConfigError, DataConfig, FewShotConfig, RunConfig, SegmentConfig
from engine.data import DataError, ImageSet, Splits, load_dataset, long_tail_counts
from engine.execution import comparisons, executor
from engine.experiments import presets
from engine.store import runs
from engine.train.losses import balanced_softmax_loss, classification_loss


def test_the_exponential_profile():
    counts = long_tail_counts([100] * 10, 50)
    assert counts[0] == 100 and counts[-1] == 2
    assert counts == sorted(counts, reverse=True)
    assert counts[5] == int(100 * 50 ** (-5 / 9))
    assert long_tail_counts([100, 90, 80], 1) == [100, 90, 80]  # capped at what each class has
    assert long_tail_counts([10, 10], 1000) == [10, 1]  # at least one image


def _splits(per_class: int = 20, classes: int = 3) -> Splits:
    n = per_class * classes
    labels = torch.arange(n) % classes
    part = lambda off: ImageSet(  # noqa: E731
        torch.zeros(n, 3, 4, 4, dtype=torch.uint8), labels.clone(), torch.arange(off, off + n)
    )
    return Splits(part(0), part(n), part(2 * n), [f"c{i}" for i in range(classes)], "toy")


def test_a_long_tailed_split_cuts_only_the_training_images():
    splits = _splits()
    lt = splits.long_tailed([20, 7, 2], seed=1, how="test")
    assert lt.train_counts() == [20, 7, 2]
    assert len(lt.val) == len(splits.val) and len(lt.test) == len(splits.test)
    assert set(lt.train.ids.tolist()) <= set(splits.train.ids.tolist())
    again = splits.long_tailed([20, 7, 2], seed=1)
    assert torch.equal(again.train.ids, lt.train.ids)  # seeded: the same images
    other = splits.long_tailed([20, 7, 2], seed=2)
    assert not torch.equal(other.train.ids, lt.train.ids)
    assert "long-tailed training split (test: 20, 7, 2)" in lt.source


def test_bad_class_counts_are_named():
    with pytest.raises(DataError, match=r"c1 \(30 asked, 20 there\)"):
        _splits().long_tailed([20, 30, 2], seed=0)
    with pytest.raises(DataError, match="gives 2 counts for 3 classes"):
        _splits().long_tailed([20, 3], seed=0)


def test_the_digits_with_imbalance_ratio_50():
    full = load_dataset(DataConfig(image_size=8))
    lt = load_dataset(DataConfig(image_size=8, imbalance_ratio=50))
    assert lt.train_counts() == long_tail_counts(full.train_counts(), 50)
    assert lt.train_counts()[-1] == 2  # 124 / 50, rounded down
    assert torch.equal(lt.val.ids, full.val.ids) and torch.equal(lt.test.ids, full.test.ids)
    given = load_dataset(DataConfig(image_size=8, class_counts=[5] * 10))
    assert given.train_counts() == [5] * 10


@pytest.mark.parametrize(
    "data, message",
    [
        (dict(imbalance_ratio=0.5), "data.imbalance_ratio must be >= 1"),
        (dict(class_counts=[3, 0]), "data.class_counts must be >= 1 each"),
        (dict(imbalance_ratio=10, class_counts=[3, 3]), "not both"),
        (dict(name="landcover", imbalance_ratio=10), "segmentation datasets label pixels"),
    ],
)
def test_long_tail_settings_that_cannot_work(data, message):
    with pytest.raises(ConfigError, match=message):
        DataConfig(**data).validate()


def test_balanced_softmax_is_cross_entropy_on_logits_plus_log_counts():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    counts = [50, 5, 1]
    loss = classification_loss("balanced_softmax", counts)(logits, labels)
    expected = F.cross_entropy(logits + torch.tensor(counts, dtype=torch.float).log(), labels)
    assert loss == pytest.approx(expected.item())
    # Balanced classes: a constant shift of the logits, the same as cross-entropy.
    same = balanced_softmax_loss(logits, labels, torch.full((3,), 2.0))
    assert same == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
    # The head class pays more for the same logit: its prior raises what it must beat.
    assert loss != pytest.approx(F.cross_entropy(logits, labels).item())


def test_weighted_cross_entropy_weighs_classes_by_inverse_frequency():
    logits, labels = torch.randn(4, 2), torch.tensor([0, 0, 0, 1])
    loss = classification_loss("weighted_cross_entropy", [30, 10])(logits, labels)
    weights = torch.tensor([40 / 60, 40 / 20])  # N / (C n_j)
    assert loss == pytest.approx(F.cross_entropy(logits, labels, weight=weights).item())
    with pytest.raises(ValueError, match="unknown loss 'focal'"):
        classification_loss("focal", [1, 2])


def test_the_loss_is_for_classifiers_only():
    RunConfig(loss="balanced_softmax").validate()
    with pytest.raises(ConfigError, match="loss must be one of"):
        RunConfig(loss="focal").validate()
    for cfg in (SegmentConfig(loss="balanced_softmax"), FewShotConfig(loss="balanced_softmax")):
        with pytest.raises(ConfigError, match="is for classify, transfer and dynamic_filter runs"):
            cfg.validate()


@pytest.fixture(scope="module")
def long_tail_group(tmp_path_factory):
    root = tmp_path_factory.mktemp("lt")
    base = RunConfig(data=DataConfig(image_size=16, imbalance_ratio=20), epochs=2,
                     batch_size=32, device="cpu", snapshot_size=20)  # fmt: skip
    group = comparisons.create_group("long-tail", base, root)
    for run_dir in group.run_dirs(root):
        executor.execute(run_dir)
    return root, group


def test_the_preset_trains_one_split_with_three_losses(long_tail_group):
    root, group = long_tail_group
    configs = [runs.load_config(d) for d in group.run_dirs(root)]
    assert [c.loss for c in configs] == ["cross_entropy", "balanced_softmax",
                                         "weighted_cross_entropy"]  # fmt: skip
    assert all(c.data.imbalance_ratio == 20 for c in configs)
    summaries = [runs.read_status(d)["summary"] for d in group.run_dirs(root)]
    counts = [s["train_counts"] for s in summaries]
    assert counts[0] == counts[1] == counts[2] and counts[0][0] > 10 * counts[0][-1] // 2
    for s in summaries:
        cm = np.asarray(s["test_confusion"])
        assert cm.shape == (10, 10) and cm.sum() == 269
        assert np.trace(cm) / cm.sum() == pytest.approx(s["test_acc"], abs=1e-6)
    # The losses differ, so the first logged training loss does too (same seed, same batch).
    first = [next(e["value"] for e in runs.read_metrics(d) if e["name"] == "loss")
             for d in group.run_dirs(root)]  # fmt: skip
    assert len(set(round(v, 6) for v in first)) == 3


def test_the_preset_wants_a_long_tailed_split():
    with pytest.raises(ConfigError, match="needs a long-tailed training split"):
        presets.preset_configs("long-tail", RunConfig())


def test_the_report_splits_classes_by_training_images():
    counts = [150, 50, 10]
    cm = np.array([[9, 1, 0], [3, 6, 1], [5, 2, 3]])
    rep = long_tail_report(cm, counts, many=100, few=20)
    assert rep.groups == {"many": [0], "medium": [1], "few": [2]}
    assert rep.group_accuracy == {"many": 0.9, "medium": 0.6, "few": 0.3}
    np.testing.assert_allclose(rep.per_class, [0.9, 0.6, 0.3])
    # Drift: images given to a class with more training images than their own.
    np.testing.assert_allclose(rep.to_larger, [0.0, 0.3, 0.7])
    with pytest.raises(ValueError, match="training counts are for 2 classes"):
        long_tail_report(cm, [1, 2])
    with pytest.raises(ValueError, match="must not exceed"):
        shot_groups(counts, many=10, few=20)


def test_long_tail_flags_reach_the_config(tmp_path, capsys):
    from engine.cli.main import build_parser

    a = build_parser().parse_args(["train", "--imbalance-ratio", "50", "--loss",
                                   "balanced_softmax"])  # fmt: skip
    cfg = config_from_flags(a)
    assert (cfg.data.imbalance_ratio, cfg.loss) == (50, "balanced_softmax")
    a = build_parser().parse_args(["train", "--class-counts", "9,3"])
    assert config_from_flags(a).data.class_counts == [9, 3]
    assert main(["--runs-dir", str(tmp_path), "train", "--kind", "fewshot", "--loss",
                 "balanced_softmax"]) == 2  # fmt: skip
    assert "is for classify, transfer and dynamic_filter runs" in capsys.readouterr().err


def test_validation_loss_is_plain_cross_entropy_whatever_the_training_loss(long_tail_group):
    """So the rows of one comparison report comparable validation and test losses."""
    from engine.data import BatchLoader
    from engine.models import build_model
    from engine.store.layout import RunLayout
    from engine.train import load_checkpoint

    root, group = long_tail_group
    run_dir = group.run_dirs(root)[1]  # Balanced Softmax
    cfg = runs.load_config(run_dir)
    splits = load_dataset(cfg.data)
    ckpt = load_checkpoint(RunLayout(run_dir).last_checkpoint)
    model = build_model(cfg.model.name, 10)
    model.load_state_dict(ckpt["model"])
    model.eval()
    loader = BatchLoader(splits.val, 512, ckpt["extra"]["mean"], ckpt["extra"]["std"])
    with torch.no_grad():
        x, y, _ = next(loader.batches())
        logits = model(x)
    plain = F.cross_entropy(logits, y).item()
    balanced = classification_loss("balanced_softmax", splits.train_counts())(logits, y).item()
    logged = [e["value"] for e in runs.read_metrics(run_dir)
              if (e["name"], e["split"]) == ("loss", "val")][-1]  # fmt: skip
    assert logged == pytest.approx(plain, rel=1e-4) and logged != pytest.approx(balanced, rel=1e-3)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--class-counts", "5,4,3"], "data.class_counts gives 3 counts for 10 classes"),
        (["--model", "resnext18_basic", "--cardinality", "3"], "model.cardinality must divide 64"),
        (["--colour-jitter"], "data.colour_jitter is part of the augmentation"),
        (["--kind", "ssl", "--model", "resnet18", "--cardinality", "8"],
         "are for the registry's ResNeXt models (classify runs), not ssl runs"),
        (["--kind", "fewshot", "--imbalance-ratio", "10"], "few-shot runs sample balanced"),
        (["--imbalance-ratio", "0"], "data.imbalance_ratio must be >= 1"),
    ],
)  # fmt: skip
def test_settings_that_cannot_work_are_refused_before_a_run_exists(tmp_path, capsys, argv, message):
    assert main(["--runs-dir", str(tmp_path / "runs"), "train", *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
