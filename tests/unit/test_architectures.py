"""The architecture lab's models (seed 004, task B): ResNeXt-18/50 and the dual-path
ResNet-18 for 32x32 inputs, their options, and what each costs (parameters, MACs, speed). A
trained ResNeXt run: tests/integration/test_model_runs.py."""

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.resnet import Bottleneck

from engine.cli.main import main
from engine.config import ConfigError, ModelConfig
from engine.models import build_model, list_models
from engine.models.profile import count_macs, model_costs, train_throughput
from engine.models.resnet import (
    DualPathBlock,
    DualPathConcatBlock,
    DualPathDilatedBlock,
    GroupedBasicBlock,
)

NEW = [
    "resnext18",
    "resnext18_basic",
    "resnext50",
    "dlresnet18",
    "dlresnet18_cat",
    "dlresnet18_dilated",
]


@pytest.mark.parametrize("name", NEW)
def test_each_new_model_trains_on_32x32_images(name):
    torch.manual_seed(0)
    model = build_model(name, 7)
    x = torch.randn(3, 3, 32, 32)
    features = model.forward_features(x)
    assert features.shape == (3, model.num_features)
    logits = model(x)
    assert logits.shape == (3, 7)
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert name in list_models()


def test_resnext50_is_torchvisions_32x4d_with_a_3x3_stem():
    ours = sum(p.numel() for p in build_model("resnext50", 10).parameters())
    theirs = sum(p.numel() for p in torchvision.models.resnext50_32x4d(num_classes=10).parameters())
    assert ours == theirs - 64 * 3 * (7 * 7 - 3 * 3)  # the 7x7 stem replaced by a 3x3


def test_resnext18_is_built_of_resnext_bottlenecks_and_the_options_change_them():
    model = build_model("resnext18", 10)
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 8  # two per stage
    for b in blocks:  # 1x1 reduce, grouped 3x3, 1x1 expand
        assert (b.conv1.kernel_size, b.conv2.kernel_size, b.conv3.kernel_size) == (
            (1, 1), (3, 3), (1, 1))  # fmt: skip
        assert (b.conv1.groups, b.conv2.groups, b.conv3.groups) == (1, 32, 1)
    assert blocks[0].conv2.out_channels == 64 * 4 // 64 * 32  # planes x width / 64 x cardinality
    assert model.num_features == 512 * 4
    other = build_model("resnext18", 10, groups=8, width_per_group=16)
    convs8 = [m for m in other.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert {c.groups for c in convs8} == {8} and convs8[0].out_channels == 8 * 16


def _reach(stage: nn.Module, channels: int) -> torch.Tensor:
    """Which output channels of `stage` move when only input channel 0 does."""
    stage.eval()
    x = torch.randn(1, channels, 8, 8, generator=torch.Generator().manual_seed(0))
    y = x.clone()
    y[:, 0] += 1.0
    with torch.no_grad():
        return (stage(y) - stage(x)).abs().amax(dim=(0, 2, 3)) > 1e-6


def test_one_input_channel_of_a_stage_reaches_every_output_channel_of_it():
    torch.manual_seed(0)
    for name, stage in build_model("resnext18", 10).named_children():
        if name.startswith("layer"):
            channels = stage[0].conv1.in_channels
            assert _reach(stage, channels).all(), name
    # The control: the grouped BasicBlock net (the earlier "resnext18") keeps its groups
    # apart inside a stage without a projection shortcut: channel 0 reaches its own group.
    basic = build_model("resnext18_basic", 10)
    assert isinstance(basic.layer1[0], GroupedBasicBlock)
    reached = _reach(basic.layer1, 64)
    assert 0 < int(reached.sum()) < 64


def test_configs_written_before_the_change_keep_building_the_network_they_trained():
    from engine.config import RunConfig

    stored = RunConfig(model=ModelConfig(name="resnext18")).to_dict()
    assert RunConfig.from_dict(stored).model.network() == "resnext18"
    del stored["model"]["revision"]  # a config.json from before the bottleneck ResNeXt-18
    assert RunConfig.from_dict(stored).model.network() == "resnext18_basic"


def test_dual_path_blocks_add_or_concatenate_a_second_kernel():
    add = [m for m in build_model("dlresnet18", 10).modules() if isinstance(m, DualPathBlock)]
    cat = [m for m in build_model("dlresnet18_cat", 10).modules()
           if isinstance(m, DualPathConcatBlock)]  # fmt: skip
    assert len(add) == len(cat) == 8
    assert all(b.project is None for b in add) and all(b.project is not None for b in cat)
    assert add[0].path2[0].kernel_size == (5, 5) and add[0].path3[0].kernel_size == (3, 3)
    projection = cat[0].project[0]
    assert projection.kernel_size == (1, 1) and projection.in_channels == 2 * 64


def test_the_dilated_second_path_sees_as_far_with_fewer_weights():
    five, dilated = DualPathBlock(64, 64), DualPathDilatedBlock(64, 64)
    conv = dilated.path2[0]
    assert conv.kernel_size == (3, 3) and conv.dilation == (2, 2)
    x = torch.randn(1, 64, 8, 8)
    assert dilated(x).shape == five(x).shape == x.shape
    count = lambda m: sum(p.numel() for p in m.path2.parameters())  # noqa: E731
    assert count(dilated) < count(five)


def test_macs_count_convolutions_and_linear_layers():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 8 * 8, 10))  # fmt: skip
    assert count_macs(model, 8) == 8 * 8 * 8 * (3 * 3 * 3) + 512 * 10
    grouped = nn.Conv2d(8, 8, 3, padding=1, groups=4)
    assert count_macs(grouped, 4, channels=8) == 8 * 4 * 4 * (2 * 9)


def test_the_cost_table_of_the_registry():
    rows = {r.name: r for r in model_costs(["resnet18", "resnext18", "resnext18_basic"], 32)}
    assert 0.55e9 < rows["resnet18"].macs < 0.56e9  # CIFAR ResNet-18: 0.56 GMACs
    assert rows["resnet18"].params == sum(
        p.numel() for p in build_model("resnet18", 10).parameters()
    )
    # ResNeXt's 4x expanded bottlenecks cost more than ResNet-18's BasicBlocks; the grouped
    # BasicBlock net, without the 1x1s, a small fraction
    assert rows["resnext18_basic"].macs < rows["resnet18"].macs < rows["resnext18"].macs
    assert rows["resnet18"].images_per_second is None  # not timed unless asked


def test_training_throughput_is_measured():
    assert train_throughput(build_model("small_cnn", 10), 32, batch_size=8, seconds=0.05) > 0


def test_models_command_prints_the_table(capsys):
    assert main(["models", "small_cnn", "resnext18"]) == 0
    out = capsys.readouterr().out
    assert "small_cnn" in out and "resnext18" in out and "MACs" in out
    assert "2,802,304" in out  # small_cnn's MACs at 32x32, as count_macs gives them
    assert main(["models", "nope"]) == 2
    assert "unknown model(s) ['nope']" in capsys.readouterr().err


def test_cardinality_is_for_resnext_only():
    ModelConfig(name="resnext18", cardinality=8, group_width=8).validate()
    with pytest.raises(ConfigError, match="model.cardinality is for the ResNeXt models"):
        ModelConfig(name="resnet18", cardinality=8).validate()
    with pytest.raises(ConfigError, match=r"model.group_width must be in \[0, 1024\], got -1"):
        ModelConfig(name="resnext18", group_width=-1).validate()
