"""Classification losses for long-tailed training data, given the training count per class.

- Balanced Softmax (Ren et al., NeurIPS 2020): cross-entropy on logits + log n_j. Training
  on the skewed label distribution then fits the balanced one; prediction is argmax of the
  plain logits (nothing changes at test time).
- Class-weighted cross-entropy: each class weighted by N / (C n_j), so every class counts
  as much in total.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LOSSES = ("cross_entropy", "balanced_softmax", "weighted_cross_entropy")


def balanced_softmax_loss(
    logits: torch.Tensor, labels: torch.Tensor, log_prior: torch.Tensor
) -> torch.Tensor:
    return F.cross_entropy(logits + log_prior, labels)


def classification_loss(
    name: str, train_counts: list[int], device: torch.device | str = "cpu"
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss `name` for training data with `train_counts[j]` images of class j."""
    counts = torch.tensor(train_counts, dtype=torch.float32, device=device).clamp_min(1)
    if name == "cross_entropy":
        return F.cross_entropy
    if name == "balanced_softmax":
        log_prior = counts.log()
        return lambda logits, labels: balanced_softmax_loss(logits, labels, log_prior)
    if name == "weighted_cross_entropy":
        weights = counts.sum() / (len(counts) * counts)
        return lambda logits, labels: F.cross_entropy(logits, labels, weight=weights)
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
