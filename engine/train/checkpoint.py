"""Checkpoints: model + optimiser + scheduler + progress + RNG, written atomically.

Loaded with `weights_only=True`: a checkpoint is data, never code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from engine.atomic import write_atomic


class CheckpointError(RuntimeError):
    pass


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    write_atomic(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, corrupt or not a checkpoint at all
        raise CheckpointError(f"checkpoint {path} cannot be read: {e}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a workbench checkpoint (no 'model' entry)")
    return state


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
