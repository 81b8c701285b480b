"""The split that every classifier in the workbench has (as timm): features, then head."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """`forward_features(x) -> (B, D)` is the penultimate embedding; `forward_head(f)` the logits.

    The embeddings page, attribution and linear probes use `forward_features` directly,
    so no model needs hooks into its internals.
    """

    num_features: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def freeze(self, part: nn.Module) -> None:
        """Keep `part` (a backbone) fixed: no gradients, and eval mode, so its BatchNorm
        statistics stay too, through every later `.train()`."""
        part.requires_grad_(False)
        part.eval()
        self._frozen_parts = [*getattr(self, "_frozen_parts", []), part]  # not registered

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        for part in getattr(self, "_frozen_parts", ()):
            part.eval()
        return self
