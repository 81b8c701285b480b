"""Quick demos: each one's time from the click to its last run finished, against the time its
card says in an empty runs folder (the estimate from engine.analysis.estimates' reference) and
against the Home demo measured in the same run
(the reference: these machines are noisy, a ratio within one run is what compares).

    python bench/quick_demos.py [--only train,dynamic] [--repeats 1]

Each demo runs alone, one after another, in a fresh runs folder, launched as the dashboard
launches it (its own process, the warm worker off).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from engine.execution.quick import QUICK, demo_config, start_quick
from engine.execution.start import start_run
from engine.store import groups, runs


def _wait(run_dirs: list[Path], timeout: float = 1800) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        states = [runs.read_status(d).get("state") for d in run_dirs]
        if all(s not in ("queued", "running") for s in states):
            return
        time.sleep(0.5)
    raise TimeoutError(f"runs still active after {timeout} s: {run_dirs}")


def time_quick(key: str) -> tuple[float, list[str]]:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        started = time.monotonic()
        s = start_quick(key, tmp)
        dirs = (groups.load_group(s.group_id, tmp).run_dirs(tmp) if s.group_id
                else [s.run_dir])  # fmt: skip
        _wait(dirs)
        seconds = time.monotonic() - started
        return seconds, [runs.read_status(d).get("state") for d in dirs]


def card_estimate(key: str) -> float | None:
    """What the card says in an empty runs folder: the estimate from the reference table."""
    from engine.analysis.estimates import estimate

    found = [estimate(c) for c in QUICK[key].configs()]
    return None if any(e is None for e in found) else sum(e.seconds for e in found)


def time_home_demo() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        _wait([start_run(demo_config(), tmp)])
        return time.monotonic() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated demo keys (default: all)")
    ap.add_argument("--repeats", type=int, default=1)
    a = ap.parse_args()
    os.environ.setdefault("WORKBENCH_PREWARM", "0")
    keys = [k for k in a.only.split(",") if k] or list(QUICK)
    reference = statistics.median(time_home_demo() for _ in range(a.repeats))
    print(f"reference: the Home demo, {reference:.1f} s")
    print(f"{'demo':14} {'estimate':>9} {'measured':>9} {'x estimate':>10} {'x Home demo':>11}  "
          "states")  # fmt: skip
    for key in keys:
        results = [time_quick(key) for _ in range(a.repeats)]
        seconds = statistics.median(r[0] for r in results)
        states = sorted(set(s for r in results for s in r[1]))
        card = card_estimate(key) or QUICK[key].seconds
        print(f"{key:14} {card:>8.0f}s {seconds:>8.1f}s {seconds / card:>10.2f} "
              f"{seconds / reference:>11.2f}  {', '.join(states)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
