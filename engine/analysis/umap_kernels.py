"""UMAP's numba kernels, compiled once per machine and warmed before the first UMAP is asked.

A process's first UMAP used to wait 20-45 s while numba compiled umap-learn's and
pynndescent's kernels. pynndescent keeps its compiled code on disk (`cache=True`); umap-learn
0.5 does so for almost none of its own. `load_umap` points numba's cache at the project
(engine.core.numba_cache) and turns it on for the kernels the workbench's UMAP compiles, so a
second process loads them in a fraction of a second; `start_warmup` compiles (or loads) them
in a background thread when the dashboard starts, so its first UMAP finds them ready.
bench/first_umap.py measures both.
"""

from __future__ import annotations

import importlib
import os
import threading
from typing import Any

import numpy as np

from engine.core.numba_cache import use_project_cache

# The kernels that `project(x, "umap")` compiles and umap-learn 0.5.12 does not cache: a seeded
# 2-D euclidean UMAP of fewer than 4,096 points (exact neighbours; the default snapshot holds
# 2,000). Seeded, UMAP runs the serial layout kernel; its parallel twin is built from the same
# Python function and numba would give both one cache file (the file's key holds no compile
# flags), so the twin stays uncached.
CACHED_KERNELS = (
    ("umap.utils", "fast_knn_indices"),
    ("umap.umap_", "smooth_knn_dist"),
    ("umap.umap_", "compute_membership_strengths"),
    ("umap.layouts", "_nb_optimize_layout_euclidean_single_epoch"),
)  # umap's own euclidean is not among them: below 4,096 points the distances are precomputed
WARMUP_SHAPE = (300, 16)  # compiles the same signatures as (2000, 512): float32, C order

_load_lock = threading.Lock()  # held while umap imports (seconds)
_start_lock = threading.Lock()  # the page's start_warmup() never waits for the import
_umap_class: Any = None
_warmup: threading.Thread | None = None


def load_umap() -> Any:
    """`umap.UMAP`, imported with numba's cache in the project and on for CACHED_KERNELS."""
    global _umap_class
    with _load_lock:
        if _umap_class is None:
            use_project_cache()  # before umap and pynndescent decorate their functions
            from umap import UMAP

            for module, name in CACHED_KERNELS:
                kernel = getattr(importlib.import_module(module), name, None)
                if hasattr(kernel, "enable_caching"):  # a numba dispatcher, in this version
                    kernel.enable_caching()
            _umap_class = UMAP
        return _umap_class


def warm_umap() -> None:
    """One tiny UMAP: its kernels compile, or load from the disk cache, in this process."""
    from engine.analysis.projections import project

    x = np.random.default_rng(0).standard_normal(WARMUP_SHAPE).astype(np.float32)
    project(x, "umap")


def warm_tsne() -> None:
    """One tiny t-SNE: openTSNE and scikit-learn's neighbour search imported (1-2 s in a fresh
    process) before the first t-SNE is asked, so its first picture is not late by that."""
    from engine.analysis.projections import project

    x = np.random.default_rng(0).standard_normal((200, 60)).astype(np.float32)
    project(x, "tsne", {"n_iter": 25})


def _warm_quietly() -> None:
    try:
        warm_umap()
        warm_tsne()
    except Exception:  # a failed warm-up only loses time; the real UMAP will say why
        pass


def start_warmup() -> threading.Thread | None:
    """Warm UMAP's kernels (and t-SNE's imports) in a background daemon thread, once per
    process; the thread, or
    None when WORKBENCH_PREWARM=0. UMAP runs it with one thread (`n_jobs=1`)."""
    global _warmup
    if os.environ.get("WORKBENCH_PREWARM", "1") == "0":
        return None
    with _start_lock:
        if _warmup is None:
            _warmup = threading.Thread(target=_warm_quietly, name="umap-warmup", daemon=True)
            _warmup.start()
        return _warmup
