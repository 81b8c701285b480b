"""Batches from preloaded tensors, with augmentation done per batch on the device (as airbench).

The order of batch `b` in epoch `e` is a pure function of (seed, e, b): resuming mid-epoch
replays exactly the batches that an uninterrupted run would have seen.

With several processes (engine.train.distributed) every process holds the whole dataset and
takes its share of each batch of that same order (`shard`): the same batches, split.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from engine.data.colour import random_colour_jitter
from engine.data.datasets import ImageSet


def _generator(*key: int) -> torch.Generator:
    g = torch.Generator()
    seed = 0
    for k in key:  # a simple, stable mix of the key into one 63-bit seed
        seed = (seed * 1_000_003 + int(k) + 0x9E3779B9) % (2**63 - 1)
    return g.manual_seed(seed)


class Normaliser:
    """(images / 255 - mean) / std as one multiply-add on a fresh float copy: ~25x faster on
    the CPU than the three broadcast passes it replaces (bench/data_path.py)."""

    def __init__(self, mean: list[float], std: list[float], device: torch.device) -> None:
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * self.std)
        self.shift = -self.mean / self.std

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (or floats on the 0-255 scale) -> normalised float32; never in place."""
        return images.to(torch.float32, copy=True).mul_(self.scale).add_(self.shift)


def random_crop_flip(x: torch.Tensor, g: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with zero padding `pad` and horizontal flip, for a whole batch at once."""
    b = x.shape[0]
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    flip = torch.rand(b, generator=g) < 0.5
    # The same result either way: on the CPU one slice copy per (dy, dx) offset is ~2x faster
    # than the gather; a GPU prefers the single gather kernel (and no host syncs).
    crop = _crop_flip_slices if x.device.type == "cpu" else _crop_flip_gather
    return crop(padded, oy, ox, flip, pad)


def random_resized_crop(
    x: torch.Tensor,
    g: torch.Generator,
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_p: float = 0.5,
) -> torch.Tensor:
    """torchvision's RandomResizedCrop(size, scale, ratio) + RandomHorizontalFlip(flip_p) for
    a whole batch at once: (B, C, H, W) -> (B, C, size, size), bilinear, each image its own
    crop. As torchvision: up to 10 draws of (area, aspect ratio) per image, the first whose
    crop fits inside it; none fits (e.g. the whole area at a wide ratio): all of it."""
    b = len(x)
    r = lambda *shape: torch.rand(*shape, generator=g).to(x.device)  # noqa: E731
    tries = 10
    area = scale[0] + (scale[1] - scale[0]) * r(b, tries)
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * r(b, tries))
    ws, hs = torch.sqrt(area * aspect), torch.sqrt(area / aspect)  # fractions of the side
    fits = (ws <= 1) & (hs <= 1)
    first = torch.where(fits.any(1), fits.float().argmax(1), 0)
    pick = lambda v: torch.where(fits.any(1), v.gather(1, first[:, None])[:, 0], 1.0)  # noqa: E731
    w, h = pick(ws), pick(hs)
    cx = (1 - w) * (2 * r(b) - 1)  # centre in [-1 + w, 1 - w] (grid coordinates)
    cy = (1 - h) * (2 * r(b) - 1)
    flip = torch.where(r(b) < flip_p, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = torch.nn.functional.affine_grid(theta, [b, x.shape[1], size, size], align_corners=False)
    return torch.nn.functional.grid_sample(
        x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision's CenterCrop(size) of square images: (B, C, H, H) -> (B, C, size, size)."""
    top = (x.shape[-2] - size) // 2
    left = (x.shape[-1] - size) // 2
    return x[..., top : top + size, left : left + size]


def random_rotation(x: torch.Tensor, g: torch.Generator, degrees: float) -> torch.Tensor:
    """Each image of the batch turned by its own angle in [-degrees, degrees] about its centre
    (bilinear; corners outside the image are zero, as torchvision's RandomRotation fills)."""
    b = x.shape[0]
    angle = (torch.rand(b, generator=g) * 2 - 1) * degrees * torch.pi / 180
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros(b)], 1),
                         torch.stack([sin, cos, torch.zeros(b)], 1)], 1)  # fmt: skip
    grid = torch.nn.functional.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, align_corners=False)


def _crop_flip_slices(padded, oy, ox, flip, pad: int) -> torch.Tensor:
    b, c, hp, wp = padded.shape
    h, w = hp - 2 * pad, wp - 2 * pad
    out = padded.new_empty(b, c, h, w)
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            sel = ((oy == dy) & (ox == dx)).nonzero().squeeze(1)
            if len(sel):
                out[sel] = padded[sel, :, dy : dy + h, dx : dx + w]
    flipped = flip.nonzero().squeeze(1)
    out[flipped] = out[flipped].flip(3)
    return out


def _crop_flip_gather(padded, oy, ox, flip, pad: int) -> torch.Tensor:
    b, c, hp, wp = padded.shape
    h, w, dev = hp - 2 * pad, wp - 2 * pad, padded.device
    oy, ox = oy.to(dev), ox.to(dev)
    rows = (oy[:, None] + torch.arange(h, device=dev))[:, None, :, None]  # (B, 1, H, 1)
    cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, None, :]  # (B, 1, 1, W)
    bi = torch.arange(b, device=dev)[:, None, None, None]
    ci = torch.arange(c, device=dev)[None, :, None, None]
    out = padded[bi, ci, rows, cols]
    return torch.where(flip.to(dev)[:, None, None, None], out.flip(3), out)


class BatchLoader:
    """Iterates (images float (B, 3, H, W) normalised, labels (B,), positions (B,)) batches."""

    def __init__(
        self,
        data: ImageSet,
        batch_size: int,
        mean: list[float],
        std: list[float],
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        augment: bool = False,
        seed: int = 0,
        colour_jitter: bool = False,
        rotate: float = 0.0,
        crop: int = 0,
    ) -> None:
        self.device = torch.device(device)
        # torchvision's transfer-learning tutorial: augmented batches are RandomResizedCrop(crop)
        # + flip, the others CenterCrop(crop); 0: the images as they are (crop/flip: pad 4).
        self.crop = crop
        self.rotate = rotate  # with augment: degrees of random rotation, after the crop/flip
        self.colour_jitter = colour_jitter  # with augment: before the crop and flip
        self.images = data.images.to(self.device)  # uint8 stays small on the device
        self.labels = data.labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle, self.augment, self.seed = shuffle, augment, seed
        self._normaliser = Normaliser(mean, std, self.device)
        self.mean, self.std = self._normaliser.mean, self._normaliser.std
        self.rank, self.world = 0, 1  # this process's share of every batch (see `shard`)

    def shard(self, rank: int, world: int) -> BatchLoader:
        """From now on, yield process `rank`'s share (of `world`) of every batch. Batch `b` is
        the same set of images whatever `world` is: `batch_size` stays the global batch, each
        process takes about batch_size / world of it (DistributedSampler's job, per batch)."""
        if world > 1 and self.shuffle and self.num_samples < 2 * world:
            raise ValueError(
                f"{self.num_samples} training images are too few for {world} processes "
                "(each needs at least two per batch)"
            )
        self.rank, self.world = rank, world
        return self

    def __len__(self) -> int:
        n = len(self.labels)
        if self.shuffle and n > self.batch_size and 0 < n % self.batch_size < 2 * self.world:
            # A training batch of one breaks BatchNorm (one value per channel at 1x1): a last
            # batch that would leave a process fewer than two images joins the batch before
            # it (one process: a last batch of one).
            return n // self.batch_size
        return math.ceil(n / self.batch_size)

    def batch_slice(self, order: torch.Tensor, b: int) -> torch.Tensor:
        """The positions of batch `b` of an epoch's `order`: the last batch takes the rest."""
        end = (b + 1) * self.batch_size if b < len(self) - 1 else len(order)
        return order[b * self.batch_size : end]

    def batch_length(self, b: int) -> int:
        """Images in batch `b`, all processes together."""
        end = (b + 1) * self.batch_size if b < len(self) - 1 else self.num_samples
        return end - b * self.batch_size

    def share(self, idx: torch.Tensor) -> torch.Tensor:
        """This process's positions of a batch: every `world`-th one from its rank on (the
        interleaving of DistributedSampler, within each batch), so the ranks' shares differ
        by at most one image and together are the batch a single process would take."""
        return idx if self.world == 1 else idx[self.rank :: self.world]

    def _augment_key(self, epoch: int, b: int) -> tuple[int, ...]:
        if self.world == 1:
            return (self.seed, epoch, b)
        # Each process draws the random crops of its own share (not bit-identical to one
        # process's draws; BatchNorm's per-process statistics differ from it anyway).
        return (self.seed, epoch, b, self.rank, self.world)

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    def order(self, epoch: int) -> torch.Tensor:
        n = len(self.labels)
        if not self.shuffle:
            return torch.arange(n)
        return torch.randperm(n, generator=_generator(self.seed, epoch))

    def normalise(self, images_uint8: torch.Tensor) -> torch.Tensor:
        return self._normaliser(images_uint8)

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self.order(epoch).to(self.device)
        for b in range(start, len(self)):
            idx = self.share(self.batch_slice(order, b))
            x, key = self.images[idx], self._augment_key(epoch, b)
            if self.augment and self.colour_jitter:  # on the [0, 1] scale, as BYOL's views
                x = random_colour_jitter(x.float() / 255, _generator(*key, 2)) * 255
            x = self.normalise(x)
            if self.crop and self.augment:
                x = random_resized_crop(x, _generator(*key, 1), self.crop)
            elif self.crop:
                x = center_crop(x, self.crop)
            elif self.augment:
                x = random_crop_flip(x, _generator(*key, 1))
                if self.rotate:
                    x = random_rotation(x, _generator(*key, 3), self.rotate)
            yield x, self.labels[idx], idx

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        return self.batches()


class FeatureLoader(BatchLoader):
    """Batches of precomputed features `(N, D)` float instead of images: no normalisation and
    no augmentation, and the same batch order as a BatchLoader with the same seed."""

    def __init__(self, data: ImageSet, batch_size: int, device="cpu", shuffle=False, seed=0):
        super().__init__(data, batch_size, [0.0], [1.0], device, shuffle, False, seed)

    def normalise(self, features: torch.Tensor) -> torch.Tensor:
        return features


class SegmentationLoader(BatchLoader):
    """Batches of (images, masks (B, H, W) int64, positions). Augmentation: the same random
    flips and 90-degree rotation of image and mask (aerial images have no "up")."""

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self.order(epoch).to(self.device)
        for b in range(start, len(self)):
            idx = self.batch_slice(order, b)
            x, y = self.normalise(self.images[idx]), self.labels[idx].long()
            if self.augment:
                x, y = dihedral(x, y, _generator(self.seed, epoch, b, 1))
            yield x, y, idx


def dihedral(x: torch.Tensor, y: torch.Tensor, g: torch.Generator):
    """Per sample: horizontal flip, vertical flip, transpose (square inputs), each with p=0.5;
    together the eight symmetries of a square, applied alike to images and masks."""
    flags = (torch.rand(3, len(x), generator=g) < 0.5).to(x.device)
    for i, dims in enumerate(((-1,), (-2,), None)):
        if dims is None and x.shape[-1] != x.shape[-2]:
            break
        fx = x.transpose(-1, -2) if dims is None else x.flip(dims)
        fy = y.transpose(-1, -2) if dims is None else y.flip(dims)
        x = torch.where(flags[i][:, None, None, None], fx, x)
        y = torch.where(flags[i][:, None, None], fy, y)
    return x, y
