"""Training: the one Trainer, checkpoints and the event log."""

from engine.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from engine.train.events import EventLog, read_events
from engine.train.trainer import (
    EvalResult,
    NonFiniteLoss,
    Trainer,
    TrainState,
    build_optimizer,
    resolve_device,
)

__all__ = [
    "CheckpointError",
    "EvalResult",
    "EventLog",
    "NonFiniteLoss",
    "TrainState",
    "Trainer",
    "build_optimizer",
    "load_checkpoint",
    "read_events",
    "resolve_device",
    "save_checkpoint",
]
