"""Run configurations: one dataclass per experiment kind (`base`: the shared parts and plain
classification; `kinds`: the others), validated with one clear message, JSON round-trip."""

from engine.config.base import (
    CONFIG_KINDS,
    DATASETS,
    DEVICES,
    LOSSES,
    OPTIMIZERS,
    SCHEDULES,
    SEGMENTATION_DATASETS,
    ConfigError,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    parse_epoch_list,
)
from engine.config.kinds import (
    TRANSFER_MODES,
    DynamicFilterConfig,
    FewShotConfig,
    SegmentConfig,
    SSLConfig,
    TransferConfig,
)

__all__ = [
    "CONFIG_KINDS",
    "DATASETS",
    "DEVICES",
    "LOSSES",
    "OPTIMIZERS",
    "SCHEDULES",
    "SEGMENTATION_DATASETS",
    "TRANSFER_MODES",
    "ConfigError",
    "DataConfig",
    "DynamicFilterConfig",
    "FewShotConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "SegmentConfig",
    "SSLConfig",
    "TransferConfig",
    "parse_epoch_list",
]
