"""Run configurations: dataclasses with defaults, validation with one clear message, JSON round-trip.

A config is everything needed to re-run an experiment exactly: it is written to
`config.json` in the run folder and read back by `python -m engine train --run-dir`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from engine.config.fields import (
    ConfigError,
    _bounded,
    _from_dict,
    _one_of,
    _require,
)
from engine.config.registry import CLASSIFIERS
from engine.core.jsonfile import MAX_JSON_BYTES, JsonFileError, parse_json, read_regular

# Upper bounds of the numbers of a config: far above any sensible run, far below a number
# that would exhaust memory or overflow (the CLI and the dashboard name them in the message).
MAX_EPOCHS = 100_000
MAX_BATCH = 65_536
MAX_THREADS = 256
MAX_SEED = 2**32 - 1  # numpy's generators take seeds below 2**32
MAX_LR = 10.0


# MNIST-family IDX files (engine.data.idx): found without a path where a package puts them.
IDX_DATASETS = ("fashion_mnist", "mnist", "kmnist")
DATASETS = ("digits", "folder", "prefixed", "csv", "cifar10", *IDX_DATASETS, "unlabelled",
            "landcover", "deepglobe")  # fmt: skip
# Per-pixel labels: the synthetic land-cover scenes (generated; no path) and DeepGlobe-style
# xxxx_sat.jpg / xxxx_mask.png folders.
SEGMENTATION_DATASETS = ("landcover", "deepglobe")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("none", "multistep", "step", "cosine")
DEVICES = ("auto", "cpu", "cuda", "mps")
LOSSES = ("cross_entropy", "balanced_softmax", "weighted_cross_entropy")


@dataclass
class DataConfig:
    # digits: the embedded default (scikit-learn's 1,797 handwritten digits at 32x32 RGB).
    # folder: one sub-folder per class; prefixed: files named <label>_<n>.png;
    # csv: a folder with train.csv (val.csv, test.csv) of filename,label rows, the images in
    # train/ (val/, test/) beside them, as Office-Home; unlabelled (ssl runs): a flat folder
    # of images or a CSV list of file names;
    # cifar10: the python batches (data_batch_1..5, test_batch).
    # fashion_mnist, mnist, kmnist: the four IDX files (path optional: Debian's package, data/).
    name: str = "digits"
    path: str | None = None
    # folder (one sub-folder per class) and prefixed: the validation images in their own
    # folder of the same layout (train_50/ + val_50/) instead of a part carved from `path`.
    val_path: str | None = None
    image_size: int = 32
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    augment: bool = False  # random crop (padding 4) + horizontal flip, done per batch
    colour_jitter: bool = False  # with augment: brightness, contrast, saturation, hue too
    rotate: float = 0.0  # with augment: a random rotation within ± this many degrees too
    split_seed: int = 0
    classes: list[str] = field(default_factory=list)  # [] = all; else only these, relabelled
    # Long-tailed training split (validation and test stay balanced): an exponential profile
    # n_j = n_max * imbalance_ratio ** (-j / (C - 1)) over the classes in order (1: as is),
    # or the training images per class given outright.
    imbalance_ratio: float = 1.0
    class_counts: list[int] = field(default_factory=list)

    def validate(self) -> None:
        _one_of("data.name", self.name, DATASETS)
        if self.name not in ("digits", "landcover", *IDX_DATASETS):
            _require(bool(self.path), f"data.path is required for the {self.name!r} dataset")
        _require(
            not self.val_path or self.name in ("folder", "prefixed"),
            f"data.val_path is for the folder and prefixed datasets (csv: val.csv), not "
            f"{self.name!r}",
        )
        _require(
            self.name != "unlabelled" or not (self.classes or self.class_counts),
            "unlabelled images have no classes to select or count",
        )
        _require(
            8 <= self.image_size <= 512,
            f"data.image_size must be in [8, 512], got {self.image_size}",
        )
        _bounded("data.split_seed", self.split_seed, 0, MAX_SEED)
        _require(0 <= self.rotate <= 180, f"data.rotate must be in [0, 180] degrees, got "
                 f"{self.rotate:g}")  # fmt: skip
        _require(
            not self.rotate or self.augment,
            "data.rotate is part of the augmentation: give augment (--augment) too",
        )
        _require(
            all(n <= 10**8 for n in self.class_counts),
            f"data.class_counts must be at most 1e+08 each, got {max(self.class_counts or [0])}",
        )
        for name in ("val_fraction", "test_fraction"):
            v = getattr(self, name)
            _require(0 < v < 0.5, f"data.{name} must be in (0, 0.5), got {v}")
        _require(
            not self.classes or len(set(self.classes)) >= 2,
            f"data.classes must name at least 2 different classes, got {self.classes}",
        )
        _require(
            not self.classes or self.name not in SEGMENTATION_DATASETS,
            "data.classes selects image classes; segmentation datasets label pixels",
        )
        _require(
            self.augment or not self.colour_jitter,
            "data.colour_jitter is part of the augmentation: set data.augment too",
        )
        _require(
            self.imbalance_ratio >= 1,
            f"data.imbalance_ratio must be >= 1 (head / tail class size), got "
            f"{self.imbalance_ratio:g}",
        )
        _bounded("data.imbalance_ratio", self.imbalance_ratio, 1, 1e6)
        _require(
            all(n >= 1 for n in self.class_counts),
            f"data.class_counts must be >= 1 each, got {self.class_counts}",
        )
        _require(
            not (self.class_counts and self.imbalance_ratio != 1),
            "give data.imbalance_ratio or data.class_counts, not both",
        )
        _require(
            (self.imbalance_ratio == 1 and not self.class_counts)
            or self.name not in SEGMENTATION_DATASETS,
            "a long-tailed split is for image classes; segmentation datasets label pixels",
        )


@dataclass
class ModelConfig:
    # Configs written before `revision` existed name networks as they were defined then.
    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = {"revision": 1}

    name: str = "small_cnn"
    # Kept so that configs that name it still load; a classifier trains from scratch (the
    # pretrained networks are transfer runs' backbones), so only false is valid.
    pretrained: bool = False
    # ResNeXt: cardinality (groups of the grouped convolutions) and width per group;
    # 0 = the model's own (32 and 4: "32x4d").
    cardinality: int = 0
    group_width: int = 0
    # Which definition of the named network: 2 (now); 1, a config written before, whose
    # "resnext18" was the grouped BasicBlock net now called "resnext18_basic".
    revision: int = 2
    # resnet50: drop the max-pool after the stem (by default it stays, as DLCV HW1 problem 1
    # writes: only conv1 changes for 32x32; configs from before had none)
    no_max_pool: bool = False

    def network(self) -> str:
        """The registry name of the network this config builds."""
        if self.name == "resnext18" and self.revision < 2:
            return "resnext18_basic"
        return self.name

    def validate(self) -> None:
        _require(self.revision in (1, 2), f"model.revision must be 1 or 2, got {self.revision!r}")
        _one_of("model.name", self.name, tuple(CLASSIFIERS))
        _require(
            not self.pretrained,
            "model.pretrained: a classify run trains from scratch; for ImageNet weights, "
            "start a transfer run (--kind transfer)",
        )
        _require(
            not self.no_max_pool or self.name == "resnet50",
            f"model.no_max_pool is for resnet50 (the others have none), not {self.name!r}",
        )
        for name in ("cardinality", "group_width"):
            value = getattr(self, name)
            _bounded(f"model.{name}", value, 0, 1024)
            _require(
                not value or self.name.startswith("resnext"),
                f"model.{name} is for the ResNeXt models, not {self.name!r}",
            )
        _require(
            self.network() != "resnext18_basic" or not self.cardinality
            or 64 % self.cardinality == 0,
            f"model.cardinality must divide 64 for {self.name} (its first blocks have 64 "
            f"channels to split into groups), got {self.cardinality}",
        )  # fmt: skip

    def build_options(self) -> dict[str, int]:
        """Keyword arguments for `build_model` beyond the name."""
        out: dict = {}
        if self.name == "resnet50":
            out["max_pool"] = self.revision >= 2 and not self.no_max_pool
        if self.cardinality:
            out["groups"] = self.cardinality
        if self.group_width:
            out["width_per_group"] = self.group_width
        return out


@dataclass
class OptimConfig:
    name: str = "adam"
    lr: float = 5e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    milestones: list[int] = field(default_factory=lambda: [80, 120, 160])
    gamma: float = 0.2  # multistep and step: the factor at each milestone / step
    step_size: int = 40  # step: every this many epochs (DLCV HW4's "40 epoch * 0.9")

    def validate(self) -> None:
        _one_of("optim.name", self.name, OPTIMIZERS)
        _one_of("optim.schedule", self.schedule, SCHEDULES)
        _require(self.lr > 0, f"lr must be > 0, got {self.lr:g}")
        _bounded("lr", self.lr, 0, MAX_LR)
        _require(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum:g}")
        _bounded("weight_decay", self.weight_decay, 0, 1)
        _require(0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma:g}")
        _bounded("optim.step_size", self.step_size, 1, MAX_EPOCHS)
        _require(
            all(0 < m <= MAX_EPOCHS for m in self.milestones)
            and self.milestones == sorted(self.milestones),
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
    # Early stopping: end training when the validation loss has not improved for this many
    # epochs (`epochs` is then the cap); 0: train every epoch. The test uses best.pt either way.
    patience: int = 0
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
    # cross_entropy, or for long-tailed data balanced_softmax / weighted_cross_entropy
    # (classify and transfer runs)
    loss: str = "cross_entropy"
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
        _require(
            self.data.name != "unlabelled" or self.kind == "ssl",
            f"unlabelled images can only pretrain a backbone (kind ssl); a {self.kind} run "
            "needs labelled images",
        )
        self.validate_model()
        self.optim.validate()
        _bounded("epochs", self.epochs, 1, MAX_EPOCHS)
        _bounded("patience", self.patience, 0, MAX_EPOCHS)
        _bounded("batch_size", self.batch_size, 1, MAX_BATCH)
        _bounded("seed", self.seed, 0, MAX_SEED)
        _one_of("device", self.device, DEVICES)
        _bounded("cpu_threads", self.cpu_threads, 0, MAX_THREADS)
        _bounded("snapshot_every", self.snapshot_every, 1, MAX_EPOCHS)
        _bounded("snapshot_size", self.snapshot_size, 10, 1_000_000)
        _bounded("log_every", self.log_every, 1, 10**9)
        _one_of("loss", self.loss, LOSSES)
        _require(
            self.loss == "cross_entropy" or self.kind in ("classify", "transfer", "dynamic_filter"),
            f"loss {self.loss!r} is for classify, transfer and dynamic_filter runs, not {self.kind}",
        )
        _require(
            self.kind == "classify" or not self.model.build_options(),
            f"model.cardinality and model.group_width are for the registry's ResNeXt models "
            f"(classify runs), not {self.kind} runs",
        )
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
    def from_json(cls, text: str | bytes, source: str = "config") -> RunConfig:
        try:
            d = parse_json(text, source)
        except JsonFileError as e:  # not UTF-8, not JSON, nested too deep, too large
            raise ConfigError(str(e)) from None
        _require(isinstance(d, dict), f"{source} must hold a JSON object, got {type(d).__name__}")
        return _from_dict(_kind_class(cls, d, source), d, source).validate()

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        try:
            text = read_regular(path, MAX_JSON_BYTES + 1)  # never a FIFO or /dev/zero
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
        try:
            return cls.from_json(text, source=str(path))
        except ConfigError as e:
            msg = str(e)
            raise ConfigError(msg if str(path) in msg else f"{path}: {msg}") from None


# Filled by engine.config.kinds: kind name -> config class.
CONFIG_KINDS: dict[str, type[RunConfig]] = {"classify": RunConfig}


def _kind_class(cls: type[RunConfig], d: dict[str, Any], where: str) -> type[RunConfig]:
    """RunConfig.load reads any kind: the class is chosen by the file's "kind" field."""
    if cls is not RunConfig:
        return cls
    kind = d.get("kind", "classify")
    _require(
        isinstance(kind, str) and kind in CONFIG_KINDS,
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
