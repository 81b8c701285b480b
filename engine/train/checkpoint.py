"""Checkpoints: model + optimiser + scheduler + progress + RNG, written atomically.

Loaded with `weights_only=True`: a checkpoint is data, never code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from engine.atomic import write_atomic
from engine.errors import first_line
from engine.models.weights import torch_file_problem


class CheckpointError(RuntimeError):
    pass


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    write_atomic(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    if problem := torch_file_problem(path):
        raise CheckpointError(f"checkpoint {path} {problem}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, corrupt or not a checkpoint at all
        raise CheckpointError(f"checkpoint {path} cannot be read: {first_line(e)}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a workbench checkpoint (no 'model' entry)")
    return state


MAX_PROGRESS = 10**12  # steps and images seen: beyond any run, below an overflow


def check_training_checkpoint(state: dict[str, Any], path: Path, epochs: int) -> None:
    """What a resume reads from a checkpoint, checked before anything of the run is touched:
    a checkpoint loads safely (weights_only) and may still hold the wrong things: no
    optimizer, an epoch of -10**9 (which would drop the run's whole history), an RNG state
    that is not one. CheckpointError naming `path` and the entry."""

    def fail(why: str) -> None:
        raise CheckpointError(f"checkpoint {path} cannot be resumed from: {why}")

    model = state.get("model")
    if not isinstance(model, dict) or not model:
        fail("'model' is not a state dict")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()):
        fail("'model' holds entries that are not named tensors")
    optimizer = state.get("optimizer")
    if not (
        isinstance(optimizer, dict)
        and isinstance(optimizer.get("state"), dict)
        and isinstance(optimizer.get("param_groups"), list)
        and all(isinstance(g, dict) for g in optimizer["param_groups"])
    ):
        fail("it has no optimizer state ('optimizer' with 'state' and 'param_groups')")
    if state.get("scheduler") is not None and not isinstance(state["scheduler"], dict):
        fail("'scheduler' is neither a state dict nor empty")
    progress = state.get("progress")
    if not isinstance(progress, dict):
        fail("it has no 'progress' (epoch, step)")
    for key in ("epoch", "step_in_epoch", "global_step", "correct", "seen"):
        v = progress.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_PROGRESS:
            fail(f"progress {key} is {_describe(v)}, not a count")
    if progress["epoch"] > epochs:
        fail(f"it is at epoch {progress['epoch']}, but the run has {epochs} epochs")
    for key in ("loss_sum", "best_score"):
        v = progress.get(key, -1.0 if key == "best_score" else None)  # older: no best_score
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v != v or abs(v) > 1e30:
            fail(f"progress {key} is {_describe(v)}, not a number")
    rng = state.get("rng")
    if not isinstance(rng, dict) or not _is_rng_state(rng.get("torch")):
        fail("'rng' has no torch generator state (a uint8 tensor)")
    cuda = rng.get("cuda")
    if cuda is not None and not (isinstance(cuda, list) and all(map(_is_rng_state, cuda))):
        fail("'rng' 'cuda' is not a list of generator states")
    if state.get("extra") is not None and not isinstance(state["extra"], dict):
        fail("'extra' is not a dict")


def _describe(value: Any) -> str:
    """A value in a few words on one line (a tensor's repr runs over many)."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    text = " ".join(repr(value).split())
    return text if len(text) <= 40 else text[:37] + "..."


def _is_rng_state(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.dim() == 1


def load_into(module: torch.nn.Module, weights: dict[str, Any], path: Path) -> None:
    """module.load_state_dict(weights), with a mismatch said in one line naming `path` (what
    torch says lists every key: kilobytes for another architecture)."""
    try:
        module.load_state_dict(weights)
    except (RuntimeError, TypeError, ValueError, KeyError) as e:
        expected = module.state_dict()
        missing = [k for k in expected if k not in weights]
        unexpected = [k for k in weights if k not in expected]
        shapes = [
            k
            for k in expected
            if k in weights
            and isinstance(weights[k], torch.Tensor)
            and weights[k].shape != expected[k].shape
        ]
        parts = [
            f"{len(found)} weights {what} (e.g. {found[0]})"
            for found, what in (
                (missing, "missing"),
                (unexpected, "unexpected"),
                (shapes, "of another shape"),
            )  # fmt: skip
            if found
        ]
        detail = "; ".join(parts) or first_line(e)
        raise CheckpointError(
            f"checkpoint {path} does not fit this run's model (another architecture or "
            f"number of classes?): {detail}"
        ) from None


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
