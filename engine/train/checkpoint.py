"""Checkpoints: model + optimiser + scheduler + progress + RNG, written atomically.

Loaded with `weights_only=True`: a checkpoint is data, never code.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from engine.core.atomic import write_atomic
from engine.core.errors import CheckpointError, first_line
from engine.models.weights import torch_file_problem


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
    best_loss = progress.get("best_loss")
    if best_loss is not None and (not isinstance(best_loss, (int, float)) or isinstance(
            best_loss, bool) or best_loss != best_loss or abs(best_loss) > 1e30):  # fmt: skip
        fail(f"progress best_loss is {_describe(best_loss)}, not a number")
    since = progress.get("since_best", 0)
    if not isinstance(since, int) or isinstance(since, bool) or not 0 <= since <= MAX_PROGRESS:
        fail(f"progress since_best is {_describe(since)}, not a count")
    if not isinstance(progress.get("converged", False), bool):
        fail(f"progress converged is {_describe(progress.get('converged'))}, not true or false")
    rng = state.get("rng")
    if not isinstance(rng, dict) or not _is_rng_state(rng.get("torch")):
        fail("'rng' has no torch generator state (a uint8 tensor)")
    cuda = rng.get("cuda")
    if cuda is not None and not (isinstance(cuda, list) and all(map(_is_rng_state, cuda))):
        fail("'rng' 'cuda' is not a list of generator states")
    if state.get("extra") is not None and not isinstance(state["extra"], dict):
        fail("'extra' is not a dict")


def check_optimizer_fits(
    optimizer: torch.optim.Optimizer, fresh_groups: list[dict], path: Path
) -> None:
    """After optimizer.load_state_dict (which takes any values): every hyperparameter of the
    kind a fresh optimizer of this run has (`fresh_groups`), in range, and every state tensor
    of its parameter's shape. Otherwise the first step would fail, or train on nonsense, after
    the resume has already rewritten the run's history."""

    def fail(why: str) -> None:
        raise CheckpointError(
            f"checkpoint {path}: its optimizer state does not fit this run: {why}"
        )

    for i, (group, fresh) in enumerate(zip(optimizer.param_groups, fresh_groups, strict=False)):
        for key, want in fresh.items():
            if key == "params":
                continue
            got = group.get(key)
            where = f"group {i} {key} is {_describe(got)}"
            if isinstance(want, bool) or want is None:
                if not (got is None or isinstance(got, bool)):
                    fail(f"{where}, not a flag")
            elif isinstance(want, (int, float)):
                if not _is_number(got) or not 0 <= got <= (10 if "lr" in key else 1):
                    fail(f"{where}, not a number in [0, {10 if 'lr' in key else 1}]")
            elif isinstance(want, (tuple, list)):
                if not (
                    isinstance(got, (tuple, list))
                    and len(got) == len(want)
                    and all(_is_number(b) and 0 <= b < 1 for b in got)
                ):
                    fail(f"{where}, not {len(want)} numbers in [0, 1)")
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and key != "step" and value.shape != param.shape:
                fail(f"{key} is {_describe(value)} for a parameter of shape {tuple(param.shape)}")


def check_optimizer_values(saved: dict[str, Any], path: Path) -> None:
    """The per-parameter state of a saved optimizer, before load_state_dict casts it (whose
    own failure reads "could not convert string to float: '<generator object ...>'"):
    step counts and floating-point tensors (or None)."""
    for index, state in saved["state"].items():
        if not isinstance(state, dict):
            why = f"the state of parameter {index} is {_describe(state)}"
        else:
            why = next(filter(None, (_state_value_problem(k, v) for k, v in state.items())), "")
        if why:
            raise CheckpointError(
                f"checkpoint {path}: its optimizer state does not fit this run: {why}"
            )


def _state_value_problem(key: Any, value: Any) -> str:
    if key == "step":
        number = value.item() if _is_scalar(value) else value
        if not _is_number(number) or not 0 <= number <= MAX_PROGRESS:
            return f"its step count is {_describe(value)}"
    elif isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            return f"{key} is {_describe(value)}, not floating point"
    elif value is not None:
        return f"{key} is {_describe(value)}, not a tensor"
    return ""


# Scheduler entries that record progress; every other one follows from the run's config.
_SCHEDULE_PROGRESS = {"last_epoch", "_step_count", "_last_lr", "_is_initial",
                      "_get_lr_called_within_step"}  # fmt: skip


def check_scheduler_fits(fresh: dict[str, Any], saved: dict[str, Any], path: Path) -> None:
    """A saved lr schedule against a fresh one of the run's config (`fresh`, its state_dict):
    each setting of the same kind and sign (T_max a positive count, milestones counts, gamma
    a positive number, as many base lrs as groups) and a sane progress. The saved settings
    are kept, as torch does: a run whose config was given more epochs goes on with them."""

    def fail(why: str) -> None:
        raise CheckpointError(f"checkpoint {path}: its lr schedule does not fit this run: {why}")

    for key, want in fresh.items():
        if key not in saved:
            continue  # an older torch's checkpoint: the fresh value stays
        got = saved[key]
        if key in ("last_epoch", "_step_count"):
            if not isinstance(got, int) or isinstance(got, bool) or not -1 <= got <= MAX_PROGRESS:
                fail(f"{key} is {_describe(got)}, not a count")
        elif key in _SCHEDULE_PROGRESS and key != "_last_lr":
            if not isinstance(got, bool):
                fail(f"{key} is {_describe(got)}, not a flag")
        else:  # a current lr may have decayed to 0: only its sign is asked of it
            why = _setting_problem(got, [0.0] * len(want) if key == "_last_lr" else want)
            if why:
                fail(f"{key} is {_describe(got)}, {why}")


def _setting_problem(got: Any, want: Any) -> str:
    """Why `got` cannot stand where a fresh schedule has `want`, or ""."""
    if _is_number(want):
        if not _is_number(got) or abs(got) > 1e12:
            return "not a number"
        if want > 0 and not got > 0:
            return "not a positive number"
        if want >= 0 and got < 0:
            return "negative"
        return ""
    if isinstance(want, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(want):
            return f"not {len(want)} values"
        return next(filter(None, map(_setting_problem, got, want)), "")
    if isinstance(want, dict):  # milestones: {epoch: count}
        ok = isinstance(got, dict) and all(
            isinstance(k, int) and _is_number(v) and 0 <= k <= MAX_PROGRESS for k, v in got.items()
        )
        return "" if ok else "not a table of epochs"
    return "" if type(got) is type(want) else f"not a {type(want).__name__}"


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or math.isfinite(value)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex()


def _describe(value: Any) -> str:
    """A value in a few words on one line (a tensor's repr runs over many)."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, int) and abs(value) > 10**30:
        return "a huge number"
    try:
        text = " ".join(repr(value).split())
    except ValueError:  # holds an int too long to print
        return f"a {type(value).__name__} too large to print"
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
