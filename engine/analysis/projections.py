"""2-D projections (PCA / t-SNE / UMAP) of features, and their alignment: pure functions.
A run's snapshots are read by engine.inspect.snapshots and projected, chained across epochs
and cached by engine.inspect.projection_cache."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

METHODS = ("pca", "tsne", "umap")
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "pca": {},
    "tsne": {"perplexity": 30.0, "n_iter": 500},
    "umap": {"n_neighbors": 15, "min_dist": 0.1},
}
MIN_SAMPLES = 3

# Bump when the way a cached layout is computed changes, so old caches are not reused.
# openTSNE optimises badly from a wide initial layout; its docs ask for std 1e-4.
_TSNE_INIT_STD = 1e-4
# t-SNE's neighbour search runs on the features' first principal components (as scikit-learn's
# documentation advises): on 10,000 x 512 features, exact neighbours of 50 components take
# 1.5 s where Annoy on all 512 dimensions took 4 s, so a first picture comes within 2 s.
TSNE_COMPONENTS = 50
TSNE_EXACT_UP_TO = 12_000  # more points than this: Annoy's approximate neighbours
TSNE_EVERY = 25  # iterations between the layouts handed to `on_step`
StepFn = Callable[[int, int, np.ndarray], None]  # (iteration, of total, (N, 2) layout)


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


def _principal(x: np.ndarray, components: int, seed: int) -> np.ndarray:
    """x's coordinates on its first `components` principal directions (x itself if narrower)."""
    if x.shape[1] <= components or x.shape[0] <= components:
        return x
    from sklearn.decomposition import PCA

    pca = PCA(n_components=components, svd_solver="covariance_eigh", random_state=seed)
    return pca.fit_transform(x).astype(np.float32)


def _tsne(
    x: np.ndarray,
    params: dict[str, Any],
    seed: int,
    init: np.ndarray | None,
    on_step: StepFn | None = None,
) -> np.ndarray:
    from openTSNE import TSNE

    x = _principal(x, TSNE_COMPONENTS, seed)
    early = 250  # openTSNE's early-exaggeration phase, run before n_iter
    total = early + params["n_iter"]
    calls = [0]

    def step(iteration: int, error: float, embedding: np.ndarray) -> bool:
        calls[0] += 1  # openTSNE counts each phase from 0; count across both
        on_step(min(calls[0] * TSNE_EVERY, total), total, np.array(embedding, dtype=np.float32))
        return False  # never stop early

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
        early_exaggeration_iter=early,
        neighbors="exact" if x.shape[0] <= TSNE_EXACT_UP_TO else "annoy",
        n_jobs=1,
        random_state=seed,
        verbose=False,
        callbacks=step if on_step is not None else None,
        callbacks_every_iters=TSNE_EVERY,
    )
    return np.asarray(tsne.fit(x))


UMAP_EXACT_BELOW = 4096  # umap-learn's exact-neighbour threshold (approximate from there on)


def _umap(x: np.ndarray, params: dict[str, Any], seed: int, init: np.ndarray | None) -> np.ndarray:
    from engine.analysis.umap_kernels import load_umap

    UMAP = load_umap()  # its kernels compiled once per machine (numba's disk cache)
    if init is None:
        # The spectral init needs more eigenvectors (3) than 3 points can give.
        init = "spectral" if x.shape[0] > 3 else "pca"
    metric, data = "euclidean", x
    if 3 < x.shape[0] < UMAP_EXACT_BELOW:
        # umap-learn finds these neighbours exactly, through scikit-learn's pairwise distances
        # with its numba metric as a Python callable: one call per pair, 3.5 s of a 5 s UMAP
        # of 2,000 points. The same distances from BLAS take 0.05 s.
        from sklearn.metrics import pairwise_distances

        metric, data = "precomputed", pairwise_distances(x, metric="euclidean")
    reducer = UMAP(
        n_components=2,
        n_neighbors=params["n_neighbors"],
        min_dist=params["min_dist"],
        metric=metric,
        init=init,
        random_state=seed,
        n_jobs=1,
    )
    with warnings.catch_warnings():  # precomputed: "inverse_transform will be unavailable"
        warnings.filterwarnings("ignore", message="using precomputed metric", category=UserWarning)
        return reducer.fit_transform(data)


def project(
    features: np.ndarray,
    method: str,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    init: np.ndarray | None = None,
    on_step: StepFn | None = None,
) -> np.ndarray:
    """(N, D) features -> (N, 2) float32 layout; the same inputs and seed give the same output.

    `init` (N, 2) is a starting layout for t-SNE and UMAP (PCA ignores it). `on_step(i, total,
    layout)` sees t-SNE's layout every TSNE_EVERY iterations while it optimises (a picture
    that converges in front of the user); the other methods do not call it.
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
            out = _tsne(x, params, seed, init, on_step)
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


def pca_2d(x: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, 2): the two directions of largest variance, by SVD (no seed, no fitting
    state), for small sets a page draws at once (prototypes, class embeddings)."""
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T
