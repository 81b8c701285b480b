"""DeepDream and activation maximisation on a small random CNN: the objective rises, the image
stays an image, and the model is left as it was."""

import pytest
import torch

from engine.analysis.dream import activation_maximisation, deep_dream
from engine.analysis.layers import LayerCapture
from engine.models import build_model
from engine.models.small_cnn import SmallCNN

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model("small_cnn", 10)  # in train mode, as a freshly built model is


def channel_activation(model, layer, channel, images, mean, std) -> torch.Tensor:
    """Mean activation of one channel for each image of `images` (N, C, H, W) in [0, 1]."""
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    model.eval()
    with torch.no_grad(), LayerCapture(model, layer, stop=True) as capture:
        return capture.run((images - m) / s)[:, channel].mean(dim=(1, 2))


def model_state(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [p.requires_grad for p in model.parameters()],
        [m.training for m in model.modules()],
    )


def assert_model_unchanged(model, before):
    state, grads, training = before
    after = model.state_dict()
    assert sorted(after) == sorted(state)
    for key, value in state.items():
        assert torch.equal(after[key], value), f"{key} changed"
    assert [p.requires_grad for p in model.parameters()] == grads
    assert [m.training for m in model.modules()] == training
    assert all(p.grad is None for p in model.parameters()), "no gradient reaches the weights"


# --- DeepDream ----------------------------------------------------------------------------------


def test_deep_dream_raises_the_objective_over_octaves_that_grow_to_the_input_size(model):
    image = torch.rand(3, 32, 40, generator=torch.Generator().manual_seed(1))
    original = image.clone()
    calls = []
    result = deep_dream(
        model, image, "features.1", MEAN, STD, octaves=3, iterations=5,
        progress=lambda done, total: calls.append((done, total)),
    )  # fmt: skip
    assert len(result.objective) == 3 * 5
    assert result.objective[-1] > result.objective[0]
    sizes = [tuple(step.shape) for step in result.steps]
    assert len(sizes) == 3, "one intermediate image per octave"
    assert all(c == 3 for c, _, _ in sizes)
    heights, widths = [h for _, h, _ in sizes], [w for _, _, w in sizes]
    assert heights == sorted(set(heights)) and widths == sorted(set(widths)), "smallest first"
    assert sizes[-1] == (3, 32, 40)
    assert heights[0] < 32 / 1.4 and widths[0] < 40 / 1.4  # two octaves down at scale 1.4
    assert torch.equal(result.image, result.steps[-1])
    assert not torch.equal(result.image, image), "the dream changed the image"
    assert torch.equal(image, original), "the caller's image is not modified"
    for step in result.steps:
        assert step.min() >= 0 and step.max() <= 1
    assert calls == [(k, 15) for k in range(1, 16)]


def test_deep_dream_of_one_channel_raises_that_channel(model):
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(2))
    result = deep_dream(model, image, "features.1", MEAN, STD, channel=3, octaves=1, iterations=8)
    before, after = channel_activation(
        model, "features.1", 3, torch.stack([image, result.image]), MEAN, STD
    )
    assert after > before


def test_deep_dream_leaves_the_model_as_it_was(model):
    model.fc.requires_grad_(False)  # a partly frozen model in train mode
    before = model_state(model)
    deep_dream(model, torch.rand(3, 32, 32), "features.2", MEAN, STD, octaves=2, iterations=3)
    assert_model_unchanged(model, before)


def test_deep_dream_restores_each_modules_own_mode(model):
    model.features[0].eval()  # e.g. BatchNorm statistics frozen in the first block
    before = model_state(model)
    deep_dream(model, torch.rand(3, 32, 32), "features.1", MEAN, STD, octaves=1, iterations=1)
    assert_model_unchanged(model, before)


def test_deep_dream_is_deterministic_for_a_seed(model):
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(3))
    kw = dict(octaves=2, iterations=4)
    a = deep_dream(model, image, "features.1", MEAN, STD, seed=5, **kw)
    b = deep_dream(model, image, "features.1", MEAN, STD, seed=5, **kw)
    c = deep_dream(model, image, "features.1", MEAN, STD, seed=6, **kw)
    assert torch.equal(a.image, b.image) and a.objective == b.objective
    assert not torch.equal(a.image, c.image), "the seed chooses the jitter"


def test_deep_dream_of_a_missing_channel_names_the_count_and_restores_the_model(model):
    before = model_state(model)
    with pytest.raises(ValueError, match="channel 32 does not exist: the layer has 32"):
        deep_dream(model, torch.rand(3, 32, 32), "features.1", MEAN, STD, channel=32)
    assert_model_unchanged(model, before)


# --- activation maximisation ---------------------------------------------------------------------


@pytest.mark.parametrize("parameterisation", ["fourier", "pixel"])
def test_activation_maximisation_beats_random_noise(model, parameterisation):
    result = activation_maximisation(
        model, "features.1", 3, MEAN, STD, size=32, steps=64,
        parameterisation=parameterisation, snapshots=4,
    )  # fmt: skip
    assert result.image.shape == (3, 32, 32)
    assert result.image.min() >= 0 and result.image.max() <= 1
    assert len(result.objective) == 64 and result.objective[-1] > result.objective[0]
    assert len(result.steps) == 4
    assert all(step.shape == (3, 32, 32) for step in result.steps)
    noise = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    found = channel_activation(model, "features.1", 3, result.image[None], MEAN, STD)
    assert found > 2 * channel_activation(model, "features.1", 3, noise, MEAN, STD).max()


@pytest.mark.parametrize("size", [32, 64])
def test_activation_maximisation_of_a_one_channel_model(size):
    torch.manual_seed(0)
    model = SmallCNN(10, in_channels=1)
    mean, std = [0.5], [0.25]
    result = activation_maximisation(
        model, "features.1", 0, mean, std, size=size, channels=1, steps=64, snapshots=2
    )
    assert result.image.shape == (1, size, size)
    assert len(result.steps) == 2
    noise = torch.rand(8, 1, size, size, generator=torch.Generator().manual_seed(0))
    found = channel_activation(model, "features.1", 0, result.image[None], mean, std)
    assert found > 2 * channel_activation(model, "features.1", 0, noise, mean, std).max()


def test_neuron_optimises_only_the_centre_position(model):
    # Raw pixels without the random transformations: a pixel changes only if the objective
    # depends on it. The first conv's centre output (16, 16) sees pixels 15..17 (3x3 kernel).
    kw = dict(size=32, steps=12, snapshots=12, parameterisation="pixel", robust=False)
    neuron = activation_maximisation(model, "features.0.0", 3, MEAN, STD, neuron=True, **kw)
    assert neuron.objective[-1] > neuron.objective[0]
    assert len(neuron.steps) == 12, "a snapshot per step, the first before any update"
    start = neuron.steps[0]  # the snapshot of step 1: the image before any update
    rows, cols = torch.nonzero((neuron.image - start).abs().amax(0) > 0, as_tuple=True)
    assert len(rows) > 0
    assert rows.min() >= 15 and rows.max() <= 17 and cols.min() >= 15 and cols.max() <= 17

    whole = activation_maximisation(model, "features.0.0", 3, MEAN, STD, neuron=False, **kw)
    changed = (whole.image - whole.steps[0]).abs().amax(0) > 0
    assert changed[0, 0] and changed[-1, -1], "the channel's mean depends on every pixel"


def test_activation_maximisation_is_deterministic_and_leaves_the_model_as_it_was(model):
    model.features[0].requires_grad_(False)
    before = model_state(model)
    kw = dict(size=32, steps=10, snapshots=2)
    a = activation_maximisation(model, "features.2", 1, MEAN, STD, seed=3, **kw)
    b = activation_maximisation(model, "features.2", 1, MEAN, STD, seed=3, **kw)
    c = activation_maximisation(model, "features.2", 1, MEAN, STD, seed=4, **kw)
    assert torch.equal(a.image, b.image) and a.objective == b.objective
    assert not torch.equal(a.image, c.image)
    assert_model_unchanged(model, before)


def test_activation_maximisation_rejects_a_missing_channel_and_an_unknown_parameterisation(model):
    before = model_state(model)
    with pytest.raises(ValueError, match="channel 64 does not exist: the layer has 64"):
        activation_maximisation(model, "features.2", 64, MEAN, STD, size=32, steps=2)
    assert_model_unchanged(model, before)
    with pytest.raises(
        ValueError, match="parameterisation must be 'pixel' or 'fourier'.*'wavelet'"
    ):
        activation_maximisation(
            model, "features.2", 0, MEAN, STD, size=32, steps=2, parameterisation="wavelet"
        )


def test_activation_maximisation_from_a_photo_starts_at_it_and_raises_the_feature(model):
    g = torch.Generator().manual_seed(2)
    photo = torch.rand(3, 32, 32, generator=g) * 0.6 + 0.2  # a stand-in photo, away from 0/1
    before = channel_activation(model, "features.1", 3, photo[None], MEAN, STD)
    result = activation_maximisation(model, "features.1", 3, MEAN, STD, steps=32, snapshots=4,
                                     start=photo, robust=False)  # fmt: skip
    torch.testing.assert_close(result.steps[0].shape, photo.shape)
    first = activation_maximisation(model, "features.1", 3, MEAN, STD, steps=1, snapshots=1,
                                    start=photo, robust=False, lr=0.0)  # fmt: skip
    torch.testing.assert_close(first.image, photo, atol=1e-4, rtol=0)  # it began at the photo
    after = channel_activation(model, "features.1", 3, result.image[None], MEAN, STD)
    assert after > before
    # Still the photo, changed: closer to it than to a noise image's maximisation.
    noise = activation_maximisation(model, "features.1", 3, MEAN, STD, size=32, steps=32,
                                    parameterisation="pixel", snapshots=1)  # fmt: skip
    assert (result.image - photo).abs().mean() < (noise.image - photo).abs().mean()
