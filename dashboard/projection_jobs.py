"""Projections computed in a background thread: while t-SNE or UMAP runs, the page stays
responsive (its other widgets work, other pages open), shows the projection's progress, and
draws the scatter when it is done. One thread per dashboard process, shared by every browser
session: two people asking for the same projection share one computation, and a second
projection queues behind the first rather than halving both on a small machine.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from engine.inspect.projection_cache import project_run

WAIT_ENV = "WORKBENCH_PROJECTION_WAIT"
WAIT_SECONDS = 1.0  # a projection that takes less (PCA, a cached one) is drawn in the same run
KEEP = 32  # finished projections kept in memory (their layouts are also cached on disk)


@dataclass
class Job:
    key: tuple
    future: Future = field(default_factory=Future)
    done: int = 0
    total: int = 0
    epoch: int | None = None
    # t-SNE's layout while it optimises: (epoch, iteration, of iterations, (N, 2) layout)
    partial: tuple[int, int, int, Any] | None = None

    def progress(self, done: int, total: int, epoch: int) -> None:
        self.done, self.total, self.epoch = done, total, epoch  # from the worker thread

    def step(self, epoch: int, iteration: int, total: int, layout) -> None:
        self.partial = (epoch, iteration, total, layout)  # one assignment: read whole or not

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


class ProjectionWorker:
    def __init__(self, keep: int = KEEP) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="projections")
        self._jobs: OrderedDict[tuple, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._keep = keep

    def submit(self, run_dir: str, method: str, params: dict, stamps: tuple) -> Job:
        """The job for this projection of this run's snapshots (`stamps` name their versions):
        the running or finished one if there is one, else a new one."""
        key = (run_dir, method, json.dumps(params, sort_keys=True), stamps)
        with self._lock:
            job = self._jobs.get(key)
            if job is not None:
                self._jobs.move_to_end(key)
                if job.future.done() and job.future.exception() is not None:
                    del self._jobs[key]  # shown once; asked again, it is tried again
                return job
            # The same projection of an older version of the snapshots (a run that has
            # trained on meanwhile): no one will look at it; drop it if it has not started.
            for k, old in list(self._jobs.items()):
                if k[:3] == key[:3] and old.future.cancel():
                    del self._jobs[k]
            job = Job(key)
            # Exactly the epochs the page saw: a snapshot written meanwhile waits for the
            # next version, so layouts and snapshots always match.
            job.future = self._pool.submit(project_run, run_dir, method, params,
                                           epochs=[e for e, _ in stamps],
                                           progress=job.progress, partial=job.step)  # fmt: skip
            self._jobs[key] = job
            finished = [k for k, j in self._jobs.items() if j.future.done()]
            for k in finished[: max(0, len(self._jobs) - self._keep)]:
                del self._jobs[k]
            return job

    def get(self, key: tuple) -> Job | None:
        with self._lock:
            return self._jobs.get(key)

    def queued_before(self, job: Job) -> int:
        """How many unfinished jobs were submitted before `job`."""
        with self._lock:
            keys = list(self._jobs)
            ahead = keys[: keys.index(job.key)] if job.key in keys else []
            return sum(not self._jobs[k].future.done() for k in ahead)


@st.cache_resource(show_spinner=False)
def worker() -> ProjectionWorker:
    return ProjectionWorker()


def wait_seconds() -> float:
    """How long a page waits for a projection before drawing its progress instead."""
    try:
        return max(0.0, float(os.environ.get(WAIT_ENV, WAIT_SECONDS)))
    except ValueError:
        return WAIT_SECONDS


@st.fragment(run_every=0.5)
def show_pending(
    key: tuple, label: str, draw_partial: Callable[[tuple], None] | None = None
) -> None:
    """The progress of a background projection, redrawn twice a second, with t-SNE's layout as
    it converges (`draw_partial(job.partial)`); the whole page reruns (and draws the final,
    aligned scatter) when it has finished."""
    job = worker().get(key)
    if job is None or job.future.done():
        st.rerun()
    if job.total:
        text = f"{label}: epoch {job.epoch} done ({job.done}/{job.total} snapshots)"
    else:
        ahead = worker().queued_before(job)
        text = f"{label}: waiting for {ahead} other projection(s)" if ahead else f"{label}…"
    st.progress(job.fraction, text=text + " · computed in the background; the page stays usable")
    partial = job.partial
    if partial is not None and draw_partial is not None:
        draw_partial(partial)
