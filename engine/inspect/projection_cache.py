"""A run's snapshots as a chain of 2-D layouts for an animation, cached per run.

A run writes `artifacts/embeddings/epoch_NNNN.npz` once per epoch. `project_run` turns
those into a chain of 2-D layouts: each epoch's t-SNE / UMAP starts from the previous
epoch's layout and is Procrustes-aligned to it, so points drift smoothly instead of flipping
or spinning between frames. Results are cached under
`artifacts/projections/<method>-<hash>/epoch_NNNN.npy`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engine.analysis.projections import align_procrustes, project, resolve_params
from engine.core.atomic import save_npy, write_json
from engine.inspect.snapshots import load_embedding
from engine.store.layout import RunLayout, epoch_name

# Per method; bump one when the way its layouts are computed changes, so old caches are not
# reused (t-SNE 2: neighbours searched on 50 principal components).
_CACHE_VERSION = {"pca": 1, "tsne": 2, "umap": 1}
ProgressFn = Callable[[int, int, int], None]
PartialFn = Callable[[int, int, int, np.ndarray], None]  # (epoch, iteration, total, layout)


def _cache_key(method: str, params: dict[str, Any], seed: int) -> dict[str, Any]:
    version = _CACHE_VERSION[method]
    return {"method": method, "params": params, "seed": int(seed), "version": version}


def projection_cache_dir(
    run_dir: str | Path, method: str, params: Mapping[str, Any] | None = None, seed: int = 0
) -> Path:
    """Folder holding one run's cached layouts for one (method, params, seed).

    Created on first use, with a `params.json` saying what is inside.
    """
    key = _cache_key(method, resolve_params(method, params), seed)
    canonical = json.dumps(key, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:12]
    folder = RunLayout(Path(run_dir)).projections / f"{method}-{digest}"
    if not (folder / "params.json").is_file():
        write_json(folder / "params.json", {**key, "aligned": "procrustes to previous epoch"})
    return folder


def _read_cached(path: Path) -> np.ndarray | None:
    """A cached layout, or None when absent or unusable (then it is simply recomputed)."""
    if not path.is_file():
        return None
    try:
        layout = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if layout.ndim != 2 or layout.shape[1] != 2 or not np.isfinite(layout).all():
        return None
    return layout


def _is_fresh(cached: Path, snapshot: Path) -> bool:
    # A snapshot rewritten after its layout was cached (a run restarted in the same folder)
    # makes that layout, and every later one in the chain, stale.
    try:
        return cached.stat().st_mtime_ns >= snapshot.stat().st_mtime_ns
    except FileNotFoundError:
        return True  # snapshot gone: keep serving the cached layout


def _chain_epochs(layout: RunLayout, epochs: Iterable[int] | None) -> tuple[list[int], list[int]]:
    """(epochs to walk in order, epochs to return)."""
    available = layout.embedding_epochs()
    if epochs is None:
        return available, available
    wanted = sorted({int(e) for e in epochs})
    for epoch in wanted:
        if epoch not in available:
            path = layout.embedding_file(epoch)
            raise FileNotFoundError(
                f"no embedding snapshot for epoch {epoch}: {path} does not exist"
            )
    if not wanted:
        return [], []
    return [e for e in available if e <= wanted[-1]], wanted


def _project_epoch(
    run_dir: Path,
    epoch: int,
    method: str,
    params: dict[str, Any],
    seed: int,
    previous: np.ndarray | None,
    partial: PartialFn | None = None,
) -> np.ndarray:
    features = load_embedding(run_dir, epoch)["features"]
    path = RunLayout(run_dir).embedding_file(epoch)
    if previous is not None and previous.shape[0] != features.shape[0]:
        raise ValueError(
            f"{path} holds {features.shape[0]} samples but the previous epoch held "
            f"{previous.shape[0]}; snapshots must cover the same samples"
        )
    try:
        on_step = None if partial is None else (lambda i, n, xy: partial(epoch, i, n, xy))
        layout = project(features, method, params, seed=seed, init=previous, on_step=on_step)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    if previous is not None:
        layout = align_procrustes(previous, layout)
    return layout


def project_run(
    run_dir: str | Path,
    method: str,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    epochs: Iterable[int] | None = None,
    progress: ProgressFn | None = None,
    partial: PartialFn | None = None,
) -> dict[int, np.ndarray]:
    """{epoch: (N, 2) float32 layout} for the run's embedding snapshots, computed or cached.

    All snapshot epochs, or only those in `epochs` (computing the chain up to the largest).
    Each layout after the first is initialised from (t-SNE, UMAP) and aligned to the one
    before it. `progress(done, total, epoch)` is called after each epoch of the chain;
    `partial(epoch, iteration, total, layout)` while t-SNE optimises one (unaligned).
    A run with no snapshots yet gives an empty dict.
    """
    run_dir = Path(run_dir)
    params = resolve_params(method, params)
    layout = RunLayout(run_dir)
    chain, wanted = _chain_epochs(layout, epochs)
    if not chain:
        return {}
    cache = projection_cache_dir(run_dir, method, params, seed)

    results: dict[int, np.ndarray] = {}
    previous: np.ndarray | None = None
    stale = False  # once one layout is recomputed, the ones after it must be too
    for done, epoch in enumerate(chain, start=1):
        cached_path = cache / epoch_name(epoch, ".npy")
        snapshot = layout.embedding_file(epoch)
        cached = None if stale else _read_cached(cached_path)
        if cached is not None and _is_fresh(cached_path, snapshot):
            current = cached
        else:
            current = _project_epoch(run_dir, epoch, method, params, seed, previous, partial)
            save_npy(cached_path, current)
            stale = True
        results[epoch] = current
        previous = current
        if progress is not None:
            progress(done, len(chain), epoch)
    return {e: results[e] for e in wanted}
