"""BYOL's two-view augmentation: each step on its own (crop, flip, jitter, grayscale, blur),
the recipe's range and determinism, and the two-view loader's replayable batches."""

from __future__ import annotations

import pytest
import torch

from engine.data import BatchLoader, ImageSet
from engine.ssl import VIEW_A, VIEW_B, TwoViewLoader, ViewAugment

# Every random step switched off: what is left must hand the images back unchanged.
OFF = dict(flip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0)
MEAN, STD = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(6, 3, 16, 16, generator=gen(0))  # (B, 3, H, W) in [0, 1]


def checkerboard(size: int = 16) -> torch.Tensor:
    board = ((torch.arange(size)[:, None] + torch.arange(size)[None]) % 2).float()
    return board.expand(2, 3, size, size).clone()  # (2, 3, H, W): 0/1 alternating pixels


def image_set(n: int = 21, size: int = 16) -> ImageSet:
    g = gen(1)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    return ImageSet(images, torch.arange(n) % 3, torch.arange(100, 100 + n))


def collect(batches) -> list[tuple[torch.Tensor, ...]]:
    return [tuple(t.clone() for t in batch) for batch in batches]


def assert_same_batches(a, b) -> None:
    assert len(a) == len(b)
    for left, right in zip(a, b, strict=True):
        for s, t in zip(left, right, strict=True):
            assert torch.equal(s, t)


# --- one view -------------------------------------------------------------------------------------


@pytest.mark.parametrize("view", [VIEW_A, VIEW_B], ids=["view_a", "view_b"])
def test_a_view_keeps_the_shape_and_the_unit_range(x, view):
    out = view(x, gen(3))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= -1e-6 and out.max() <= 1 + 1e-6
    assert not torch.allclose(out, x, atol=1e-3)  # the recipe does change the images


def test_the_same_generator_seed_draws_the_same_view(x):
    assert torch.equal(VIEW_A(x, gen(7)), VIEW_A(x, gen(7)))
    assert not torch.allclose(VIEW_A(x, gen(7)), VIEW_A(x, gen(8)), atol=1e-3)


def test_the_two_views_differ_in_how_often_they_blur():
    assert (VIEW_A.blur_p, VIEW_B.blur_p) == (1.0, 0.1)
    assert VIEW_A.crop_scale == VIEW_B.crop_scale and VIEW_A.jitter_p == VIEW_B.jitter_p


def test_with_every_step_off_a_full_square_crop_is_the_identity(x):
    identity = ViewAugment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), **OFF)
    torch.testing.assert_close(identity(x, gen(0)), x, atol=1e-5, rtol=0)


def test_a_crop_that_keeps_the_whole_area_is_the_identity(x):
    identity = ViewAugment(crop_scale=(1.0, 1.0), **OFF)  # the default aspect ratios
    torch.testing.assert_close(identity(x, gen(0)), x, atol=1e-5, rtol=0)


def test_flip_p_1_with_a_full_crop_mirrors_left_to_right(x):
    flip = ViewAugment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), **{**OFF, "flip_p": 1.0})
    torch.testing.assert_close(flip(x, gen(0)), x.flip(3), atol=1e-5, rtol=0)


def test_a_smaller_crop_zooms_in(x):
    # Half the area, square: the view is the centre region (or another) blown up, so
    # neighbouring pixels become more alike than in the original random image.
    zoom = ViewAugment(crop_scale=(0.25, 0.25), crop_ratio=(1.0, 1.0), **OFF)
    out = zoom(x, gen(0))
    assert out.shape == x.shape
    step = lambda t: (t[..., 1:] - t[..., :-1]).abs().mean()  # noqa: E731
    assert step(out) < 0.75 * step(x)


def test_grayscale_p_1_gives_three_equal_channels(x):
    gray = ViewAugment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), **{**OFF, "grayscale_p": 1})
    out = gray(x, gen(0))
    assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 1], out[:, 2])
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    torch.testing.assert_close(out[:, 0], luma, atol=1e-5, rtol=0)


def test_colour_jitter_p_1_changes_colours_but_keeps_the_range(x):
    jitter = ViewAugment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), **{**OFF, "jitter_p": 1})
    out = jitter(x, gen(0))
    assert out.min() >= 0 and out.max() <= 1
    changed = (out - x).abs().flatten(1).max(1).values > 1e-3
    assert changed.all()  # every image of the batch jittered


def test_blur_lowers_the_variance_of_a_checkerboard_and_keeps_its_mean():
    board = checkerboard()
    # sigma 14 px at 224 px: 1 px at 16 px, enough to smear alternating pixels.
    blur = ViewAugment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                       **{**OFF, "blur_p": 1.0}, blur_sigma=(14.0, 14.0))  # fmt: skip
    out = blur(board, gen(0))
    assert out.var() < 0.1 * board.var()
    assert out.mean() == pytest.approx(board.mean().item(), abs=1e-4)


def test_blur_p_0_leaves_the_checkerboard_alone():
    board = checkerboard()
    none = ViewAugment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), **OFF,
                       blur_sigma=(14.0, 14.0))  # fmt: skip
    torch.testing.assert_close(none(board, gen(0)), board, atol=1e-5, rtol=0)


# --- the two-view loader --------------------------------------------------------------------------


def test_two_view_batches_stack_two_normalised_views_of_each_image():
    data = image_set()
    loader = TwoViewLoader(data, 8, MEAN, STD, "cpu", shuffle=True, seed=4)
    views, labels, idx = next(iter(loader.batches(epoch=1)))
    assert views.shape == (8, 2, 3, 16, 16) and views.dtype == torch.float32
    assert torch.equal(labels, data.labels[idx])
    assert not torch.allclose(views[:, 0], views[:, 1], atol=1e-3)  # two different views
    assert len(loader) == 3 and [len(b[0]) for b in loader.batches(epoch=1)] == [8, 8, 5]


def test_with_identity_views_both_views_are_the_normalised_images():
    data = image_set()
    identity = ViewAugment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), **OFF)
    two = TwoViewLoader(data, 8, MEAN, STD, "cpu", views=(identity, identity))
    plain = BatchLoader(data, 8, MEAN, STD, "cpu")
    for (views, y, i), (x, y2, i2) in zip(two.batches(), plain.batches(), strict=True):
        assert torch.equal(i, i2) and torch.equal(y, y2)
        torch.testing.assert_close(views[:, 0], x, atol=1e-4, rtol=0)
        torch.testing.assert_close(views[:, 1], x, atol=1e-4, rtol=0)


def test_a_resumed_epoch_replays_the_tail_of_the_same_epoch():
    loader = TwoViewLoader(image_set(), 4, MEAN, STD, "cpu", shuffle=True, seed=2)
    full = collect(loader.batches(epoch=3))
    assert len(full) == 5 and len(full[-1][1]) == 5  # 21 = 4 x 4 + 5: no batch of one
    assert_same_batches(collect(loader.batches(epoch=3, start=4)), full[4:])
    # ... and from a fresh loader, as a resumed process has
    again = TwoViewLoader(image_set(), 4, MEAN, STD, "cpu", shuffle=True, seed=2)
    assert_same_batches(collect(again.batches(epoch=3, start=2)), full[2:])


def test_each_epoch_and_each_seed_draws_other_views():
    data = image_set()
    loader = TwoViewLoader(data, 32, MEAN, STD, "cpu", seed=2)  # no shuffle: same images
    (a, _, ia), (b, _, ib) = next(loader.batches(epoch=1)), next(loader.batches(epoch=2))
    assert torch.equal(ia, ib) and not torch.allclose(a, b, atol=1e-3)
    other = TwoViewLoader(data, 32, MEAN, STD, "cpu", seed=3)
    assert not torch.allclose(next(other.batches(epoch=1))[0], a, atol=1e-3)


def test_evaluation_batches_are_the_same_views_every_time():
    loader = TwoViewLoader(image_set(), 8, MEAN, STD, "cpu", seed=5)
    assert_same_batches(collect(loader.batches()), collect(loader.batches()))
    # positions in order: evaluation never shuffles
    assert torch.equal(torch.cat([b[2] for b in loader.batches()]), torch.arange(21))


def test_two_views_of_uint8_images_follow_the_key_epoch_and_batch():
    loader = TwoViewLoader(image_set(), 8, MEAN, STD, "cpu", seed=6)
    images = image_set().images[:5]
    first = loader.two_views(images, epoch=2, batch=1)
    assert first.shape == (5, 2, 3, 16, 16)
    assert torch.equal(first, loader.two_views(images, epoch=2, batch=1))
    assert not torch.allclose(first, loader.two_views(images, epoch=2, batch=0), atol=1e-3)
