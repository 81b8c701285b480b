"""BYOL's two-view augmentation, done on whole batches on the device (no per-image Python).

Each view of each image gets its own random resized crop (with horizontal flip), colour
jitter, grayscale and Gaussian blur, as in BYOL (Grill et al., 2020, table 6) without
solarisation; the two views differ only in how often they are blurred (1.0 and 0.1). The
blur scales with the image, as the paper's 23-px kernel at 224 px: at 32 px it is all but
invisible, as CIFAR recipes leave it out. Colour jitter is applied in a fixed order
(brightness, contrast, saturation, hue) and clamped once, where torchvision shuffles the
order per image and clamps after each. Every
random number comes from a generator keyed by (seed, epoch, batch, view): a resumed run sees
the views an uninterrupted one would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.data.colour import random_colour_jitter, to_gray
from engine.data.loader import BatchLoader, _generator, random_resized_crop


@dataclass(frozen=True)
class ViewAugment:
    crop_scale: tuple[float, float] = (0.2, 1.0)  # area kept; BYOL's 0.08 erases a small digit
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 1.0
    # Gaussian blur sigma in [0.1, 2.0] at 224 px with a kernel ~10% of the side, scaled
    # with the image: at 32 px the blur is mild, as the paper's recipe implies.
    blur_sigma: tuple[float, float] = (0.1, 2.0)

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """x: (B, 3, H, W) floats in [0, 1] -> an augmented view of the same shape."""
        x = self.resized_crop(x, g)
        x = self.colour_jitter(x, g)
        x = self.grayscale(x, g)
        return self.blur(x, g)

    def _rand(self, n: int, g: torch.Generator, device) -> torch.Tensor:
        return torch.rand(n, generator=g).to(device)

    def resized_crop(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return random_resized_crop(x, g, x.shape[-1], self.crop_scale, self.crop_ratio,
                                   self.flip_p)  # fmt: skip

    def colour_jitter(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return random_colour_jitter(x, g, self.brightness, self.contrast, self.saturation,
                                    self.hue, self.jitter_p)  # fmt: skip

    def grayscale(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        apply = self._rand(len(x), g, x.device).view(-1, 1, 1, 1) < self.grayscale_p
        return torch.where(apply, to_gray(x).expand_as(x), x)

    def blur(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        b, c, h, w = x.shape
        apply = self._rand(b, g, x.device) < self.blur_p
        scale = min(h, w) / 224
        lo, hi = self.blur_sigma
        sigma = (lo + (hi - lo) * self._rand(b, g, x.device)) * scale  # (B,)
        radius = max(1, round(0.05 * min(h, w)))  # kernel 2r+1, ~10% of the side
        taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
        kernel = torch.exp(-(taps**2) / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))
        kernel = torch.where(apply[:, None], kernel, (taps == 0).to(x.dtype))  # identity
        kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, K)
        # Separable: one depthwise pass along rows, one along columns, per image and channel.
        y = F.pad(x.reshape(1, b * c, h, w), (radius, radius, radius, radius), mode="reflect")
        y = F.conv2d(y, kernel[:, None, None, :], groups=b * c)
        y = F.conv2d(y, kernel[:, None, :, None], groups=b * c)
        return y.view(b, c, h, w)


# BYOL's two views: the same recipe, blurred always in one and rarely in the other.
VIEW_A = ViewAugment(blur_p=1.0)
VIEW_B = ViewAugment(blur_p=0.1)


class TwoViewLoader(BatchLoader):
    """Batches of (views (B, 2, 3, H, W) normalised, labels (B,), positions (B,)): two
    augmentations of each image. Labels ride along only for the kNN monitor. Evaluation
    (`batches()` with no epoch) always draws the same views, so its loss is comparable."""

    def __init__(self, *args, views: tuple[ViewAugment, ViewAugment] = (VIEW_A, VIEW_B), **kw):
        super().__init__(*args, **kw)
        self.views = views

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self.order(epoch).to(self.device)
        for b in range(start, len(self)):
            idx = self.batch_slice(order, b)
            yield self.two_views(self.images[idx], epoch, b), self.labels[idx], idx

    def two_views(self, images_uint8: torch.Tensor, epoch: int = 0, batch: int = 0):
        x = images_uint8.float() / 255.0
        views = [
            (aug(x, _generator(self.seed, epoch, batch, 2 + v)) - self.mean) / self.std
            for v, aug in enumerate(self.views)
        ]
        return torch.stack(views, 1)
