"""BYOL (Grill et al., NeurIPS 2020): an online network learns to predict, from one view of
an image, a slowly moving target network's projection of another view. No negatives; the
predictor and the target's stop-gradient and moving average are what keep it from collapse.

The online backbone is `body` (the same module names as a transfer model's `body`), so a BYOL
checkpoint loads into the Transfer page's backbones as it is.
"""

from __future__ import annotations

import copy
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class MLPHead(nn.Sequential):
    """BYOL's projector and predictor: Linear - BatchNorm - ReLU - Linear."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )


class BYOLOutput(NamedTuple):
    """Both views of a batch stacked view-major: rows [0, B) are view a, [B, 2B) view b."""

    predictions: torch.Tensor  # (2B, d) online predictor outputs
    targets: torch.Tensor  # (2B, d) target projections, no gradient
    projections: torch.Tensor  # (2B, d) online projections (the collapse monitor reads them)


class BYOL(nn.Module):
    def __init__(
        self, body: nn.Module, feature_dim: int, hidden_dim: int = 4096, projection_dim: int = 256
    ) -> None:
        super().__init__()
        self.body = body  # (B, 3, H, W) -> (B, feature_dim)
        self.projector = MLPHead(feature_dim, hidden_dim, projection_dim)
        self.predictor = MLPHead(projection_dim, hidden_dim, projection_dim)
        self.target_body = copy.deepcopy(body)
        self.target_projector = copy.deepcopy(self.projector)
        for p in self.target_parameters():
            p.requires_grad_(False)

    def target_parameters(self):
        yield from self.target_body.parameters()
        yield from self.target_projector.parameters()

    def online_parameters(self):
        yield from self.body.parameters()
        yield from self.projector.parameters()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The representation that transfers: the online backbone's features."""
        return self.body(x)

    def forward(self, views: torch.Tensor) -> BYOLOutput:
        b = views.shape[0]
        x = views.transpose(0, 1).reshape(2 * b, *views.shape[2:])  # (2B, 3, H, W)
        z = self.projector(self.body(x))  # both views in one batch: shared BatchNorm stats
        with torch.no_grad():  # stop-gradient: the target only moves by the average below
            t = self.target_projector(self.target_body(x))
        return BYOLOutput(self.predictor(z), t, z)

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """target <- momentum * target + (1 - momentum) * online, parameter by parameter."""
        targets, online = list(self.target_parameters()), list(self.online_parameters())
        assert len(targets) == len(online)
        torch._foreach_lerp_(targets, [o.detach() for o in online], 1 - momentum)


def byol_loss(out: BYOLOutput, labels: torch.Tensor | None = None) -> torch.Tensor:
    """2 - 2 cos(prediction of one view, target projection of the other), summed over both
    directions and averaged over the batch: 0 when perfect, 4 for orthogonal, at most 8."""
    p = F.normalize(out.predictions, dim=1)
    t = F.normalize(out.targets, dim=1)
    b = len(p) // 2
    swapped = torch.cat([t[b:], t[:b]])  # view a's prediction meets view b's target, and back
    per_pair = 2 - 2 * (p * swapped).sum(1)  # (2B,)
    return per_pair.view(2, b).sum(0).mean()


def target_momentum(step: int, total_steps: int, base: float = 0.996) -> float:
    """BYOL's schedule: 1 - (1 - base) (cos(pi k / K) + 1) / 2, from `base` at step 0 to 1."""
    k = min(max(step, 0), total_steps)
    return 1 - (1 - base) * (math.cos(math.pi * k / max(total_steps, 1)) + 1) / 2
