"""Attribution maps: their shape and range, the class they explain, and whether they point at
the pixels a class really depends on."""

import numpy as np
import pytest
import torch
from torch import nn

from engine.analysis.attribution import METHODS, attribute, overlay
from engine.models import build_model

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
SIZE = 32


class QuadrantNet(nn.Module):
    """Two classes: logit 1 sees only the top-left quadrant of the image, logit 0 only the
    bottom-right one. A 3x3 convolution (Grad-CAM's spatial layer) with positive weights, then
    each logit averages it over a window whose receptive field stays inside its quadrant."""

    def __init__(self, size: int = SIZE) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.uniform_(0.1, 1.0, generator=torch.Generator().manual_seed(0))
            self.conv.bias.zero_()
        half = size // 2
        masks = torch.zeros(2, 1, size, size)
        masks[1, :, : half - 1, : half - 1] = 1  # its 3x3 receptive field: rows/cols < half
        masks[0, :, half + 1 :, half + 1 :] = 1  # its 3x3 receptive field: rows/cols >= half
        self.register_buffer("masks", masks / masks.sum(dim=(1, 2, 3), keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.conv(x))  # (B, 4, H, W)
        return torch.einsum("bchw,khw->bk", a, self.masks[:, 0])  # (B, 2)


def quadrant_mass(heat: np.ndarray, quadrant: str) -> float:
    """Fraction of a map's total in one quadrant ("top_left" or "bottom_right")."""
    h, w = heat.shape
    part = heat[: h // 2, : w // 2] if quadrant == "top_left" else heat[h // 2 :, w // 2 :]
    return float(part.sum() / heat.sum())


@pytest.fixture
def small_cnn():
    torch.manual_seed(0)
    return build_model("small_cnn", 10)


def test_attribute_returns_every_map_at_the_input_size_in_0_1(small_cnn):
    image = torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    result = attribute(small_cnn.train(), image, MEAN, STD, ig_steps=8)
    assert not small_cnn.training, "attribution runs the model in eval mode"
    assert set(result.maps) == set(METHODS)
    for method, heat in result.maps.items():
        assert heat.shape == (SIZE, SIZE), method
        assert heat.min() >= 0 and heat.max() <= 1, method
        assert heat.max() > 0, f"{method} gives an empty map"
    assert result.cam_layer is not None
    assert result.probabilities.shape == (10,)
    np.testing.assert_allclose(result.probabilities.sum(), 1.0, rtol=1e-5)


def test_target_defaults_to_the_predicted_class_and_a_chosen_one_is_honoured(small_cnn):
    image = torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    small_cnn.eval()
    m, s = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = small_cnn((image[None] - m) / s)[0]
    predicted = int(logits.argmax())
    default = attribute(small_cnn, image, MEAN, STD, methods=["saliency"])
    assert default.target == predicted
    np.testing.assert_allclose(default.probabilities, torch.softmax(logits, 0).numpy(), atol=1e-6)
    other = (predicted + 1) % 10
    chosen = attribute(small_cnn, image, MEAN, STD, target=other, methods=["saliency"])
    assert chosen.target == other
    assert set(chosen.maps) == {"saliency"}
    assert not np.array_equal(chosen.maps["saliency"], default.maps["saliency"])


@pytest.mark.parametrize("target", [10, -1])
def test_a_target_outside_the_classes_raises(small_cnn, target):
    with pytest.raises(ValueError, match=f"target class {target} does not exist.*has 10"):
        attribute(small_cnn, torch.rand(3, SIZE, SIZE), MEAN, STD, target=target)


def test_an_unknown_method_raises(small_cnn):
    with pytest.raises(ValueError, match="unknown attribution method.*lime"):
        attribute(small_cnn, torch.rand(3, SIZE, SIZE), MEAN, STD, methods=["saliency", "lime"])


@pytest.mark.parametrize("target, quadrant", [(1, "top_left"), (0, "bottom_right")])
def test_attributions_point_at_the_pixels_the_class_depends_on(target, quadrant):
    model = QuadrantNet()
    image = torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    # Mean 0, std 1: the black baseline of Integrated Gradients and Occlusion's zero are both
    # the black image, which lowers a positive-weight logit wherever it replaces the image.
    result = attribute(model, image, [0.0] * 3, [1.0] * 3, target=target, ig_steps=8)
    assert result.cam_layer == "conv"
    assert result.maps["grad_cam"].shape == (SIZE, SIZE)  # it ran on the spatial layer
    for method in ("saliency", "integrated_gradients", "occlusion"):
        heat = result.maps[method]
        assert heat.sum() > 0, method
        # The quadrant is a quarter of the image; it should hold nearly all of the mass.
        assert quadrant_mass(heat, quadrant) > 0.9, method


def test_overlay_keeps_unheated_pixels_and_colours_heated_ones():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    original = image.copy()
    heat = np.zeros((16, 20), dtype=np.float32)
    heat[:8] = 1.0
    out = overlay(image, heat)
    assert out.dtype == np.uint8 and out.shape == (16, 20, 3)
    np.testing.assert_array_equal(out[8:], image[8:])
    assert np.array_equal(image, original), "the image is not modified"
    # Full heat blends towards yellow: more red, less blue than a black image has.
    black = overlay(np.zeros((4, 4, 3), dtype=np.uint8), np.ones((4, 4)))
    assert (black[..., 0] > 0).all() and (black[..., 2] == 0).all()
    assert not np.array_equal(out[:8], image[:8])


def test_overlay_clips_the_heat_to_0_1():
    image = np.full((4, 4, 3), 100, dtype=np.uint8)
    np.testing.assert_array_equal(
        overlay(image, np.full((4, 4), 3.0)), overlay(image, np.ones((4, 4)))
    )
    np.testing.assert_array_equal(overlay(image, np.full((4, 4), -2.0)), image)
