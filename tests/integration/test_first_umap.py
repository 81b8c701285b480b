"""The dashboard's UMAP warm-up, in fresh processes sharing one numba cache folder: the first
compiles UMAP's kernels and leaves them on disk, the second loads them instead of compiling,
and both lay the points out alike. Times are bench/first_umap.py's, not this test's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from engine.analysis.umap_kernels import CACHED_KERNELS
from engine.core.settings import REPO_ROOT

WARM_UP_AND_REPORT = """
import importlib, json
import numpy as np
from engine.analysis.umap_kernels import CACHED_KERNELS, WARMUP_SHAPE, start_warmup
from engine.analysis.projections import project

start_warmup().join()
stats = {}
for module, name in CACHED_KERNELS:
    s = getattr(importlib.import_module(module), name).stats
    stats[name] = {"path": s.cache_path, "hits": sum(s.cache_hits.values()),
                   "misses": sum(s.cache_misses.values())}
x = np.random.default_rng(1).standard_normal(WARMUP_SHAPE).astype(np.float32)
print(json.dumps({"stats": stats, "layout": project(x, "umap", seed=2).tolist()}))
"""


def warm_up_in_a_fresh_process(cache_dir) -> dict:
    env = {
        **os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "WORKBENCH_PREWARM": "1",
        "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }  # fmt: skip
    done = subprocess.run([sys.executable, "-c", WARM_UP_AND_REPORT], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=280)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_the_kernels_the_first_compiled(tmp_path):
    cache_dir = tmp_path / "numba"
    first = warm_up_in_a_fresh_process(cache_dir)
    assert list(cache_dir.rglob("*.nbi")) and list(cache_dir.rglob("*.nbc"))
    names = [name for _, name in CACHED_KERNELS]
    cached = {p.name.split("-")[0].split(".")[-1] for p in cache_dir.rglob("*.nbi")}
    # The layout kernel's file is named after the Python function both of its dispatchers share.
    assert set(names) - {"_nb_optimize_layout_euclidean_single_epoch"} <= cached
    assert "_optimize_layout_euclidean_single_epoch" in cached
    for name in names:
        stats = first["stats"][name]
        assert stats["path"].startswith(str(cache_dir)), name
        assert stats["misses"] >= 1 and stats["hits"] == 0, (name, stats)

    second = warm_up_in_a_fresh_process(cache_dir)
    for name in names:
        stats = second["stats"][name]
        assert stats["hits"] >= 1 and stats["misses"] == 0, (name, stats)
    assert second["layout"] == first["layout"]  # loaded code lays the points out alike
