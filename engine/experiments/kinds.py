"""KINDS: the one table of experiment kinds. Everything that differs by kind and is not the
config's own business (its dataclass, in engine.config) is a field here or a function of the
kind's module, so adding a kind is one module in engine/experiments/ and its row below.

A kind's module provides `run(cfg, run_dir, **kw) -> summary`, and, when its model can be
looked at image by image (the Confusion, Inside and per-kind pages), `inspection_model(cfg,
num_classes) -> nn.Module`, the untrained network its checkpoints load into.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from types import ModuleType
from typing import Any

from engine.config import CONFIG_KINDS, ConfigError, RunConfig


def comma_list(text: str) -> list[str]:
    """ "0013, 0062" -> ["0013", "0062"]."""
    return [s.strip() for s in text.split(",") if s.strip()]


def shot_list(text: str) -> list[int]:
    """ "1,5,10" -> [1, 5, 10], for --test-shots."""
    import argparse

    try:
        return sorted({int(t) for t in text.replace(" ", "").split(",") if t})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"shots must be whole numbers like 1,5,10; got {text!r}"
        ) from None


@dataclass(frozen=True)
class Flag:
    """A `python -m engine train` flag that sets one field of its kind's config. The command
    line is generated from these: its flags, their help, and the refusal of a flag given to
    another kind ("--static and --freeze-backbone need --kind dynamic_filter")."""

    option: str  # "--fc-channels"
    field: str  # the config field it sets
    help: str
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    switch: bool | None = None  # a flag without a value: sets `field` to this
    both_ways: bool = False  # --flip / --no-flip

    @property
    def dest(self) -> str:
        return self.option.removeprefix("--").replace("-", "_")

    @property
    def shown(self) -> str:
        return f"--[no-]{self.option[2:]}" if self.both_ways else self.option


@dataclass(frozen=True)
class Kind:
    name: str  # config.json's "kind"
    title: str  # how its users know it
    module: str  # engine.experiments.<module>
    classifies_images: bool  # one image in, class scores out: Confusion and Inside offer it
    inspectable: bool  # its module has inspection_model(): load_run_model rebuilds its net
    distributed: bool  # trains under several processes (torchrun, DDP)
    presets: tuple[str, ...] = ()  # the comparisons (engine.experiments.presets) of this kind
    flags: tuple[Flag, ...] = ()  # its own command-line flags

    @property
    def config(self) -> type[RunConfig]:
        return CONFIG_KINDS[self.name]

    def check_data(self, cfg: RunConfig) -> None:
        """Its data checked whole before a run folder is made (DataError naming the file):
        the kind module's own check_data when it has one, else the dataset's reader."""
        module = self.experiment()
        if hasattr(module, "check_data"):
            module.check_data(cfg)
            return
        from engine.data import check_source

        data = cfg.data
        check_source(data.name, data.path, data.classes, data.class_counts, data.val_path)

    def experiment(self) -> ModuleType:
        """Its module, imported on first use (it imports torch)."""
        return import_module(f"engine.experiments.{self.module}")


TRANSFER_FLAGS = (
    Flag("--mode", "mode", "transfer mode", choices=("scratch", "finetune", "frozen")),
    Flag(
        "--weights",
        "weights",
        "transfer: 'imagenet', or a weight file (a run's best.pt or a state dict)",
    ),
    Flag(
        "--backbone-lr-scale",
        "backbone_lr_scale",
        "transfer, finetune: the backbone's lr is --lr times this (e.g. 0.1)",
        type=float,
    ),
    Flag(
        "--preprocess",
        "preprocess",
        "transfer: resize (ours: the images at --image-size) or tutorial (torchvision's "
        "transfer-learning tutorial: RandomResizedCrop + flip for training, CenterCrop for "
        "evaluation, to 7/8 of --image-size: --image-size 256 gives 224)",
        choices=("resize", "tutorial"),
    ),
    Flag(
        "--batchnorm",
        "batchnorm",
        "transfer, frozen: the backbone's BatchNorm statistics frozen (ours; features computed "
        "once) or updated by the training batches (the tutorial's)",
        choices=("frozen", "updated"),
    ),
    Flag(
        "--no-precompute",
        "precompute_features",
        "transfer, frozen: run the backbone every epoch instead of computing its features once "
        "(to time an epoch as a plain training loop does)",
        switch=False,
    ),
)
DYNAMIC_FLAGS = (
    Flag(
        "--static",
        "dynamic",
        "dynamic_filter: trainable per-class filters instead of generated ones",
        switch=False,
    ),
    Flag(
        "--freeze-backbone",
        "freeze_backbone",
        "dynamic_filter: keep the ResNet-18 backbone's weights fixed",
        switch=True,
    ),
    Flag(
        "--response-scale",
        "response_scale",
        "dynamic_filter: divide the normalised filter's response by sqrt(64), as the lab's "
        "reference implementation (default), or multiply by it",
        choices=("divide", "multiply"),
    ),
)
SEGMENT_FLAGS = (
    Flag(
        "--backbone-weights",
        "backbone_weights",
        "segment: start the backbone from ImageNet (when cached) or random weights; "
        "fcn_resnet50 / deeplabv3_resnet50: coco_voc, the whole model's COCO (VOC labels) "
        "weights but its class layers (`weights fetch fcn_resnet50`)",
        choices=("imagenet", "coco_voc", "none"),
    ),
    Flag(
        "--fc-channels",
        "fc_channels",
        "segment, fcn32s: width of fc6/fc7 (4096 as VGG-16)",
        type=int,
    ),
    Flag(
        "--fixed-upsampling",
        "learn_upsampling",
        "segment, fcn32s: keep the 32x bilinear upsampling fixed",
        switch=False,
    ),
    Flag(
        "--mask-images",
        "mask_images",
        "segment: validation images whose predicted masks are kept every snapshot epoch "
        "(default: three spread over the validation set)",
        type=comma_list,
        metavar="0013,0062,0104",
    ),
)
FEWSHOT_FLAGS = (
    Flag(
        "--distance",
        "distance",
        "fewshot: distance to the prototypes (euclidean)",
        choices=("euclidean", "cosine", "parametric"),
    ),
    Flag(
        "--cosine-scale",
        "cosine_scale",
        "fewshot, cosine distance: fixed (the plain cosine, as the assignment; default) or "
        "learned (a learned temperature)",
        choices=("fixed", "learned"),
    ),
    Flag(
        "--no-mlp-head",
        "mlp_head",
        "fewshot: embed with Conv-4 alone (1600-d), no 1600-800-800-400 MLP",
        switch=False,
    ),
    Flag("--train-way", "train_way", "fewshot: N of training episodes (10)", type=int),
    Flag("--train-shot", "train_shot", "fewshot: K of training episodes (1)", type=int),
    Flag(
        "--test-shots",
        "test_shots",
        "fewshot: the K of the 5-way test episodes (1,5,10)",
        type=shot_list,
        metavar="1,5,10",
    ),
    Flag("--test-way", "test_way", "fewshot: N of the test episodes (5)", type=int),
    Flag("--test-episodes", "test_episodes", "fewshot: test episodes per K (600)", type=int),
    Flag(
        "--episodes-per-epoch",
        "episodes_per_epoch",
        "fewshot: training episodes per epoch (100)",
        type=int,
    ),
    Flag(
        "--episodes-csv",
        "episodes_csv",
        "fewshot: also test on this fixed episode file (with train.csv / val.csv image lists)",
        metavar="FILE",
    ),
)
SSL_FLAGS = (
    Flag("--projection-dim", "projection_dim", "ssl: BYOL's projection size (256)", type=int),
    Flag(
        "--base-momentum",
        "base_momentum",
        "ssl: the target's moving average at step 0, cosine to 1 (0.996)",
        type=float,
    ),
    Flag(
        "--crop-scale-min",
        "crop_scale_min",
        "ssl: random resized crops keep at least this share of the area (default 0.08, 0.5 "
        "for digits)",
        type=float,
    ),
    Flag("--knn-k", "knn_k", "ssl: neighbours of the kNN monitor (20)", type=int),
    Flag(
        "--knn-data",
        "knn_data",
        "ssl: the kNN monitor's labelled dataset (digits, folder, csv, fashion_mnist, ...) when "
        "the training images have no labels (--dataset unlabelled); its train split is the bank",
        metavar="DATASET",
    ),
    Flag("--knn-data-path", "knn_data_path", "ssl: the folder of --knn-data", metavar="PATH"),
    Flag(
        "--flip",
        "flip",
        "ssl: horizontal flips in the views (default: on, off for digits)",
        both_ways=True,
    ),
)

KINDS: dict[str, Kind] = {
    k.name: k
    for k in [
        # name, title, module, classifies_images, inspectable, distributed, presets, flags
        Kind("classify", "Image classification", "classify", True, True, True,
             ("long-tail", "ablation")),
        Kind("transfer", "Transfer learning", "transfer", True, True, True,
             ("finetune-vs-frozen", "resnet34-vs-mobilenet", "a-e"), TRANSFER_FLAGS),
        Kind("dynamic_filter", "Dynamic filters", "dynamic_filter", True, True, False,
             ("dynamic-vs-static", "response-scale"), DYNAMIC_FLAGS),
        Kind("segment", "Semantic segmentation", "segment", False, False, False,
             ("fcn32s-vs-improved",), SEGMENT_FLAGS),
        # The few-shot page looks at a protonet's episodes: inspectable, not image by image.
        Kind("fewshot", "Few-shot learning (prototypical networks)", "fewshot", False, True,
             False, ("fewshot-grid",), FEWSHOT_FLAGS),
        Kind("ssl", "Self-supervised pretraining (BYOL)", "ssl", False, False, False, (),
             SSL_FLAGS),
    ]
}  # fmt: skip


def get_kind(kind: str) -> Kind:
    if kind not in KINDS:
        raise ConfigError(f"unknown experiment kind {kind!r}; choose one of {', '.join(KINDS)}")
    return KINDS[kind]


def get_experiment(kind: str) -> Callable[..., dict]:
    """The `run` function of a kind."""
    return get_kind(kind).experiment().run


def preset_kind(preset: str) -> str:
    """The kind of the runs a comparison preset makes."""
    for k in KINDS.values():
        if preset in k.presets:
            return k.name
    raise ConfigError(f"unknown preset {preset!r}")


def check_processes(kind: str, processes: int) -> None:
    """Several processes only for kinds that train under DDP: plain supervised classification
    through BatchLoader batches. The others (episodes, BYOL's moving target, per-pixel
    losses) would need their own thought."""
    able = [k.name for k in KINDS.values() if k.distributed]
    if processes > 1 and kind not in able:
        raise ConfigError(
            f"{kind} runs train in one process; several processes (--nproc, torchrun) "
            f"are for {' and '.join(able)} runs"
        )
