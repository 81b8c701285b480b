"""Image classification: the default experiment kind, and the template for the others.

config -> data, model, optimiser (`_prepare`) -> the shared runner (engine.experiments.fit),
with a snapshot hook that writes the penultimate embeddings and the confusion matrix.
"""

from __future__ import annotations

from pathlib import Path

import torch

from engine.config import RunConfig
from engine.data import Splits
from engine.experiments.fit import Prepared, fit, image_loaders, parameter_counts
from engine.models import build_model
from engine.train import build_optimizer


def _prepare(cfg: RunConfig, splits: Splits, device: torch.device) -> Prepared:
    mean, std = splits.channel_stats()  # normalised with the training set's own statistics
    model = build_model(cfg.model.network(), splits.num_classes, **cfg.model.build_options())
    model = model.to(device)
    optimizer, scheduler = build_optimizer(model, cfg.optim, cfg.epochs)
    return Prepared(
        model, optimizer, scheduler, image_loaders(cfg, mean, std, device),
        extra_state={"mean": mean, "std": std},
        info={"model": cfg.model.name, **parameter_counts(model)},
    )  # fmt: skip


def run(cfg: RunConfig, run_dir: str | Path, **kw) -> dict:
    """Train (or resume) the run in `run_dir`; returns its summary (best val acc, test acc...)."""
    return fit(cfg, run_dir, _prepare, **kw)


def inspection_model(cfg: RunConfig, num_classes: int) -> torch.nn.Module:
    """The untrained network a classify run's checkpoints load into."""
    return build_model(cfg.model.network(), num_classes, **cfg.model.build_options())
