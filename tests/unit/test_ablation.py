"""The ablation preset (seed 004, task B): augmentation x learning-rate schedule x optimiser,
with the seed's milestones scaled to the run's epochs; colour jitter in the augmentation."""

import pytest
import torch

from engine.config import DataConfig, RunConfig
from engine.data import BatchLoader, ImageSet
from engine.data.colour import random_colour_jitter, to_gray
from engine.execution import comparisons
from engine.experiments import presets
from engine.experiments.presets import scaled_milestones
from engine.store import groups


def test_milestones_keep_their_fractions_of_the_epochs():
    assert scaled_milestones([80, 120, 160], 200) == [80, 120, 160]
    assert scaled_milestones([80, 120, 160], 12) == [5, 7, 10]
    assert scaled_milestones([80, 120, 160], 2) == [1, 2]  # strictly increasing, within range
    assert scaled_milestones([80, 120, 160], 1) == [1]
    assert scaled_milestones([5, 8], 12) == [5, 8]  # already the run's own: kept


def test_the_preset_is_every_combination_once():
    rows = presets.preset_configs("ablation", RunConfig(epochs=20))
    assert len(rows) == 8
    combos = {(c.data.augment, c.data.colour_jitter, c.optim.schedule, c.optim.name)
              for _, c, _ in rows}  # fmt: skip
    assert combos == {(a, a, s, o) for a in (False, True) for s in ("none", "multistep")
                      for o in ("sgd", "adam")}  # fmt: skip
    assert {tuple(c.optim.milestones) for _, c, _ in rows} == {(8, 12, 16)}
    labels = [label for label, _, _ in rows]
    assert len(set(labels)) == 8 and "Adam · augmented · MultiStepLR" in labels
    for _, cfg, _ in rows:
        cfg.validate()


def test_colour_jitter_changes_colours_per_image_and_stays_in_range():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 8, 8)
    y = random_colour_jitter(x, g, p=1.0)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert not torch.allclose(y, x)
    same = random_colour_jitter(x, torch.Generator().manual_seed(0), p=1.0)
    assert torch.equal(y, same)  # seeded
    assert torch.equal(random_colour_jitter(x, g, p=0.0), x)
    flat = random_colour_jitter(x, g, brightness=0, contrast=0, saturation=0, hue=0, p=1.0)
    assert torch.allclose(flat, x, atol=1e-5)  # no strength: no change
    gray = to_gray(x)
    assert gray.shape == (6, 1, 8, 8)


def test_the_loader_jitters_colours_only_when_asked():
    images = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8)
    data = ImageSet(images, torch.arange(8) % 2, torch.arange(8))
    kw = dict(batch_size=8, mean=[0.5] * 3, std=[0.5] * 3, shuffle=False, augment=True, seed=1)
    plain = next(BatchLoader(data, **kw).batches(epoch=1))[0]
    jitter = next(BatchLoader(data, colour_jitter=True, **kw).batches(epoch=1))[0]
    again = next(BatchLoader(data, colour_jitter=True, **kw).batches(epoch=1))[0]
    assert not torch.allclose(plain, jitter) and torch.equal(jitter, again)
    off = dict(kw, augment=False)  # jitter belongs to the augmentation: off without it
    assert torch.equal(next(BatchLoader(data, colour_jitter=True, **off).batches())[0],
                       next(BatchLoader(data, **off).batches())[0])  # fmt: skip


def test_an_ablation_group_trains(tmp_path):
    from engine.execution import executor
    from engine.store import runs

    base = RunConfig(data=DataConfig(image_size=8), epochs=2, batch_size=256, device="cpu",
                     snapshot_size=20)  # fmt: skip
    group = comparisons.create_group("ablation", base, tmp_path)
    first, last = group.run_dirs(tmp_path)[0], group.run_dirs(tmp_path)[-1]
    executor.execute(first)
    executor.execute(last)
    table = {r["label"]: r for r in groups.comparison_table(group, tmp_path)}
    assert table["SGD · no aug · constant lr"]["best_val_acc"] is not None
    assert table["Adam · augmented · MultiStepLR"]["test_acc"] is not None
    assert runs.load_config(last).optim.milestones == [1, 2]


@pytest.mark.parametrize("preset", ["ablation", "long-tail"])
def test_classify_presets_refuse_a_transfer_config(preset):
    from engine.config import ConfigError, TransferConfig

    with pytest.raises(ConfigError, match=f"preset '{preset}' compares classify runs"):
        presets.preset_configs(preset, TransferConfig())
