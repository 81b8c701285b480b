"""Is self-supervised training learning anything? Two cheap signs, every epoch.

- Collapse: the per-dimension standard deviation of L2-normalised projections, averaged over
  dimensions. Spread over the sphere it is about 1/sqrt(d); collapsed to one point, 0.
- kNN accuracy: label each held-out image by a weighted vote of its k nearest training
  images in the backbone's feature space (cosine similarity, weights exp(sim / T), as in
  Wu et al. 2018). Labels are used here only; training never sees them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from engine.data.loader import BatchLoader
from engine.ssl.byol import BYOLOutput
from engine.train.tasks import EvalResult
from engine.train.trainer import eval_mode

# Warn when the projections' spread falls under this fraction of a healthy 1/sqrt(d).
COLLAPSE_FRACTION = 0.25


def collapse_threshold(projection_dim: int) -> float:
    return COLLAPSE_FRACTION / math.sqrt(projection_dim)


def normalised_std(z: torch.Tensor) -> float:
    """Mean over dimensions of the std of the L2-normalised rows of z (N, d)."""
    return float(F.normalize(z.float(), dim=1).std(0, unbiased=False).mean())


@torch.inference_mode()
def knn_predict(
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    queries: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
) -> torch.Tensor:
    """Predicted class (N,) of each query row by its k most cosine-similar bank rows."""
    bank = F.normalize(bank.float(), dim=1)
    k = min(k, len(bank))
    preds = []
    for chunk in F.normalize(queries.float(), dim=1).split(1024):
        sim, idx = (chunk @ bank.T).topk(k, dim=1)  # (n, k)
        votes = torch.zeros(len(chunk), num_classes, device=chunk.device)
        votes.scatter_add_(1, bank_labels[idx], (sim / temperature).exp())
        preds.append(votes.argmax(1))
    return torch.cat(preds)


@torch.inference_mode()
def backbone_features(model: torch.nn.Module, loader: BatchLoader):
    """(features (N, D), labels (N,)) of a loader's images, in eval mode."""
    feats, labels = [], []
    with eval_mode(model):
        for x, y, _ in loader.batches():
            feats.append(model.forward_features(x).float())
            labels.append(y)
    return torch.cat(feats), torch.cat(labels)


@dataclass
class KnnProbe:
    """What the held-out images look like to the backbone: features, labels, kNN predictions."""

    features: torch.Tensor
    labels: torch.Tensor
    predictions: torch.Tensor

    @property
    def accuracy(self) -> float:
        return float((self.predictions == self.labels).float().mean())


def knn_probe(model, bank_loader, query_loader, num_classes, k=20, temperature=0.07) -> KnnProbe:
    bank, bank_labels = backbone_features(model, bank_loader)
    feats, labels = backbone_features(model, query_loader)
    preds = knn_predict(bank, bank_labels, feats, num_classes, k, temperature)
    return KnnProbe(feats.cpu(), labels.cpu(), preds.cpu())


@dataclass
class SelfSupervised:
    """The Trainer's task for BYOL: no training accuracy; evaluation is the BYOL loss on
    fixed views of the validation images, the collapse monitor, and the kNN accuracy of the
    backbone's features (what best.pt is chosen by). Without labelled images (no loaders)
    the kNN monitor is off and best.pt is the lowest validation loss's."""

    model: torch.nn.Module
    bank_loader: BatchLoader | None  # clean labelled training images: the kNN memory bank
    query_loader: BatchLoader | None  # clean labelled validation images
    num_classes: int
    k: int = 20
    temperature: float = 0.07
    score_name: str = "knn_acc"
    train_accuracy: bool = False
    last_probe: KnnProbe | None = field(default=None, repr=False)  # read by the snapshots

    def counts(self, out: BYOLOutput, y: torch.Tensor) -> tuple[torch.Tensor, int]:
        return torch.zeros((), dtype=torch.long, device=y.device), len(y)

    def tally(self, device: torch.device) -> _SelfSupervisedTally:
        return _SelfSupervisedTally(self, device)

    @property
    def knn_on(self) -> bool:
        return self.bank_loader is not None and self.query_loader is not None

    def __post_init__(self) -> None:
        if not self.knn_on:
            self.score_name = "loss"  # best.pt: the lowest validation loss

    def metric_of(self, score: float) -> float:
        """The validation metric of a best score: kNN accuracy, or without kNN the loss (the
        score is 1 / (1 + loss), so that higher is better, as the Trainer keeps it)."""
        return score if self.knn_on else 1.0 / score - 1.0

    def probe(self) -> KnnProbe | None:
        if not self.knn_on:
            return None
        self.last_probe = knn_probe(
            self.model, self.bank_loader, self.query_loader, self.num_classes, self.k,
            self.temperature,
        )  # fmt: skip
        return self.last_probe


class _SelfSupervisedTally:
    def __init__(self, task: SelfSupervised, device: torch.device) -> None:
        self.task = task
        self.loss_sum = torch.zeros((), device=device)
        self.count = 0
        self.projections: list[torch.Tensor] = []

    def add(self, out: BYOLOutput, y: torch.Tensor, loss: torch.Tensor) -> None:
        self.loss_sum += loss * len(y)
        self.count += len(y)
        self.projections.append(out.projections)

    def result(self) -> EvalResult:
        std = normalised_std(torch.cat(self.projections))
        loss = self.loss_sum.item() / max(self.count, 1)
        probe = self.task.probe()
        if probe is None:  # kNN off: best.pt by the validation loss (a score falls as it rises)
            empty = torch.zeros(0, dtype=torch.long)
            return EvalResult(loss, math.nan, empty, empty, score=1.0 / (1.0 + loss),
                              metrics={"collapse_std": std})  # fmt: skip
        return EvalResult(
            loss, probe.accuracy, probe.predictions,
            probe.labels, metrics={"knn_acc": probe.accuracy, "collapse_std": std},
        )  # fmt: skip
