"""The config of each experiment kind other than plain classification: one dataclass each."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from engine.config.base import (
    CONFIG_KINDS,
    DATASETS,
    SEGMENTATION_DATASETS,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
)
from engine.config.fields import _bounded, _one_of, _require
from engine.config.registry import BACKBONES, DISTANCES, SEGMENTATION

TRANSFER_MODES = ("scratch", "finetune", "frozen")
RESPONSE_SCALES = ("divide", "multiply")


@dataclass
class TransferConfig(RunConfig):
    """Transfer learning: an ImageNet (or a user's) backbone with a new head for the dataset.

    Modes: `scratch` (random init, everything trains), `finetune` (pretrained, everything
    trains, optionally the backbone at a lower learning rate), `frozen` (pretrained backbone
    as a fixed feature extractor; only the new head trains).
    """

    kind: str = "transfer"
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="efficientnet_lite0"))
    # ImageNet backbones at 224 px are slow on a CPU; the digits are 8x8 at heart.
    data: DataConfig = field(default_factory=lambda: DataConfig(image_size=64))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, weight_decay=0.0))
    epochs: int = 5
    mode: str = "finetune"
    weights: str = "imagenet"  # "imagenet", or a weight file (a run's best.pt, a state dict)
    backbone_lr_scale: float = 1.0  # fine-tune: the backbone's lr is optim.lr times this
    precompute_features: bool = True  # frozen, no augmentation: backbone features once
    # "resize": the images at data.image_size (data.augment: pad-4 crops and flips). "tutorial":
    # torchvision's transfer-learning tutorial (the NTHU homework's code): training batches
    # RandomResizedCrop + flip, evaluation CenterCrop, to 7/8 of data.image_size (224 of 256).
    preprocess: str = "resize"
    # Frozen mode: the backbone's BatchNorm statistics "frozen" (eval mode: ours; features can
    # be computed once) or "updated" by the training batches (the tutorial's model_conv, whose
    # .train() puts the frozen backbone's BatchNorm layers in training mode). Other modes train
    # every layer and update every statistic: there it changes nothing.
    batchnorm: str = "frozen"
    label: str = ""  # the row's name in a comparison, e.g. "B: supervised, fine-tuned"

    def validate_model(self) -> None:
        _one_of("model.name", self.model.name, tuple(BACKBONES))
        _one_of("mode", self.mode, TRANSFER_MODES)
        _require(bool(self.weights), "weights must be 'imagenet' or a weight file's path")
        _require(
            0 < self.backbone_lr_scale <= 1,
            f"backbone_lr_scale must be in (0, 1], got {self.backbone_lr_scale:g}",
        )
        _one_of("preprocess", self.preprocess, ("resize", "tutorial"))
        _one_of("batchnorm", self.batchnorm, ("frozen", "updated"))
        _require(self.preprocess == "resize" or not self.data.augment,
                 "the tutorial's preprocessing has its own augmentation (random resized crops "
                 "and flips): leave data.augment off")  # fmt: skip

    @property
    def crop(self) -> int:
        """The network's input side under the tutorial's preprocessing; 0: none."""
        return round(self.data.image_size * 224 / 256) if self.preprocess == "tutorial" else 0

    @property
    def features_once(self) -> bool:
        """A frozen backbone's features computed once: the same input every epoch (no random
        crops) through a backbone that does not change (BatchNorm statistics frozen)."""
        return (self.mode == "frozen" and self.precompute_features and not self.data.augment
                and self.preprocess == "resize" and self.batchnorm == "frozen")  # fmt: skip

    @property
    def backbone_weights(self) -> str:
        """What the backbone starts from: "none" in scratch mode, else `weights`."""
        return "none" if self.mode == "scratch" else self.weights


@dataclass
class DynamicFilterConfig(RunConfig):
    """Dynamic convolutional filters (ENGN8536 Lab 4): ResNet-18 up to layer1, a 1x1 filter per
    class generated from a class embedding (or, `dynamic: false`, a trainable one)."""

    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = {"response_scale": "multiply"}

    kind: str = "dynamic_filter"
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="dynamic_filter"))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, weight_decay=0.0))
    epochs: int = 8
    dynamic: bool = True
    freeze_backbone: bool = False  # the assignment's question: what if the backbone is frozen?
    # "imagenet" (ResNet-18's, when cached) or "none"; a run made where the weights are not
    # cached says so here: "none (…not cached…)".
    backbone_weights: str = "imagenet"
    # How the L2-normalised filter's response is rescaled by sqrt(64) "for numerical
    # stability": divided, as the lab's reference implementation does (scaled-dot-product
    # style), or multiplied (this workbench before; a 64x larger scale). Configs written
    # before the option existed read as "multiply": that is what those runs trained with.
    response_scale: str = "divide"
    label: str = ""

    def validate_model(self) -> None:
        _one_of("response_scale", self.response_scale, RESPONSE_SCALES)
        _require(self.model.name == "dynamic_filter",
                 f"model.name must be 'dynamic_filter', got {self.model.name!r}")  # fmt: skip
        _require(
            self.data.image_size == 32,
            "data.image_size must be 32 for dynamic filters (the score predictor reads 8x8 "
            f"response maps: 64 values), got {self.data.image_size}",
        )
        _require(
            self.backbone_weights == "imagenet" or self.backbone_weights.startswith("none"),
            f"backbone_weights must be 'imagenet' or 'none', got {self.backbone_weights!r}",
        )

    def resolve_for_run(self) -> None:
        """Record in the config what the backbone will really start from."""
        if self.backbone_weights != "imagenet":
            return
        backbone = BACKBONES["resnet18"]
        if not backbone.weights_available():
            self.backbone_weights = (
                f"none (ImageNet weights for resnet18 were not cached at "
                f"{backbone.weights_whereabouts()}; the backbone starts from random weights)"
            )


@dataclass
class SegmentConfig(RunConfig):
    """Semantic segmentation of land cover (DLCV HW1 problem 3): per-pixel cross-entropy with
    Unknown ignored, mean IoU over the other six classes, predicted masks of chosen validation
    images saved at every snapshot epoch."""

    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = {"aux_loss": False}
    # The models that can start whole from torchvision's pretrained segmentation weights
    # (backbone_weights "coco_voc": trained on COCO images labelled with VOC's 21 classes),
    # and torchvision's enum of each, which names the file, its URL and its size.
    COCO_VOC_WEIGHTS: ClassVar[dict[str, str]] = {
        "fcn_resnet50": "FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1",
        "deeplabv3_resnet50": "DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1",
    }

    kind: str = "segment"
    data: DataConfig = field(default_factory=lambda: DataConfig(name="landcover", image_size=128))
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="fcn8s_lite0"))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, weight_decay=0.0))
    epochs: int = 10
    batch_size: int = 8
    snapshot_every: int = 1  # masks at every epoch: the point of the page
    # "imagenet" (the backbone's, when cached) or "none"; a run made where the weights are not
    # cached says so here: "none (…not cached…)". Models without a backbone: "none".
    # "coco_voc" (COCO_VOC_WEIGHTS' models): the whole pretrained model but its two final
    # class scorers; not cached, the run is refused (it does not quietly start from less).
    backbone_weights: str = "imagenet"
    fc_channels: int = 4096  # FCN-32s: the width of fc6 / fc7, as VGG-16's classifier
    learn_upsampling: bool = True  # FCN-32s: the bilinear-initialised 32x upsampling learns
    # torchvision's FCN / DeepLabV3: train their auxiliary classifier too (loss + 0.4 x aux),
    # as DLCV HW1's model B ("two classifiers") and torchvision's reference. Older configs:
    # without (their checkpoints have no auxiliary head).
    aux_loss: bool = True
    mask_images: list[str] = field(default_factory=list)  # validation stems; [] = three spread
    label: str = ""

    def validate_model(self) -> None:
        _one_of("model.name", self.model.name, tuple(SEGMENTATION))
        size = self.data.image_size
        _require(
            size % 32 == 0 and size >= 64,
            f"data.image_size must be a multiple of 32 and at least 64 for segmentation (the "
            f"models downsample 32x), got {size}",
        )
        coco = ", ".join(self.COCO_VOC_WEIGHTS)
        _require(
            self.backbone_weights in ("imagenet", "coco_voc")
            or self.backbone_weights.startswith("none"),
            f"backbone_weights must be 'imagenet' or 'none' (or 'coco_voc' for {coco}), "
            f"got {self.backbone_weights!r}",
        )
        _require(
            self.backbone_weights != "coco_voc" or self.model.name in self.COCO_VOC_WEIGHTS,
            f"backbone_weights 'coco_voc' (torchvision's segmentation weights, COCO with VOC's "
            f"classes) exist only for {coco}; {self.model.name} starts from 'imagenet' or "
            "'none'",
        )
        _bounded("fc_channels", self.fc_channels, 1, 16_384)
        _require(
            len(self.mask_images) <= 12,
            f"mask_images: at most 12 images, got {len(self.mask_images)}",
        )

    def resolve_for_run(self) -> None:
        """Record in the config what the backbone will really start from."""
        backbone = SEGMENTATION[self.model.name].backbone
        if self.backbone_weights != "imagenet":
            return
        if backbone is None:
            self.backbone_weights = "none (this model has no pretrained backbone)"
        elif not BACKBONES[backbone].weights_available():
            where = BACKBONES[backbone].weights_whereabouts()
            self.backbone_weights = (
                f"none (ImageNet weights for {backbone} were not cached at {where}; "
                "the backbone starts from random weights)"
            )


@dataclass
class FewShotConfig(RunConfig):
    """Prototypical networks (DLCV HW4 problem 1): episodic training on meta-train classes,
    evaluation on 600 fixed episodes of unseen meta-test classes, mean accuracy ± 95% CI.

    Data: the digits (classes 0-4 meta-train, 5-9 meta-test, at 84x84), or a folder with
    `train/<class>/` and `test/<class>/` (or `val/<class>/`) of disjoint classes, as
    mini-ImageNet. Validation episodes (for best.pt) use held-out images of the meta-train
    classes, so the meta-test classes stay unseen until the test.
    """

    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = {"cosine_scale": "learned"}

    kind: str = "fewshot"
    data: DataConfig = field(default_factory=lambda: DataConfig(image_size=84))
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="protonet"))
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=1e-4, weight_decay=0.0, schedule="none")
    )
    epochs: int = 10
    episodes_per_epoch: int = 100
    train_way: int = 10  # the assignment's 10-way; capped at the number of meta-train classes
    train_shot: int = 1
    train_query: int = 15
    distance: str = "euclidean"
    # cosine: "fixed", the plain cosine similarity as the assignment compares it; "learned":
    # scaled by a learned temperature (starting at 10). Configs from before: learned.
    cosine_scale: str = "fixed"
    mlp_head: bool = True
    test_way: int = 5
    test_shots: list[int] = field(default_factory=lambda: [1, 5, 10])
    test_query: int = 15
    test_episodes: int = 600
    val_episodes: int = 100
    meta_test_classes: list[str] = field(default_factory=list)  # digits: [] = 5..9
    # A fixed list of test episodes (the course's CSV: episode_id, class<i>_support<j>...,
    # query<k>...), evaluated as well, on image-list data (train.csv / val.csv).
    episodes_csv: str | None = None
    label: str = ""

    def resolve_for_run(self) -> None:
        if self.episodes_csv:  # the run's process may start elsewhere
            self.episodes_csv = str(Path(self.episodes_csv).expanduser().resolve())

    def validate_model(self) -> None:
        _require(self.model.name == "protonet",
                 f"model.name must be 'protonet', got {self.model.name!r}")  # fmt: skip
        _one_of("distance", self.distance, DISTANCES)
        _one_of("cosine_scale", self.cosine_scale, ("fixed", "learned"))
        _require(self.data.name in ("digits", "folder", "csv"),
                 f"few-shot data must be digits, folder or csv, got {self.data.name!r}")  # fmt: skip
        _require(not self.data.classes, "few-shot runs choose classes by meta_test_classes, "
                 "not data.classes")  # fmt: skip
        _require(self.data.imbalance_ratio == 1 and not self.data.class_counts,
                 "few-shot runs sample balanced episodes: no data.imbalance_ratio or "
                 "data.class_counts")  # fmt: skip
        for name in ("episodes_per_epoch", "train_shot", "train_query", "test_query",
                     "test_episodes", "val_episodes"):  # fmt: skip
            _bounded(name, getattr(self, name), 1, 1_000_000 if "episodes" in name else 10_000)
        for name in ("train_way", "test_way"):
            _bounded(name, getattr(self, name), 2, 10_000)
        _require(
            bool(self.test_shots) and all(1 <= k <= 10_000 for k in self.test_shots),
            f"test_shots must be a non-empty list of shots >= 1, got {self.test_shots}",
        )
        _require(
            self.data.image_size >= 16,
            f"data.image_size must be >= 16 for Conv-4, got {self.data.image_size}",
        )


@dataclass
class SSLConfig(RunConfig):
    """BYOL self-supervised pretraining of a backbone (DLCV HW1 and HW4, problem 2) on
    images whose labels, when present, are used only by the kNN monitor. The online backbone
    is what transfers: give the run's folder (or its backbone.pt) as the weights of a
    transfer run, or to rows C and E of the A-E grid."""

    kind: str = "ssl"
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="resnet18"))
    data: DataConfig = field(default_factory=lambda: DataConfig(image_size=32))
    # DLCV HW4: Adam, lr 5e-4, batch 32.
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=5e-4, weight_decay=0.0, schedule="none")
    )
    epochs: int = 20
    batch_size: int = 32
    projection_dim: int = 256
    hidden_dim: int = 4096  # of the projector and predictor MLPs, as in BYOL
    base_momentum: float = 0.996  # the target's moving average, cosine-scheduled to 1
    # The views: random resized crops keep [crop_scale_min, 1] of the area, flipped or not.
    # None: decided when the run is made (and written to its config). BYOL's recipe (0.08,
    # flips) for photos; for the digits crops keep at least half (a small crop of a 32-px
    # digit is a stroke) and no flips (a mirrored 3 is not a 3: asking the network to map
    # both to one point costs kNN accuracy).
    crop_scale_min: float | None = None
    flip: bool | None = None
    knn_k: int = 20
    knn_temperature: float = 0.07
    knn_bank_size: int = 5000  # training images in the kNN memory bank (a fixed subset)
    # The kNN monitor's labelled images, when the training images have none (data.name
    # unlabelled) or are not the ones to judge by: a dataset name (digits, folder, csv,
    # fashion_mnist, ...) and its path; its train split is the bank, val and test the queries.
    # "": the training data's own labels; unlabelled data without one: kNN off (loss and the
    # collapse measure only, best.pt by the validation loss).
    knn_data: str = ""
    knn_data_path: str | None = None
    label: str = ""

    def knn_source(self) -> DataConfig | None:
        """The labelled data of the kNN monitor, or None when it is off."""
        if self.knn_data:
            return DataConfig(name=self.knn_data, path=self.knn_data_path,
                              image_size=self.data.image_size, split_seed=self.data.split_seed,
                              val_fraction=self.data.val_fraction,
                              test_fraction=self.data.test_fraction)  # fmt: skip
        return None if self.data.name == "unlabelled" else self.data

    def resolve_for_run(self) -> None:
        digits = self.data.name == "digits"
        if self.crop_scale_min is None:
            self.crop_scale_min = 0.5 if digits else 0.08
        if self.flip is None:
            self.flip = not digits

    def validate_model(self) -> None:
        _one_of("model.name", self.model.name, tuple(BACKBONES))
        for name, high in (("projection_dim", 65_536), ("hidden_dim", 65_536),
                           ("knn_k", 100_000), ("knn_bank_size", 10_000_000)):  # fmt: skip
            _bounded(name, getattr(self, name), 1, high)
        _require(
            0 <= self.base_momentum < 1,
            f"base_momentum must be in [0, 1), got {self.base_momentum:g}",
        )
        _require(
            self.crop_scale_min is None or 0 < self.crop_scale_min <= 1,
            f"crop_scale_min must be in (0, 1], got {self.crop_scale_min}",
        )
        _require(
            self.knn_temperature > 0, f"knn_temperature must be > 0, got {self.knn_temperature:g}"
        )
        _bounded("knn_temperature", self.knn_temperature, 0, 100)
        _require(
            self.knn_data in ("", *DATASETS)
            and self.knn_data not in ("unlabelled", *SEGMENTATION_DATASETS),
            f"knn_data must name a dataset with one label per image, got {self.knn_data!r}",
        )
        _require(not self.knn_data_path or bool(self.knn_data),
                 "knn_data_path needs knn_data (the dataset's name)")  # fmt: skip
        if (knn := self.knn_source()) is not None and knn is not self.data:
            knn.validate()
        _require(
            self.batch_size >= 2,
            f"batch_size must be >= 2 for BYOL (BatchNorm in the heads), got {self.batch_size}",
        )


CONFIG_KINDS.update(
    transfer=TransferConfig,
    dynamic_filter=DynamicFilterConfig,
    segment=SegmentConfig,
    fewshot=FewShotConfig,
    ssl=SSLConfig,
)
