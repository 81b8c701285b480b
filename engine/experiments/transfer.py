"""Transfer learning: a pretrained backbone with a new head, in one of three modes.

scratch  — random init, everything trains (the baseline: what pretraining buys);
finetune — pretrained init, everything trains, the backbone optionally at a lower lr;
frozen   — the pretrained backbone is a fixed feature extractor; only the new head trains.
Frozen without augmentation computes each image's features once and trains the head on
them, so an epoch costs about one pass of a linear layer (the NTHU homework's task C, made
fast); with the tutorial's random crops, or BatchNorm statistics updated, each epoch runs the
backbone as the homework did.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from engine.config import TransferConfig
from engine.data import BatchLoader, FeatureLoader, ImageSet, Splits
from engine.experiments.fit import Prepared, fit, image_loaders, parameter_counts
from engine.models.backbones import TransferNet, build_transfer_net, get_backbone
from engine.train import build_optimizer


class FeatureBank:
    """Backbone features of every image of the splits, computed once, looked up by sample id."""

    def __init__(self, model: TransferNet, splits: Splits, image_loader) -> None:
        started = time.perf_counter()
        ids, feats = [], []
        with torch.no_grad():
            for part in (splits.train, splits.val, splits.test):
                for x, _, idx in image_loader(part, False, False).batches():
                    feats.append(model.forward_features(x))
                    ids.append(part.ids[idx.cpu()])
        all_ids = torch.cat(ids)
        self.order = torch.argsort(all_ids)
        self.sorted_ids = all_ids[self.order]
        self.features = torch.cat(feats)  # (N, D) on the device
        self.seconds = time.perf_counter() - started

    def take(self, data: ImageSet) -> ImageSet:
        pos = torch.searchsorted(self.sorted_ids, data.ids)
        rows = self.order[pos].to(self.features.device)
        return ImageSet(self.features[rows], data.labels, data.ids)


def _parameter_groups(model: TransferNet, cfg: TransferConfig) -> list[dict] | None:
    if cfg.mode != "finetune" or cfg.backbone_lr_scale == 1.0:
        return None  # scratch trains everything at one rate; frozen trains the head only
    # The head first: the logged learning rate is the head's.
    return [
        {"params": list(model.head.parameters())},
        {"params": list(model.body.parameters()), "lr": cfg.optim.lr * cfg.backbone_lr_scale},
    ]


HEAD_CHECKPOINT_SECONDS = 5.0
CALIBRATION_IMAGES = 5000


def calibrate_batch_norm(
    body: torch.nn.Module, loader, max_images: int = CALIBRATION_IMAGES
) -> int:
    """Give a randomly initialised, frozen backbone's BatchNorm layers the statistics of the
    training images (a pass in train mode, no gradients, cumulative averages). With PyTorch's
    default statistics (mean 0, variance 1) nothing is normalised in eval mode and a random
    network's features shrink block by block (EfficientNet-Lite0's to about 1e-10): the
    random-init control would measure a dead network, not random features. Returns the
    number of images used."""
    norms = [m for m in body.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    body.train()
    seen = 0
    with torch.no_grad():
        for x, _, _ in loader.batches(0):
            body(x)
            seen += len(x)
            if seen >= max_images:
                break
    body.eval()
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    return seen


def tutorial_loaders(cfg: TransferConfig, mean, std, device) -> Callable[..., BatchLoader]:
    """torchvision's transfer-learning tutorial: the training batches (the shuffled ones)
    RandomResizedCrop + horizontal flip, every other batch CenterCrop, to `cfg.crop`."""

    def loader(data: ImageSet, shuffle: bool = False, augment: bool = False) -> BatchLoader:
        return BatchLoader(data, cfg.batch_size, mean, std, device, shuffle, augment or shuffle,
                           cfg.seed, crop=cfg.crop)  # fmt: skip

    return loader


def prepare(cfg: TransferConfig, splits: Splits, device: torch.device) -> Prepared:
    spec = get_backbone(cfg.model.name)
    model, report = build_transfer_net(
        spec.name, splits.num_classes, splits.image_size, cfg.backbone_weights
    )
    if report is not None:
        print(report.describe(), flush=True)  # into the run's log
    if cfg.mode == "frozen":
        model.freeze_backbone(update_batchnorm=cfg.batchnorm == "updated")
    model.to(device)
    optimizer, scheduler = build_optimizer(
        model, cfg.optim, cfg.epochs, _parameter_groups(model, cfg)
    )
    loader = image_loaders(cfg, list(spec.mean), list(spec.std), device)
    if cfg.preprocess == "tutorial":
        loader = tutorial_loaders(cfg, list(spec.mean), list(spec.std), device)
    info = {
        "backbone": spec.name,
        "mode": cfg.mode,
        "weights": cfg.backbone_weights,
        "label": cfg.label,
        "input_size": cfg.crop or splits.image_size,
        "preprocess": cfg.preprocess,
        "native_size": spec.native_size,
        **parameter_counts(model),
        "weights_report": report.describe() if report else "random initialisation",
    }
    if cfg.mode == "frozen" and cfg.backbone_weights == "none":
        info["batchnorm_calibrated_on"] = calibrate_batch_norm(model.body, loader(splits.train))
    checkpoint_seconds = 0.0
    if cfg.mode == "frozen":
        info["batchnorm"] = cfg.batchnorm
    if cfg.features_once:
        model.eval()
        bank = FeatureBank(model, splits, loader)
        model.inputs_are_features = True  # from here on the model is fed features

        def feature_loader(data: ImageSet, shuffle: bool = False, augment: bool = False):
            return FeatureLoader(bank.take(data), cfg.batch_size, device, shuffle, cfg.seed)

        info["feature_seconds"] = bank.seconds
        # A head epoch costs milliseconds, a checkpoint of the whole backbone much more.
        checkpoint_seconds = HEAD_CHECKPOINT_SECONDS
        print(f"backbone features of {len(bank.features)} images in {bank.seconds:.1f} s")
        loader = feature_loader
    return Prepared(
        model, optimizer, scheduler, loader,
        extra_state={"mean": list(spec.mean), "std": list(spec.std)}, info=info,
        checkpoint_seconds=checkpoint_seconds,
    )  # fmt: skip


def run(cfg: TransferConfig, run_dir: str | Path, **kw) -> dict:
    return fit(cfg, run_dir, prepare, **kw)


def inspection_model(cfg: TransferConfig, num_classes: int) -> torch.nn.Module:
    """The untrained network a transfer run's checkpoints load into (no weights fetched)."""
    model, _ = build_transfer_net(cfg.model.name, num_classes, cfg.data.image_size, "none")
    return model
