"""Analysis of what a run learned: embedding projections, classification metrics, neighbours."""

from engine.analysis.metrics import accuracy, confusion_matrix, normalise_rows, per_class_accuracy
from engine.analysis.neighbours import nearest_neighbours
from engine.analysis.projections import (
    DEFAULT_PARAMS,
    METHODS,
    align_procrustes,
    load_embedding,
    project,
    project_run,
    projection_cache_dir,
    resolve_params,
)

__all__ = [
    "DEFAULT_PARAMS",
    "METHODS",
    "accuracy",
    "align_procrustes",
    "confusion_matrix",
    "load_embedding",
    "nearest_neighbours",
    "normalise_rows",
    "per_class_accuracy",
    "project",
    "project_run",
    "projection_cache_dir",
    "resolve_params",
]
