"""2-D projections (PCA / t-SNE / UMAP) of embedding snapshots, aligned and cached per run.

A run writes `artifacts/embeddings/epoch_NNNN.npz` once per epoch. `project_run` turns
those into a chain of 2-D layouts for an animation: each epoch's t-SNE / UMAP starts from
the previous epoch's layout and is Procrustes-aligned to it, so points drift smoothly
instead of flipping or spinning between frames. Results are cached under
`artifacts/projections/<method>-<hash>/epoch_NNNN.npy`.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from engine.core.atomic import save_npy, write_json
from engine.core.ziplimits import unpack_ratio_problem
from engine.store.layout import RunLayout, epoch_name

METHODS = ("pca", "tsne", "umap")
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "pca": {},
    "tsne": {"perplexity": 30.0, "n_iter": 500},
    "umap": {"n_neighbors": 15, "min_dist": 0.1},
}
EMBEDDING_KEYS = ("features", "labels", "sample_ids", "predictions")
MIN_SAMPLES = 3

# Bump when the way a cached layout is computed changes, so old caches are not reused.
_CACHE_VERSION = 1
# openTSNE optimises badly from a wide initial layout; its docs ask for std 1e-4.
_TSNE_INIT_STD = 1e-4

ProgressFn = Callable[[int, int, int], None]


# --- parameters ---------------------------------------------------------------------------


def _as_int(name: str, value: Any) -> int:
    # JSON and sliders hand over 15.0 as readily as 15; accept integral floats, not bools.
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not float(value).is_integer():
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def _check_tsne(p: dict[str, Any]) -> dict[str, Any]:
    perplexity = _as_float("perplexity", p["perplexity"])
    if perplexity <= 0:
        raise ValueError(f"perplexity must be > 0, got {perplexity}")
    n_iter = _as_int("n_iter", p["n_iter"])
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")
    return {"perplexity": perplexity, "n_iter": n_iter}


def _check_umap(p: dict[str, Any]) -> dict[str, Any]:
    n_neighbors = _as_int("n_neighbors", p["n_neighbors"])
    if n_neighbors < 2:
        raise ValueError(f"n_neighbors must be >= 2, got {n_neighbors}")
    min_dist = _as_float("min_dist", p["min_dist"])
    if not 0.0 <= min_dist <= 1.0:
        raise ValueError(f"min_dist must be in [0, 1], got {min_dist}")
    return {"n_neighbors": n_neighbors, "min_dist": min_dist}


_CHECKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "pca": lambda p: {},
    "tsne": _check_tsne,
    "umap": _check_umap,
}


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(
            f"unknown projection method {method!r}; choose one of {', '.join(METHODS)}"
        )
    return method


def resolve_params(method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """User params merged over the method's defaults, validated, with canonical types."""
    check_method(method)
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULT_PARAMS[method]))
    if unknown:
        valid = ", ".join(DEFAULT_PARAMS[method]) or "none"
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for {method}; valid names: {valid}"
        )
    return _CHECKS[method]({**DEFAULT_PARAMS[method], **params})


def _fit_to_size(method: str, params: dict[str, Any], n: int) -> dict[str, Any]:
    # Neighbourhood sizes cannot exceed the data; shrink them so tiny subsets still project.
    if method == "tsne":
        return {**params, "perplexity": min(params["perplexity"], (n - 1) / 3)}
    if method == "umap":
        return {**params, "n_neighbors": min(params["n_neighbors"], n - 1)}
    return params


# --- one projection -----------------------------------------------------------------------


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence warnings that say nothing actionable to a dashboard user."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*n_jobs value .* overridden.*")
        warnings.filterwarnings("ignore", module=r"numba(\..*)?")
        warnings.filterwarnings("ignore", message=r".*[Nn]umba.*")
        warnings.filterwarnings("ignore", message=r".*Tensorflow not installed.*")
        # Raised by UMAP's spectral init on tiny graphs; it falls back to random init itself.
        warnings.filterwarnings("ignore", message=r".*[Gg]raph is not fully connected.*")
        warnings.filterwarnings("ignore", message=r".*spectral initialisation failed.*")
        yield


def _check_features(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"features must be a 2-D array (N, D), got shape {features.shape}")
    n, d = features.shape
    if n < MIN_SAMPLES:
        raise ValueError(f"need at least {MIN_SAMPLES} samples to project, got {n}")
    if d < 2:
        raise ValueError(f"need features of at least 2 dimensions to project, got {d}")
    if not np.isfinite(features).all():
        raise ValueError("features contain NaN or infinite values (did training diverge?)")
    return features.astype(np.float32, copy=False)


def _check_init(init: np.ndarray | None, n: int) -> np.ndarray | None:
    if init is None:
        return None
    init = np.asarray(init, dtype=np.float64)
    if init.shape != (n, 2):
        raise ValueError(f"init must have shape ({n}, 2), got {init.shape}")
    if not np.isfinite(init).all():
        raise ValueError("init contains NaN or infinite values")
    return init


def _pca(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    # Both solvers are exact (no random projection), hence the same numbers on every machine;
    # sklearn fixes the signs. With more points than dimensions (a snapshot: N x 64..2048),
    # the D x D covariance's eigenvectors are ~10x faster than the SVD of the N x D matrix
    # (50,000 x 512: 0.5 s instead of 5 s, bench/projections.py).
    solver = "covariance_eigh" if x.shape[0] > x.shape[1] else "full"
    return PCA(n_components=2, svd_solver=solver, random_state=seed).fit_transform(x)


def _tsne(x: np.ndarray, params: dict[str, Any], seed: int, init: np.ndarray | None) -> np.ndarray:
    from openTSNE import TSNE

    if init is not None:
        init = init - init.mean(axis=0)
        spread = init[:, 0].std()
        # A column with no spread cannot be rescaled; let openTSNE start from PCA instead.
        init = init * (_TSNE_INIT_STD / spread) if spread > 0 else None
    tsne = TSNE(
        n_components=2,
        perplexity=params["perplexity"],
        n_iter=params["n_iter"],
        initialization=init if init is not None else "pca",
        n_jobs=1,
        random_state=seed,
        verbose=False,
    )
    return np.asarray(tsne.fit(x))


def _umap(x: np.ndarray, params: dict[str, Any], seed: int, init: np.ndarray | None) -> np.ndarray:
    from umap import UMAP

    if init is None:
        # The spectral init needs more eigenvectors (3) than 3 points can give.
        init = "spectral" if x.shape[0] > 3 else "pca"
    reducer = UMAP(
        n_components=2,
        n_neighbors=params["n_neighbors"],
        min_dist=params["min_dist"],
        init=init,
        random_state=seed,
        n_jobs=1,
    )
    return reducer.fit_transform(x)


def project(
    features: np.ndarray,
    method: str,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    init: np.ndarray | None = None,
) -> np.ndarray:
    """(N, D) features -> (N, 2) float32 layout; the same inputs and seed give the same output.

    `init` (N, 2) is a starting layout for t-SNE and UMAP (PCA ignores it).
    """
    params = resolve_params(method, params)
    x = _check_features(features)
    params = _fit_to_size(method, params, x.shape[0])
    init = _check_init(init, x.shape[0])
    if np.ptp(x, axis=0).max() == 0:
        # Every sample has the same features (a dead layer): all points sit on one spot.
        # PCA says so with zeros; t-SNE and UMAP would divide by a zero spread.
        if method == "pca":
            return np.zeros((x.shape[0], 2), dtype=np.float32)
        raise ValueError(f"all {x.shape[0]} samples have identical features; nothing to lay out")
    with _quiet():
        if method == "pca":
            out = _pca(x, seed)
        elif method == "tsne":
            out = _tsne(x, params, seed, init)
        else:
            out = _umap(x, params, seed, init)
    out = np.ascontiguousarray(out, dtype=np.float32)
    if not np.isfinite(out).all():
        raise ValueError(f"{method} produced non-finite coordinates for these features")
    return out


def align_procrustes(reference: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """`moving` rotated (or reflected) and translated to best match `reference`.

    Orthogonal Procrustes on the centred point sets, then moved to the reference's centre.
    The shape is deliberately not rescaled: how far a layout spreads is part of what the
    method says (PCA in particular), and a plot's axes can follow the scale.
    Rows are matched by index: both arrays hold the same samples in the same order.
    """
    from scipy.linalg import orthogonal_procrustes

    reference = np.asarray(reference, dtype=np.float64)
    moving_in = np.asarray(moving)
    moving = moving_in.astype(np.float64)
    if reference.ndim != 2 or reference.shape != moving.shape:
        raise ValueError(
            f"reference and moving must be 2-D arrays of the same shape, "
            f"got {reference.shape} and {moving.shape}"
        )
    ref_centre = reference.mean(axis=0)
    mov_centre = moving.mean(axis=0)
    rotation, _ = orthogonal_procrustes(moving - mov_centre, reference - ref_centre)
    aligned = (moving - mov_centre) @ rotation + ref_centre
    out_dtype = moving_in.dtype if np.issubdtype(moving_in.dtype, np.floating) else np.float64
    return aligned.astype(out_dtype)


# --- snapshots and the per-run chain ------------------------------------------------------


def load_embedding(run_dir: str | Path, epoch: int) -> dict[str, np.ndarray]:
    """The arrays of one embedding snapshot, checked for keys and consistent shapes."""
    path = RunLayout(Path(run_dir)).embedding_file(epoch)
    if not path.is_file():
        raise FileNotFoundError(f"no embedding snapshot for epoch {epoch}: {path} does not exist")
    _check_npz_sizes(path)
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array, not named arrays")
        with loaded as npz:
            arrays = {k: npz[k] for k in EMBEDDING_KEYS if k in npz.files}
    # MemoryError: a header's shape that lies; NotImplementedError, RuntimeError: zipfile's
    # words for a member it cannot read (a damaged header, encryption)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, MemoryError,
            NotImplementedError, RuntimeError) as e:  # fmt: skip
        raise ValueError(f"{path} is not a readable embedding snapshot (.npz): {e}") from None
    missing = [k for k in EMBEDDING_KEYS if k not in arrays]
    if missing:
        raise ValueError(
            f"{path} is missing {', '.join(missing)} "
            f"(an embedding snapshot holds {', '.join(EMBEDDING_KEYS)})"
        )
    _check_embedding_shapes(path, arrays)
    _check_embedding_types(path, arrays)
    return arrays


# A snapshot is a few thousand points of a few thousand features (tens of MB): anything past
# these limits is a damaged or hostile file, not ours (it may come from a zip or a shared disk).
MAX_SNAPSHOT_BYTES = 2 * 2**30  # unpacked, all arrays together
MAX_CLASSES = 100_000  # labels and predictions are class indices below this


def _check_npz_sizes(path: Path) -> None:
    """An .npz is a zip: what its directory says it unpacks to is bounded before numpy
    unpacks it (a small file can declare gigabytes of zeros)."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
        packed = path.stat().st_size
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:
        why = getattr(e, "strerror", None) or e
        raise ValueError(f"{path} is not a readable embedding snapshot (.npz): {why}") from None
    for info in infos:  # numpy writes them stored or deflated, never encrypted or patched
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or (
            info.flag_bits & 0x61
        ):
            raise ValueError(f"{path}, member {info.filename!r}: not a readable embedding "
                              "snapshot (compressed or encrypted as numpy never writes)")  # fmt: skip
    total = sum(i.file_size for i in infos)
    if total > MAX_SNAPSHOT_BYTES:
        raise ValueError(f"{path} unpacks to {total:,} bytes, over the limit of "
                          f"{MAX_SNAPSHOT_BYTES:,} for an embedding snapshot")  # fmt: skip
    if problem := unpack_ratio_problem(infos, packed):
        why, member = problem
        raise ValueError(f"{path}" + (f", member {member.filename!r}" if member else "")
                          + f": {why}")  # fmt: skip


def _check_embedding_types(path: Path, emb: dict[str, np.ndarray]) -> None:
    """Numbers where numbers are read, class indices that index a list of names."""
    if emb["features"].dtype.kind not in "fiu":
        raise ValueError(f"{path}: features must be numbers, not {emb['features'].dtype}")
    for key in ("sample_ids", "labels", "predictions"):
        if emb[key].dtype.kind not in "iu":
            raise ValueError(f"{path}: {key} must be whole numbers, not {emb[key].dtype}")
    for key in ("labels", "predictions"):
        values = emb[key]
        if values.size and not (values.min() >= 0 and values.max() < MAX_CLASSES):
            raise ValueError(
                f"{path}: {key} must be class indices from 0 to {MAX_CLASSES - 1:,}, found "
                f"{values.min()} to {values.max()}"
            )


def _check_embedding_shapes(path: Path, arrays: dict[str, np.ndarray]) -> None:
    features = arrays["features"]
    if features.ndim != 2:
        raise ValueError(f"{path}: features must be 2-D (N, D), got shape {features.shape}")
    n = features.shape[0]
    for key in EMBEDDING_KEYS[1:]:
        if arrays[key].shape != (n,):
            raise ValueError(
                f"{path}: {key} must have shape ({n},) to match features, got {arrays[key].shape}"
            )


def _cache_key(method: str, params: dict[str, Any], seed: int) -> dict[str, Any]:
    return {"method": method, "params": params, "seed": int(seed), "version": _CACHE_VERSION}


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
) -> np.ndarray:
    features = load_embedding(run_dir, epoch)["features"]
    path = RunLayout(run_dir).embedding_file(epoch)
    if previous is not None and previous.shape[0] != features.shape[0]:
        raise ValueError(
            f"{path} holds {features.shape[0]} samples but the previous epoch held "
            f"{previous.shape[0]}; snapshots must cover the same samples"
        )
    try:
        layout = project(features, method, params, seed=seed, init=previous)
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
) -> dict[int, np.ndarray]:
    """{epoch: (N, 2) float32 layout} for the run's embedding snapshots, computed or cached.

    All snapshot epochs, or only those in `epochs` (computing the chain up to the largest).
    Each layout after the first is initialised from (t-SNE, UMAP) and aligned to the one
    before it. `progress(done, total, epoch)` is called after each epoch of the chain.
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
            current = _project_epoch(run_dir, epoch, method, params, seed, previous)
            save_npy(cached_path, current)
            stale = True
        results[epoch] = current
        previous = current
        if progress is not None:
            progress(done, len(chain), epoch)
    return {e: results[e] for e in wanted}
