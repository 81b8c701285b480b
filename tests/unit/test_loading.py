"""Loading a model to look inside: a finished run's checkpoint, an ImageNet backbone whole, and
the preprocessing that feeds it."""

import shutil

import pytest
import torch

from engine.config import DataConfig, ModelConfig, TransferConfig
from engine.data import load_dataset
from engine.data.images import preprocess
from engine.execution import executor
from engine.inspect.loading import load_imagenet_model, load_run_model
from engine.models import build_model
from engine.models.backbones import get_backbone
from engine.models.weights import WeightsError
from engine.store import runs
from engine.store.layout import RunLayout
from engine.train import CheckpointError


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_config):
    """One small_cnn run trained for an epoch, shared: tests that damage it work on a copy."""
    run_dir = runs.create_run(tiny_config(epochs=1), tmp_path_factory.mktemp("runs"))
    executor.execute(run_dir)
    return run_dir


@pytest.fixture
def run_copy(finished_run, tmp_path):
    return shutil.copytree(finished_run, tmp_path / finished_run.name)


def accuracy_on(test_set, loaded, batch_size: int) -> float:
    """Test accuracy of a loaded model, fed as its run was: (x / 255 - mean) / std, in batches."""
    m = torch.tensor(loaded.mean).view(1, -1, 1, 1)
    s = torch.tensor(loaded.std).view(1, -1, 1, 1)
    with torch.no_grad():
        predictions = torch.cat([
            loaded.model((test_set.images[i : i + batch_size].float() / 255 - m) / s).argmax(1)
            for i in range(0, len(test_set), batch_size)
        ])  # fmt: skip
    return (predictions == test_set.labels).float().sum().item() / len(test_set)


def test_a_run_model_reproduces_the_runs_test_accuracy(finished_run):
    status = runs.read_status(finished_run)
    assert status["state"] == "finished"
    summary = status["summary"]
    cfg = runs.load_config(finished_run)
    loaded = load_run_model(finished_run)
    assert not any(m.training for m in loaded.model.modules())
    assert loaded.classes == [str(c) for c in summary["classes"]]
    assert loaded.image_size == cfg.data.image_size
    assert finished_run.name in loaded.name and "best.pt" in loaded.name
    splits = load_dataset(cfg.data)
    assert (loaded.mean, loaded.std) == tuple(splits.channel_stats())
    accuracy = accuracy_on(splits.test, loaded, cfg.batch_size)
    assert accuracy == summary["test_acc"]
    assert accuracy > 2 / len(loaded.classes), f"a trained model, not a fresh one: {accuracy}"


def test_last_checkpoint_loads_by_name(finished_run):
    loaded = load_run_model(finished_run, which="last.pt")
    assert "last.pt" in loaded.name
    best = load_run_model(finished_run)
    for key, value in best.model.state_dict().items():  # one epoch: best is last
        assert torch.equal(loaded.model.state_dict()[key], value), key


def test_a_frozen_transfer_run_loads_as_a_model_of_images(runs_dir):
    cfg = TransferConfig(
        model=ModelConfig(name="efficientnet_lite0"), data=DataConfig(image_size=32),
        mode="frozen", epochs=1, batch_size=64, device="cpu", seed=0,
    )  # fmt: skip
    run_dir = runs.create_run(cfg, runs_dir)
    summary = executor.execute(run_dir)
    loaded = load_run_model(run_dir)
    # The run trained its head on precomputed features; the loaded model takes images.
    assert loaded.model.inputs_are_features is False
    spec = get_backbone("efficientnet_lite0")
    assert (loaded.mean, loaded.std) == (list(spec.mean), list(spec.std))
    assert loaded.image_size == 32
    assert loaded.classes == [str(c) for c in summary["classes"]]
    test = load_dataset(cfg.data).test
    assert accuracy_on(test, loaded, cfg.batch_size) == summary["test_acc"]


def test_a_damaged_checkpoint_raises_naming_the_file(run_copy):
    best = RunLayout(run_copy).checkpoints / "best.pt"
    best.write_bytes(best.read_bytes()[:200])  # truncated, as by a full disk
    with pytest.raises(CheckpointError, match="best.pt cannot be read") as info:
        load_run_model(run_copy)
    assert str(best) in str(info.value)


def test_a_checkpoint_without_classes_or_of_another_model_raises(run_copy):
    best = RunLayout(run_copy).checkpoints / "best.pt"
    ckpt = torch.load(best, weights_only=True)
    torch.save({"model": ckpt["model"], "extra": {}}, best)
    with pytest.raises(CheckpointError, match="lacks the class names or normalisation"):
        load_run_model(run_copy)
    narrow = build_model("small_cnn", 10, width=8).state_dict()  # not the run's width
    torch.save({"model": narrow, "extra": ckpt["extra"]}, best)
    with pytest.raises(CheckpointError, match="does not fit the run's model") as info:
        load_run_model(run_copy)
    assert str(best) in str(info.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_run_model(run_copy, which="epoch9.pt")


def test_the_imagenet_efficientnet_lite0_loads_whole_with_its_classes():
    loaded = load_imagenet_model("efficientnet_lite0")
    spec = get_backbone("efficientnet_lite0")
    assert loaded.image_size == spec.native_size == 224
    assert len(loaded.classes) == 1000 and "palace" in loaded.classes
    assert (loaded.mean, loaded.std) == (list(spec.mean), list(spec.std))
    assert not loaded.model.training
    state = spec.imagenet_state_dict()
    own = loaded.model.state_dict()
    assert sorted(own) == sorted(state)
    assert all(torch.equal(own[k], v) for k, v in state.items()), "the ImageNet weights"
    image = preprocess(torch.randint(0, 256, (3, 240, 300), dtype=torch.uint8), 224)
    m = torch.tensor(loaded.mean).view(3, 1, 1)
    s = torch.tensor(loaded.std).view(3, 1, 1)
    with torch.no_grad():
        logits = loaded.model(((image - m) / s)[None])
    assert logits.shape == (1, 1000)


def test_an_imagenet_model_without_its_weights_says_what_to_do(weight_cache):
    with pytest.raises(WeightsError, match="not cached.*resnet18"):
        load_imagenet_model("resnet18")  # the test's weight cache is empty
    with pytest.raises(ValueError, match="unknown backbone 'resnet7'"):
        load_imagenet_model("resnet7")


@pytest.mark.parametrize("shape", [(3, 40, 60), (3, 60, 40)])
def test_preprocess_centre_crops_then_resizes(shape):
    # A grey centre square with red margins on the long sides: only grey survives the crop.
    image = torch.zeros(shape, dtype=torch.uint8)
    image[0] = 255
    _, h, w = shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    image[:, top : top + side, left : left + side] = 128
    for size in (24, 64):  # down and up
        out = preprocess(image, size)
        assert out.shape == (3, size, size) and out.dtype == torch.float32
        torch.testing.assert_close(out, torch.full_like(out, 128 / 255))


def test_preprocess_keeps_the_content_in_0_1_and_its_orientation():
    image = torch.zeros(3, 32, 32, dtype=torch.uint8)
    image[:, :16] = 255  # a bright top half
    out = preprocess(image, 16)
    assert out.min() >= 0 and out.max() <= 1
    assert out[:, :6].min() > 0.99 and out[:, 10:].max() < 0.01
    torch.testing.assert_close(preprocess(image, 32), image.float() / 255)
