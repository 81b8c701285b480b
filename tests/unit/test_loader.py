import pytest
import torch

from engine.data import BatchLoader, ImageSet, random_crop_flip


def _image_set(n=50, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    return ImageSet(images, torch.arange(n) % 5, torch.arange(100, 100 + n))


def _loader(data=None, batch_size=8, shuffle=True, augment=False, seed=3):
    data = data if data is not None else _image_set()
    return BatchLoader(
        data, batch_size, [0.5, 0.4, 0.3], [0.2, 0.25, 0.3], "cpu", shuffle, augment, seed
    )


def _assert_same_batches(a, b):
    assert len(a) == len(b)
    for (xa, ya, ia), (xb, yb, ib) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ia, ib)


def test_unshuffled_batches_cover_the_set_in_order_and_normalise():
    data = _image_set()
    loader = _loader(data, shuffle=False)
    batches = list(loader.batches())
    assert len(loader) == len(batches) == 7  # ceil(50 / 8)
    assert [len(y) for _, y, _ in batches] == [8] * 6 + [2]
    positions = torch.cat([i for _, _, i in batches])
    assert torch.equal(positions, torch.arange(50))
    x, y, idx = batches[1]
    mean = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    expected = (data.images[idx].float() / 255 - mean) / std
    assert x.dtype == torch.float32 and torch.allclose(x, expected, atol=1e-6)  # one multiply-add
    assert torch.equal(y, data.labels[idx])


def test_each_shuffled_epoch_is_a_permutation():
    loader = _loader()
    for epoch in (1, 2):
        positions = torch.cat([i for _, _, i in loader.batches(epoch)])
        assert sorted(positions.tolist()) == list(range(50))


@pytest.mark.parametrize("augment", [False, True])
def test_batches_from_start_k_are_exactly_the_tail(augment):
    loader = _loader(augment=augment)
    full = list(loader.batches(epoch=4))
    for k in range(len(full) + 1):
        _assert_same_batches(list(loader.batches(epoch=4, start=k)), full[k:])


@pytest.mark.parametrize("augment", [False, True])
def test_batch_order_is_a_pure_function_of_seed_epoch_and_batch(augment):
    torch.manual_seed(1)
    first = list(_loader(augment=augment).batches(epoch=2))
    torch.manual_seed(999)  # the global RNG must not matter
    torch.rand(17)
    second = list(_loader(augment=augment).batches(epoch=2))
    _assert_same_batches(first, second)


def test_different_epochs_and_seeds_give_different_orders():
    loader = _loader()
    assert not torch.equal(loader.order(1), loader.order(2))
    assert not torch.equal(loader.order(1), _loader(seed=4).order(1))


def test_augmentation_keeps_shapes_changes_pixels_and_is_deterministic():
    data = _image_set()
    plain = list(_loader(data, augment=False).batches(epoch=1))
    augmented = list(_loader(data, augment=True).batches(epoch=1))
    again = list(_loader(data, augment=True).batches(epoch=1))
    _assert_same_batches(augmented, again)
    changed = 0
    for (xp, yp, ip), (xa, ya, ia) in zip(plain, augmented, strict=True):
        assert xa.shape == xp.shape and xa.dtype == xp.dtype
        assert torch.equal(ia, ip) and torch.equal(ya, yp)  # same samples, same labels
        changed += int(not torch.equal(xa, xp))
    assert changed == len(plain)
    other_epoch = list(_loader(data, augment=True).batches(epoch=2))
    assert not torch.equal(other_epoch[0][0], augmented[0][0])


def _distinct_batch(b=64, c=2, h=5, w=6):
    # Every pixel value is distinct and non-zero, so a crop can only match one place.
    return torch.arange(1, b * c * h * w + 1, dtype=torch.float32).view(b, c, h, w)


def test_random_crop_flip_outputs_are_translated_and_maybe_flipped_crops():
    x = _distinct_batch()
    pad = 2
    out = random_crop_flip(x, torch.Generator().manual_seed(0), pad=pad)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    seen_offsets, seen_flips = set(), set()
    for i in range(len(x)):
        matches = [
            (oy, ox, flip)
            for oy in range(2 * pad + 1)
            for ox in range(2 * pad + 1)
            for flip in (False, True)
            if torch.equal(
                out[i],
                padded[i, :, oy : oy + 5, ox : ox + 6].flip(2)
                if flip
                else padded[i, :, oy : oy + 5, ox : ox + 6],
            )
        ]
        assert len(matches) == 1, f"sample {i} is not a crop of its padded input"
        seen_offsets.add(matches[0][:2])
        seen_flips.add(matches[0][2])
    # Not degenerate: many offsets and both flip states occur over 64 samples.
    assert len(seen_offsets) >= 10 and seen_flips == {False, True}


def test_random_crop_flip_with_no_padding_only_flips():
    x = _distinct_batch()
    out = random_crop_flip(x, torch.Generator().manual_seed(5), pad=0)
    flipped = [torch.equal(o, i.flip(2)) for o, i in zip(out, x, strict=True)]
    kept = [torch.equal(o, i) for o, i in zip(out, x, strict=True)]
    assert all(
        f != k for f, k in zip(flipped, kept, strict=True)
    )  # exactly one of the two, per sample
    assert any(flipped) and any(kept)


def test_random_crop_flip_is_deterministic_per_generator_seed():
    x = _distinct_batch()
    a = random_crop_flip(x, torch.Generator().manual_seed(7))
    b = random_crop_flip(x, torch.Generator().manual_seed(7))
    c = random_crop_flip(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_the_cpu_slices_and_the_gpu_gather_crop_and_flip_alike():
    from engine.data.loader import _crop_flip_gather, _crop_flip_slices

    g = torch.Generator().manual_seed(3)
    pad = 4
    padded = torch.nn.functional.pad(torch.randn(37, 3, 12, 10), (pad, pad, pad, pad))
    oy, ox = torch.randint(0, 9, (37,), generator=g), torch.randint(0, 9, (37,), generator=g)
    flip = torch.rand(37, generator=g) < 0.5
    slices = _crop_flip_slices(padded, oy, ox, flip, pad)
    assert slices.shape == (37, 3, 12, 10)
    assert torch.equal(slices, _crop_flip_gather(padded, oy, ox, flip, pad))


def test_the_normaliser_is_the_textbook_formula_and_leaves_its_input_alone():
    from engine.data.loader import Normaliser

    mean, std = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
    norm = Normaliser(mean, std, torch.device("cpu"))
    x8 = torch.randint(0, 256, (5, 3, 7, 7), dtype=torch.uint8)
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(norm(x8), (x8.float() / 255 - m) / s, atol=1e-5)
    x = x8.float()
    before = x.clone()
    norm(x)
    assert torch.equal(x, before)  # a float input is copied, not scaled in place
