"""The first UMAP of a process: numba's compile, its disk cache and the dashboard's warm-up.

A fresh Python process per measurement (numba's compiled code lives in the process), each timing
`project(x, "umap")` of 2,000 x 512 features (the default snapshot) twice: the first call, as a
user waits for it (importing umap included), then the same call again, whose kernels are warm:
the reference, measured in every process of the run (the machine is shared and noisy).

- cold: an empty numba cache folder, so every kernel compiles (a machine's first UMAP ever);
- before: the kernels umap-learn does not cache itself compile (engine.analysis.umap_kernels'
  table emptied), pynndescent's load from the warm folder: a process's first UMAP before
  issue 23;
- warm cache: a second process with the folder the cold one filled;
- after warm-up: a process that first runs the dashboard's `start_warmup()` and waits for it,
  then the first UMAP a user asks for (the warm-up's own time is printed beside it).

Targets (issue 23): a fresh dashboard's first UMAP within 15 s, a second process's within 5 s.
Children run with one thread (OMP_NUM_THREADS=1, NUMBA_NUM_THREADS=1), as the dashboard's
projections do; `--repeats` interleaves the warm kinds and takes medians (`--cold-repeats`
for cold, which takes 20-60 s each).

    python bench/first_umap.py [--repeats 3] [--cold-repeats 1] [--points 2000] [--dim 512]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("cold", "before", "warm cache", "after warm-up")
FRESH_DASHBOARD_TARGET_S = 15.0
SECOND_PROCESS_TARGET_S = 5.0


def features(n: int, dim: int, seed: int = 0):
    """(n, dim) float32: 10 Gaussian clusters through a ReLU, like a CNN's penultimate layer."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = 2.0 * rng.standard_normal((10, dim), dtype=np.float32)
    x = centres[rng.integers(10, size=n)] + rng.standard_normal((n, dim), dtype=np.float32)
    return np.maximum(x, 0.0).astype(np.float32)


def child(kind: str, n: int, dim: int) -> dict:
    """In a fresh process: the first and the second UMAP (and the warm-up before them)."""
    from engine.analysis import umap_kernels
    from engine.analysis.projections import project

    x = features(n, dim)
    out = {}
    if kind == "before":
        umap_kernels.CACHED_KERNELS = ()
    if kind == "after warm-up":
        start = time.perf_counter()
        umap_kernels.start_warmup().join()
        out["warmup_s"] = time.perf_counter() - start
    for key, seed in (("first_s", 0), ("reference_s", 1)):
        start = time.perf_counter()
        project(x, "umap", seed=seed)
        out[key] = time.perf_counter() - start
    return out


def run_child(kind: str, cache_dir: Path, a: argparse.Namespace) -> dict:
    env = {
        **os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "OMP_NUM_THREADS": "1",
        "NUMBA_NUM_THREADS": "1", "WORKBENCH_PREWARM": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }  # fmt: skip
    size = ["--points", str(a.points), "--dim", str(a.dim)]
    cmd = [sys.executable, __file__, "--child", kind, *size]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cold-repeats", type=int, default=1)
    ap.add_argument("--points", type=int, default=2000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.points, a.dim)))
        return 0

    results: dict[str, list[dict]] = {k: [] for k in KINDS}
    with tempfile.TemporaryDirectory(prefix="first-umap-") as tmp:
        warm = Path(tmp) / "warm"
        for i in range(max(a.repeats, a.cold_repeats)):
            if i < a.cold_repeats:
                # The first cold run fills the folder the warm kinds then read.
                cold = warm if i == 0 else Path(tmp) / f"cold-{i}"
                results["cold"].append(run_child("cold", cold, a))
            for kind in KINDS[1:] if i < a.repeats else ():
                results[kind].append(run_child(kind, warm, a))
            print(f"repeat {i + 1} done", file=sys.stderr, flush=True)

    reference = statistics.median(r["reference_s"] for rs in results.values() for r in rs)
    print(f"first UMAP of {a.points:,} x {a.dim} in a fresh process, one thread; medians of "
          f"{a.repeats} ({a.cold_repeats} cold); python {sys.version.split()[0]}")  # fmt: skip
    print(f"{'kind':<15} {'first UMAP':>10} {'x reference':>12}  notes")
    for kind, rs in results.items():
        first = statistics.median(r["first_s"] for r in rs)
        note = ""
        if kind == "after warm-up":
            note = f"warm-up took {statistics.median(r['warmup_s'] for r in rs):.1f} s first"
        elif kind == "warm cache":
            note = f"target < {SECOND_PROCESS_TARGET_S:.0f} s"
        print(f"{kind:<15} {first:>9.1f}s {first / reference:>11.2f}x  {note}")
    print(f"{'reference':<15} {reference:>9.1f}s {1:>11.2f}x  the same UMAP again, kernels warm")
    print(f"(fresh dashboard target < {FRESH_DASHBOARD_TARGET_S:.0f} s)")
    print("all:", json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
