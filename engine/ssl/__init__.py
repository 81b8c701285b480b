"""Self-supervised pretraining: BYOL's model and loss, its two-view augmentation, and the
monitors (collapse, kNN accuracy) that say whether it is learning."""

from engine.ssl.augment import VIEW_A, VIEW_B, TwoViewLoader, ViewAugment
from engine.ssl.byol import BYOL, BYOLOutput, MLPHead, byol_loss, target_momentum
from engine.ssl.monitor import (
    KnnProbe,
    SelfSupervised,
    collapse_threshold,
    knn_predict,
    knn_probe,
    normalised_std,
)

__all__ = [
    "BYOL",
    "BYOLOutput",
    "KnnProbe",
    "MLPHead",
    "SelfSupervised",
    "TwoViewLoader",
    "VIEW_A",
    "VIEW_B",
    "ViewAugment",
    "byol_loss",
    "collapse_threshold",
    "knn_predict",
    "knn_probe",
    "normalised_std",
    "target_momentum",
]
