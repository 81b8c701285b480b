"""Course details as options (issue 22): DLCV HW1's ResNet-50 for 32x32 keeps its max-pool,
model B's rotation augmentation, and the configs written before that keep their meaning."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.config import ConfigError, DataConfig, ModelConfig, RunConfig
from engine.data import BatchLoader, ImageSet
from engine.data.loader import random_rotation
from engine.experiments.classify import inspection_model


def _stem_output(cfg: RunConfig) -> tuple[int, int]:
    model = inspection_model(cfg, 10).eval()
    x = torch.zeros(1, 3, 32, 32)
    with torch.no_grad():
        return tuple(model.maxpool(model.relu(model.bn1(model.conv1(x)))).shape[-2:])


def test_resnet50_for_32x32_changes_conv1_only_and_keeps_the_max_pool():
    cfg = RunConfig(model=ModelConfig(name="resnet50"))
    model = inspection_model(cfg, 10)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.MaxPool2d) and _stem_output(cfg) == (16, 16)
    no_pool = RunConfig(model=ModelConfig(name="resnet50", no_max_pool=True))
    assert _stem_output(no_pool) == (32, 32)
    assert _stem_output(RunConfig(model=ModelConfig(name="resnet18"))) == (32, 32)  # CIFAR-style
    stored = cfg.to_dict()
    del stored["model"]["revision"]  # a run from before: it trained without the max-pool
    assert _stem_output(RunConfig.from_dict(stored)) == (32, 32)
    with pytest.raises(ConfigError, match="no_max_pool is for resnet50"):
        ModelConfig(name="resnet18", no_max_pool=True).validate()


def test_rotation_turns_each_image_by_its_own_seeded_angle():
    x = torch.zeros(4, 1, 9, 9)
    x[:, :, 4, 6] = 1.0  # a dot two pixels right of the centre
    same = random_rotation(x, torch.Generator().manual_seed(0), 0.0)
    torch.testing.assert_close(same, x)  # no angle: the image itself
    turned = random_rotation(x, torch.Generator().manual_seed(0), 90.0)
    again = random_rotation(x, torch.Generator().manual_seed(0), 90.0)
    torch.testing.assert_close(turned, again)  # seeded
    where = [divmod(int(t.flatten().argmax()), 9) for t in turned]
    assert len(set(where)) > 1  # different images, different angles
    assert all((r - 4) ** 2 + (c - 4) ** 2 <= 6 for r, c in where)  # still ~2 from the centre


def test_the_loader_rotates_only_when_augmenting_and_asked():
    data = ImageSet(torch.randint(0, 255, (8, 3, 16, 16), dtype=torch.uint8),
                    torch.zeros(8, dtype=torch.long), torch.arange(8))  # fmt: skip
    kw = dict(mean=[0.5] * 3, std=[0.5] * 3, augment=True, seed=3)
    plain = next(BatchLoader(data, 8, **kw).batches(0))[0]
    rotated = next(BatchLoader(data, 8, rotate=30.0, **kw).batches(0))[0]
    assert not torch.allclose(plain, rotated)
    with pytest.raises(ConfigError, match="data.rotate is part of the augmentation"):
        DataConfig(rotate=15.0).validate()
    with pytest.raises(ConfigError, match=r"data.rotate must be in \[0, 180\]"):
        DataConfig(augment=True, rotate=400.0).validate()
