"""Land-cover segmentation (DLCV HW1 problem 3) on the common path: per-pixel cross-entropy
with Unknown ignored, best.pt chosen by validation mean IoU, and at every snapshot epoch
the predicted masks of the chosen validation images (colour PNGs) and the pixel confusion
matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.config import SegmentConfig
from engine.config.registry import SEGMENTATION
from engine.core.atomic import save_npy, write_atomic
from engine.data import DataError, ImageSet, SegmentationLoader, Splits
from engine.data.landcover import CLASS_NAMES, SCORED_CLASSES, UNKNOWN, labels_to_rgb
from engine.experiments.fit import Prepared, fit, parameter_counts
from engine.models.backbones import get_backbone
from engine.models.segmentation import build_segmentation_model, coco_voc_weight_file
from engine.models.weights import WeightsError, missing_message
from engine.store.layout import RunLayout
from engine.train import Segmentation, Trainer, build_optimizer
from engine.train.tasks import EvalResult
from engine.train.trainer import eval_mode

DEFAULT_MASK_IMAGES = 3


def chosen_images(cfg: SegmentConfig, splits: Splits) -> list[int]:
    """Positions in the validation split of the images whose masks are kept every epoch."""
    stems = [splits.names[int(i)] for i in splits.val.ids]
    if not cfg.mask_images:  # spread over the validation set, the same ones every run
        n = min(DEFAULT_MASK_IMAGES, len(stems))
        return [(2 * i + 1) * len(stems) // (2 * n) for i in range(n)]  # centres of n equal parts
    missing = [s for s in cfg.mask_images if s not in stems]
    if missing:
        raise DataError(
            f"mask_images: {', '.join(missing)} not in the validation split "
            f"(it has {len(stems)} images, e.g. {', '.join(stems[:5])})"
        )
    return [stems.index(s) for s in cfg.mask_images]


def pixel_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the labelled (not Unknown) pixels; 0, not NaN, for a batch that
    has none (a tile that is all no-data must not stop the run as a diverged loss)."""
    total = F.cross_entropy(logits, y, ignore_index=UNKNOWN, reduction="sum")
    return total / (y != UNKNOWN).sum().clamp_min(1)


def save_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    write_atomic(path, lambda f: Image.fromarray(rgb).save(f, format="PNG"))


class MaskSnapshots:
    """Epoch hook: predicted masks of the chosen images and the pixel confusion matrix."""

    def __init__(self, layout: RunLayout, loader: SegmentationLoader, stems: list[str], epochs):
        self.layout, self.loader, self.stems, self.epochs = layout, loader, stems, set(epochs)
        inputs = layout.mask_inputs
        for i, stem in enumerate(stems):  # what the page shows beside the predictions
            if not (inputs / f"{stem}_mask.png").exists():
                save_png(
                    inputs / f"{stem}_sat.png", loader.images[i].permute(1, 2, 0).cpu().numpy()
                )
                save_png(inputs / f"{stem}_mask.png", labels_to_rgb(loader.labels[i].cpu().numpy()))

    @torch.inference_mode()
    def __call__(self, trainer: Trainer, epoch: int, val: EvalResult) -> None:
        if epoch not in self.epochs:
            return
        with eval_mode(trainer.model) as model:
            preds = [model(x).argmax(1).cpu().numpy() for x, _, _ in self.loader.batches()]
        folder = self.layout.mask_dir(epoch)
        for stem, labels in zip(self.stems, np.concatenate(preds), strict=True):
            save_png(folder / f"{stem}.png", labels_to_rgb(labels))
        save_npy(self.layout.confusion_file(epoch), val.confusion)


PRETRAINED = ("imagenet", "coco_voc")  # the backbone_weights that load a file


def check_data(cfg: SegmentConfig) -> None:
    """The data, and a coco_voc run's weight file: a run that cannot start is not made."""
    from engine.data import check_source

    check_source(cfg.data.name, cfg.data.path, cfg.data.classes, cfg.data.class_counts)
    if cfg.backbone_weights == "coco_voc":
        wf = coco_voc_weight_file(cfg.model.name)
        if not wf.cached():
            raise WeightsError(missing_message(wf))


def preprocessing(cfg: SegmentConfig, splits: Splits) -> tuple[list[float], list[float]]:
    """The backbone's own normalisation when it starts pretrained (torchvision's COCO models
    were trained on ImageNet-normalised images too), else the data's."""
    backbone = SEGMENTATION[cfg.model.name].backbone
    if cfg.backbone_weights in PRETRAINED and backbone is not None:
        spec = get_backbone(backbone)
        return list(spec.mean), list(spec.std)
    return splits.channel_stats()


def prepare(cfg: SegmentConfig, splits: Splits, device: torch.device) -> Prepared:
    weights = cfg.backbone_weights if cfg.backbone_weights in PRETRAINED else "none"
    model, report = build_segmentation_model(
        cfg.model.name, len(SCORED_CLASSES), cfg.data.image_size, weights,
        fc_channels=cfg.fc_channels, learn_upsampling=cfg.learn_upsampling,
        aux_loss=cfg.aux_loss,
    )  # fmt: skip
    print(f"weights: {report}", flush=True)  # into the run's log
    loss_fn = pixel_cross_entropy
    if getattr(model, "aux_weight", 0.0):  # the auxiliary classifier's loss too (training)

        def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            loss = pixel_cross_entropy(logits, y)
            if model.aux is not None:
                loss = loss + model.aux_weight * pixel_cross_entropy(model.aux, y)
            return loss

    model.to(device)
    optimizer, scheduler = build_optimizer(model, cfg.optim, cfg.epochs)
    mean, std = preprocessing(cfg, splits)

    def loader(data: ImageSet, shuffle: bool = False, augment: bool = False):
        return SegmentationLoader(
            data, cfg.batch_size, mean, std, device, shuffle, augment, cfg.seed
        )

    def snapshots(layout: RunLayout, splits: Splits, epochs: list[int]) -> MaskSnapshots:
        picked = chosen_images(cfg, splits)
        stems = [splits.names[int(splits.val.ids[i])] for i in picked]
        return MaskSnapshots(layout, loader(splits.val.subset(picked)), stems, epochs)

    info = {
        "model": cfg.model.name,
        "label": cfg.label,
        "weights_report": report,
        "classes": list(CLASS_NAMES),
        **parameter_counts(model),
    }
    return Prepared(
        model, optimizer, scheduler, loader,
        extra_state={"mean": mean, "std": std, "image_size": cfg.data.image_size},
        info=info,
        task=Segmentation(len(SCORED_CLASSES), UNKNOWN, tuple(SCORED_CLASSES)),
        loss_fn=loss_fn,
        eval_loss_fn=pixel_cross_entropy,
        snapshots=snapshots,
    )  # fmt: skip


def run(cfg: SegmentConfig, run_dir: str | Path, **kw) -> dict:
    return fit(cfg, run_dir, prepare, **kw)
