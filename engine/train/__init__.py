"""Training: the one Trainer, checkpoints and the event log.

Names are imported on first use (PEP 562): the run store reads events without importing
torch, so a queued run's waiting process stays small and starts in a blink.
"""

from importlib import import_module

_EXPORTS = {
    "CheckpointError": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "EventLog": "engine.store.events",
    "read_events": "engine.store.events",
    "EvalResult": "tasks",
    "Classification": "tasks",
    "Episodic": "tasks",
    "Segmentation": "tasks",
    "NonFiniteLoss": "trainer",
    "Trainer": "trainer",
    "TrainState": "trainer",
    "build_optimizer": "trainer",
    "resolve_device": "trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'engine.train' has no attribute {name!r}")
    module = _EXPORTS[name]
    return getattr(import_module(module if "." in module else f"engine.train.{module}"), name)
