"""Analysis of what a run learned: projections, classification metrics, neighbours (pure\nfunctions; reading a run's snapshots and caching its projections is engine.inspect's)."""

from engine.analysis.metrics import accuracy, confusion_matrix, normalise_rows, per_class_accuracy
from engine.analysis.neighbours import nearest_neighbours
from engine.analysis.projections import (
    DEFAULT_PARAMS,
    METHODS,
    align_procrustes,
    project,
    resolve_params,
)

__all__ = [
    "DEFAULT_PARAMS",
    "METHODS",
    "accuracy",
    "align_procrustes",
    "confusion_matrix",
    "nearest_neighbours",
    "normalise_rows",
    "per_class_accuracy",
    "project",
    "resolve_params",
]
