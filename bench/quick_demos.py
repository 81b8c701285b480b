"""Quick demos: each one's time from the click to its last run finished, against the time its
card says: in an empty runs folder (the time measured for the demo on the project's machine,
`QuickDemo.seconds`), and after the demo has finished once in that folder (learned from that
run: engine.analysis.estimates), measured again; and against the Home demo measured in the
same run (the reference: these machines are noisy, a ratio within one run is what compares).

    python bench/quick_demos.py [--only train,dynamic] [--repeats 1]

Each demo runs alone, one after another, in a fresh runs folder, launched as the dashboard
launches it (its own process, the warm worker off); `--repeats` clicks it that many times in
that folder after the first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from engine.analysis import estimates
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


def time_quick(key: str, folder: Path) -> tuple[float, list[str]]:
    started = time.monotonic()
    s = start_quick(key, folder)
    dirs = (groups.load_group(s.group_id, folder).run_dirs(folder) if s.group_id
            else [s.run_dir])  # fmt: skip
    _wait(dirs)
    return time.monotonic() - started, [runs.read_status(d).get("state") for d in dirs]


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
    print(f"{'demo':14} {'card, empty':>11} {'first':>7} {'x card':>7} {'card, learned':>13} "
          f"{'again':>7} {'x card':>7} {'x Home':>7}  states")  # fmt: skip
    for key in keys:
        with tempfile.TemporaryDirectory() as folder:
            tmp = Path(folder)
            first, states = time_quick(key, tmp)
            card = QUICK[key].seconds
            est = estimates.combined(QUICK[key].configs(), estimates.finished_here(tmp))
            learned = est.seconds if est is not None and est.here else None
            again = [time_quick(key, tmp) for _ in range(a.repeats)]
            seconds = statistics.median(r[0] for r in again)
            states = sorted(set(states) | {s for r in again for s in r[1]})
            said = f"{learned:.0f}s" if learned else "-"
            print(f"{key:14} {card:>10}s {first:>6.1f}s {first / card:>7.2f} {said:>13} "
                  f"{seconds:>6.1f}s {seconds / learned if learned else float('nan'):>7.2f} "
                  f"{first / reference:>7.2f}  {', '.join(states)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
