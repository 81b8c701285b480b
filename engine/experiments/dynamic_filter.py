"""Dynamic filters vs static filters on the common path (ENGN8536 Lab 4): the Trainer keeps the
best checkpoint (model + optimiser) whenever validation accuracy improves, and a run can
resume from it (`python -m engine resume RUN --from best`)."""

from __future__ import annotations

from pathlib import Path

import torch

from engine.config import DynamicFilterConfig
from engine.data import Splits
from engine.experiments.fit import Prepared, fit, image_loaders, parameter_counts
from engine.models.dynamic_filter import DynamicFilterNet, load_resnet18_layer1
from engine.train import build_optimizer


def prepare(cfg: DynamicFilterConfig, splits: Splits, device: torch.device) -> Prepared:
    model = DynamicFilterNet(splits.num_classes, dynamic=cfg.dynamic,
                             response_scale=cfg.response_scale)  # fmt: skip
    if cfg.backbone_weights == "imagenet":
        from engine.models.backbones import get_backbone

        loaded = load_resnet18_layer1(model, get_backbone("resnet18").imagenet_state_dict())
        weights = f"ImageNet ResNet-18: {loaded} tensors up to layer1"
    else:
        weights = "random initialisation"
        print(f"backbone: {cfg.backbone_weights}", flush=True)  # into the run's log
    if cfg.freeze_backbone:
        model.freeze_backbone()
    model.to(device)
    optimizer, scheduler = build_optimizer(model, cfg.optim, cfg.epochs)
    mean, std = splits.channel_stats()
    info = {
        "model": "dynamic_filter",
        "dynamic": cfg.dynamic,
        "freeze_backbone": cfg.freeze_backbone,
        "label": cfg.label,
        "weights_report": weights,
        **parameter_counts(model),
    }
    return Prepared(
        model, optimizer, scheduler, image_loaders(cfg, mean, std, device),
        extra_state={"mean": mean, "std": std}, info=info,
    )  # fmt: skip


def run(cfg: DynamicFilterConfig, run_dir: str | Path, **kw) -> dict:
    return fit(cfg, run_dir, prepare, **kw)


def inspection_model(cfg: DynamicFilterConfig, num_classes: int) -> torch.nn.Module:
    """The untrained network a dynamic-filter run's checkpoints load into."""
    return DynamicFilterNet(num_classes, dynamic=cfg.dynamic, response_scale=cfg.response_scale)
