"""numba's disk cache in the project folder, and the dashboard's UMAP warm-up thread (whose
real compile, and a second process loading it, are tests/integration/test_first_umap.py's)."""

from __future__ import annotations

import os
import threading

import pytest

from engine.analysis import umap_kernels
from engine.core import numba_cache
from engine.core.settings import REPO_ROOT
from engine.execution import worker


@pytest.fixture
def no_numba_cache_env(monkeypatch):
    """NUMBA_CACHE_DIR unset for the test, and restored (or removed) after it."""
    monkeypatch.setenv(numba_cache.ENV, "placeholder")  # records the original value
    monkeypatch.delenv(numba_cache.ENV)


def test_the_project_folder_is_used_when_the_variable_is_unset(no_numba_cache_env):
    folder = numba_cache.use_project_cache()
    assert folder == os.environ[numba_cache.ENV] == str(numba_cache.project_cache_dir())
    assert numba_cache.project_cache_dir().is_relative_to(REPO_ROOT)


def test_an_empty_value_counts_as_unset(monkeypatch):
    monkeypatch.setenv(numba_cache.ENV, "")
    assert numba_cache.use_project_cache() == str(numba_cache.project_cache_dir())


def test_a_folder_the_user_chose_is_kept(monkeypatch, tmp_path):
    monkeypatch.setenv(numba_cache.ENV, str(tmp_path))
    assert numba_cache.use_project_cache() == str(tmp_path)
    assert os.environ[numba_cache.ENV] == str(tmp_path)


def test_processes_the_dashboard_starts_share_the_folder(no_numba_cache_env, monkeypatch, tmp_path):
    assert worker.child_env()[numba_cache.ENV] == str(numba_cache.project_cache_dir())
    monkeypatch.setenv(numba_cache.ENV, str(tmp_path))
    assert worker.child_env()[numba_cache.ENV] == str(tmp_path)


@pytest.fixture
def fresh_warmup(monkeypatch):
    """This process as if no warm-up had started, with the UMAP itself replaced: a call seen."""
    monkeypatch.setattr(umap_kernels, "_warmup", None)
    called, tsne = threading.Event(), threading.Event()
    monkeypatch.setattr(umap_kernels, "warm_umap", called.set)
    monkeypatch.setattr(umap_kernels, "warm_tsne", tsne.set)
    called.tsne = tsne
    return called


def test_the_warmup_is_off_with_prewarm_0(fresh_warmup, monkeypatch):
    monkeypatch.setenv("WORKBENCH_PREWARM", "0")
    before = set(threading.enumerate())
    assert umap_kernels.start_warmup() is None
    assert not any(t.name == "umap-warmup" for t in set(threading.enumerate()) - before)
    assert not fresh_warmup.is_set()


def test_the_warmup_runs_once_in_a_background_thread(fresh_warmup, monkeypatch):
    monkeypatch.setenv("WORKBENCH_PREWARM", "1")
    thread = umap_kernels.start_warmup()
    assert thread is not None and thread.daemon and thread.name == "umap-warmup"
    thread.join(timeout=30)
    assert fresh_warmup.is_set() and fresh_warmup.tsne.is_set()  # UMAP's kernels, t-SNE's imports
    assert umap_kernels.start_warmup() is thread  # one per process, however many page runs


def test_a_failing_warmup_stays_in_its_thread(monkeypatch):
    monkeypatch.setenv("WORKBENCH_PREWARM", "1")
    monkeypatch.setattr(umap_kernels, "_warmup", None)

    def broken() -> None:
        raise RuntimeError("no umap here")

    monkeypatch.setattr(umap_kernels, "warm_umap", broken)
    errors = []
    monkeypatch.setattr(threading, "excepthook", errors.append)
    umap_kernels.start_warmup().join(timeout=30)
    assert errors == []  # the real UMAP, when asked, reports the error where it is shown
