"""Home with many runs: how long the gallery page takes to rerun once its pictures are cached
(target: under 0.3 s with 100 runs in the folder), against the rerun of a one-line script in
the same run (AppTest's own cost).

    python bench/home_rerun.py [--runs 100] [--repeats 5]

One finished digits run (3 epochs, embedding snapshots) is trained, then copied to fill the
runs folder; each copy is a run of its own to the page (its folder name is its id).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WORKBENCH_PREWARM", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.dashboard_rerun

import streamlit.logger  # noqa: E402

streamlit.logger.set_log_level("error")

from bench.dashboard_rerun import TRIVIAL_SCRIPT, tiny_run  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def rerun_seconds(at, repeats: int) -> float:
    at.run()  # fills the caches
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - started)
        assert not at.exception, at.exception
    return statistics.median(times)


def main() -> int:
    from streamlit.testing.v1 import AppTest

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        first = tiny_run(root, "home-bench", 3)
        for i in range(a.runs - 1):
            shutil.copytree(first, root / f"{first.name[:-6]}{i:06x}")
        os.environ["WORKBENCH_RUNS_DIR"] = str(root)
        home = AppTest.from_file(str(ROOT / "dashboard" / "views" / "home.py"), default_timeout=120)
        reference = AppTest.from_string(TRIVIAL_SCRIPT, default_timeout=60)
        ref = rerun_seconds(reference, a.repeats)
        page = rerun_seconds(home, a.repeats)
    print(f"Home rerun with {a.runs} runs: {page * 1000:.0f} ms (target < 300 ms); "
          f"one-line script: {ref * 1000:.0f} ms; ratio {page / ref:.1f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
