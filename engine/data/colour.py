"""Colour jitter on whole batches of [0, 1] images, on the device: brightness, contrast,
saturation and hue (a rotation of the chroma plane in YIQ space), each image its own
factors. Used by BYOL's views and by the classification augmentation."""

from __future__ import annotations

import math

import torch

# RGB -> YIQ: a hue shift is a rotation of the (I, Q) chroma plane.
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_INV = torch.linalg.inv(_YIQ)
_GRAY = torch.tensor([0.299, 0.587, 0.114])


def random_colour_jitter(
    x: torch.Tensor, g: torch.Generator, brightness: float = 0.4, contrast: float = 0.4,
    saturation: float = 0.2, hue: float = 0.1, p: float = 0.8,
) -> torch.Tensor:  # fmt: skip
    """x (B, 3, H, W) in [0, 1]: with probability p per image, brightness and contrast
    scaled by 1 ± `brightness` / `contrast`, saturation by 1 ± `saturation`, hue turned by
    ± `hue` of a circle (fixed order, clamped once at the end)."""
    b = len(x)
    r = lambda: torch.rand(b, generator=g).to(x.device).view(b, 1, 1, 1)  # noqa: E731
    apply = r() < p
    bright = 1 + brightness * (2 * r() - 1)
    contr = 1 + contrast * (2 * r() - 1)
    sat = 1 + saturation * (2 * r() - 1)
    turns = hue * (2 * r() - 1)
    y = x * bright
    mean = to_gray(y).mean((2, 3), keepdim=True)
    y = (y - mean) * contr + mean
    gray = to_gray(y)
    y = gray + (y - gray) * sat
    y = _rotate_hue(y, turns.view(b))
    return torch.where(apply, y.clamp(0, 1), x)


def to_gray(x: torch.Tensor) -> torch.Tensor:
    return (x * _GRAY.to(x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)


def _rotate_hue(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate each image's chroma by `turns` (B,) of a full circle, in YIQ space."""
    yiq_m = _YIQ.to(x.device)
    yiq = torch.einsum("ij,bjhw->bihw", yiq_m, x)
    angle = 2 * math.pi * turns
    cos, sin = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)
    i, q = yiq[:, 1], yiq[:, 2]
    yiq = torch.stack([yiq[:, 0], cos * i - sin * q, sin * i + cos * q], 1)
    return torch.einsum("ij,bjhw->bihw", _YIQ_INV.to(x.device), yiq)
