"""What the Trainer counts and scores: one class per image, or one class per pixel.

A task turns a batch's logits and targets into (correct, counted) for the running training
accuracy, and accumulates a whole evaluation into an `EvalResult`. Everything stays on the
device until the end of a pass: no host sync per batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class EvalResult:
    loss: float
    acc: float  # images correct (classification) or pixels correct (segmentation)
    predictions: torch.Tensor  # (N,) on the CPU; empty for segmentation (see `confusion`)
    labels: torch.Tensor  # (N,) on the CPU; empty for segmentation
    score: float | None = None  # what best.pt is chosen by; None: acc
    metrics: dict[str, float] = field(default_factory=dict)  # more values to log, e.g. mIoU
    confusion: np.ndarray | None = None  # (true, predicted) counts, when the task keeps one
    # Per test item, for paired comparisons (engine.analysis.stats): segmentation: per-image
    # "tp", "predicted", "actual" (images, classes); few-shot: "episode_acc" (episodes,).
    per_item: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.score is None:
            self.score = self.acc


class Classification:
    """One label per sample; scored by accuracy."""

    score_name = "acc"

    def counts(self, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
        return (logits.argmax(1) == y).sum(), len(y)

    def tally(self, device: torch.device) -> _ClassificationTally:
        return _ClassificationTally(device)


class _ClassificationTally:
    def __init__(self, device: torch.device) -> None:
        self.loss_sum = torch.zeros((), device=device)
        self.preds: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def add(self, logits: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        self.loss_sum += loss * len(y)
        self.preds.append(logits.argmax(1))
        self.labels.append(y)

    def result(self) -> EvalResult:
        p, t = torch.cat(self.preds).cpu(), torch.cat(self.labels).cpu()
        n = max(len(t), 1)
        return EvalResult(self.loss_sum.item() / n, (p == t).float().sum().item() / n, p, t)


class Episodic(Classification):
    """Few-shot episodes, one per batch: accuracy over all queries (= the mean episode
    accuracy: every episode has as many queries) and its 95% confidence interval over
    episodes, 1.96 x std / sqrt(episodes), logged as `acc_ci95`."""

    def tally(self, device: torch.device) -> _EpisodicTally:
        return _EpisodicTally(device)


class _EpisodicTally(_ClassificationTally):
    def __init__(self, device: torch.device) -> None:
        super().__init__(device)
        self.per_episode: list[torch.Tensor] = []

    def add(self, logits: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        super().add(logits, y, loss)
        self.per_episode.append((logits.argmax(1) == y).float().mean())

    def result(self) -> EvalResult:
        r = super().result()
        acc = torch.stack(self.per_episode).cpu().double()
        r.metrics = {"acc_ci95": float(1.96 * acc.std(unbiased=False) / len(acc) ** 0.5)}
        r.per_item = {"episode_acc": acc.numpy()}
        return r


@dataclass(frozen=True)
class Segmentation:
    """One label per pixel; scored by mean IoU over the classes 0..num_classes-1.

    Targets equal to `ignore_index` (DeepGlobe's Unknown) carry no loss and no accuracy, but a
    class predicted there still counts as a false positive of that class: IoU as in the
    seed's course, TP / (TP + FP + FN) summed over the whole set, not averaged per image.
    """

    num_classes: int
    ignore_index: int
    class_names: tuple[str, ...] = ()
    score_name: str = "miou"

    def counts(self, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        valid = y != self.ignore_index
        return ((logits.argmax(1) == y) & valid).sum(), valid.sum()

    def tally(self, device: torch.device) -> _SegmentationTally:
        return _SegmentationTally(self, device)


class _SegmentationTally:
    def __init__(self, task: Segmentation, device: torch.device) -> None:
        self.task = task
        self.rows = max(task.num_classes, task.ignore_index + 1)  # true classes incl. Unknown
        self.loss_sum = torch.zeros((), device=device)
        self.cm = torch.zeros(self.rows * task.num_classes, device=device, dtype=torch.long)
        self.per_image: list[torch.Tensor] = []  # (B, rows, classes) counts per batch

    def add(self, logits: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        valid = (y != self.task.ignore_index).sum()
        self.loss_sum += loss * valid
        c, b = self.task.num_classes, len(y)
        flat = y.long().flatten(1) * c + logits.argmax(1).flatten(1)  # (B, pixels)
        flat += torch.arange(b, device=flat.device).unsqueeze(1) * (self.rows * c)
        counts = torch.bincount(flat.flatten(), minlength=b * self.rows * c)
        self.per_image.append(counts.view(b, self.rows, c))
        self.cm += counts.view(b, -1).sum(0)

    def result(self) -> EvalResult:
        cm = self.cm.view(self.rows, self.task.num_classes).cpu().numpy()
        scored = cm[: self.task.num_classes]  # rows of the scored classes
        counted = max(int(scored.sum()), 1)
        iou = iou_per_class(cm, self.task.num_classes)
        names = self.task.class_names or tuple(str(i) for i in range(self.task.num_classes))
        defined = iou[~np.isnan(iou)]
        metrics = {"miou": float(defined.mean()) if len(defined) else 0.0}
        metrics.update(
            {f"iou/{name}": float(v) for name, v in zip(names, iou, strict=False) if v == v}
        )
        empty = torch.empty(0, dtype=torch.long)
        return EvalResult(
            self.loss_sum.item() / counted, float(np.trace(scored)) / counted, empty, empty,
            score=metrics["miou"], metrics=metrics, confusion=cm, per_item=self._per_image(),
        )  # fmt: skip

    def _per_image(self) -> dict[str, np.ndarray]:
        """Per image and class: true positives, predicted pixels (Unknown rows included, as
        in the IoU) and actual pixels."""
        if not self.per_image:
            return {}
        c = self.task.num_classes
        per = torch.cat(self.per_image).cpu().numpy()  # (images, rows, classes)
        tp = np.diagonal(per[:, :c, :c], axis1=1, axis2=2)
        return {"tp": tp, "predicted": per.sum(1), "actual": per[:, :c].sum(2)}


def iou_per_class(cm: np.ndarray, num_classes: int) -> np.ndarray:
    """IoU of classes 0..num_classes-1 from a (true, predicted) count matrix whose extra rows
    (true classes that are not scored, e.g. Unknown) still count as false positives.
    A class that is neither present nor predicted has no IoU (NaN; the course's formula
    divides 0 by 0 there): the mean IoU is then over the classes that have one."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm[:num_classes, :num_classes])
    predicted = cm[:, :num_classes].sum(0)  # tp + fp, Unknown rows included
    actual = cm[:num_classes].sum(1)  # tp + fn
    union = predicted + actual - tp
    return np.divide(tp, union, out=np.full_like(tp, np.nan), where=union > 0)
