"""A trained model ready to look inside: a run's checkpoint, or an ImageNet backbone whole.

Each comes with what it takes to feed it: its input size, normalisation and class names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass
class LoadedModel:
    model: nn.Module
    name: str  # for captions: "run 2026…-small_cnn-… (best.pt)", "efficientnet_lite0 (ImageNet)"
    image_size: int
    mean: list[float]
    std: list[float]
    classes: list[str]

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        """(C, H, W) or (N, C, H, W) float in [0, 1] -> what the model was trained on."""
        shape = (3, 1, 1) if image.dim() == 3 else (1, 3, 1, 1)
        mean, std = torch.tensor(self.mean).view(shape), torch.tensor(self.std).view(shape)
        return (image - mean) / std

    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """Class probabilities (C,) of one (C, H, W) image in [0, 1]."""
        self.model.eval()
        with torch.no_grad():
            return torch.softmax(self.model(self.normalise(image).unsqueeze(0)), 1)[0]


def load_run_model(run_dir: str | Path, which: str = "best.pt", device="cpu") -> LoadedModel:
    """The model of a run, from `checkpoints/<which>`, in eval mode. A kind whose model cannot
    be rebuilt here (segmentation, BYOL: their own pages look at them) is a CheckpointError
    saying so, before any checkpoint is read."""
    from engine.experiments.kinds import get_kind
    from engine.store import runs
    from engine.store.layout import RunLayout
    from engine.train import CheckpointError, load_checkpoint

    run_dir = Path(run_dir)
    cfg = runs.load_config(run_dir)
    kind = get_kind(cfg.kind)
    if not kind.inspectable:
        raise CheckpointError(
            f"{run_dir.name} is a {kind.title.lower()} run: its model is not rebuilt here"
        )
    path = RunLayout(run_dir).checkpoints / which
    ckpt = load_checkpoint(path, map_location="cpu")
    extra = ckpt.get("extra") or {}
    classes = [str(c) for c in extra.get("classes") or []]
    if not classes or "mean" not in extra:
        raise CheckpointError(f"{path} lacks the class names or normalisation it was trained with")
    model = kind.experiment().inspection_model(cfg, len(classes))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path} does not fit the run's model: {e}") from None
    return LoadedModel(
        model.to(device).eval(), f"run {run_dir.name} ({which})", cfg.data.image_size,
        list(extra["mean"]), list(extra["std"]), classes,
    )  # fmt: skip


def load_imagenet_model(name: str = "efficientnet_lite0", device="cpu") -> LoadedModel:
    """A pretrained backbone with its own 1000-class ImageNet head, at its native size."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    from engine.models.backbones import get_backbone

    spec = get_backbone(name)
    model = spec.build(spec.native_size)
    model.load_state_dict(spec.imagenet_state_dict())
    return LoadedModel(
        model.to(device).eval(), f"{name} (ImageNet)", spec.native_size, list(spec.mean),
        list(spec.std), list(_IMAGENET_CATEGORIES),
    )  # fmt: skip
