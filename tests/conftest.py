"""Shared fixtures: an isolated runs folder and weight cache, tiny run configs that train in
seconds, and a stand-in for a training process."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from engine.config import DataConfig, ModelConfig, OptimConfig, RunConfig


@pytest.fixture(scope="session", autouse=True)
def _one_cpu_thread():
    """Tiny test models gain nothing from intra-op threads, and on shared cores OpenMP's
    spinning threads make them up to ~8x slower. One thread here and in subprocesses."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")  # inherited by launched runs and CLI subprocesses
        mp.setenv("WORKBENCH_PREWARM", "0")  # no idle warm worker per test process
        # Pages wait for their projections, as AppTest cannot follow a background one (one
        # test sets it to 0 to see the background path).
        mp.setenv("WORKBENCH_PROJECTION_WAIT", "600")
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def _test_folders_are_data_roots(tmp_path_factory):
    """The dashboard reads typed folders only under the data roots (engine.data.roots); the
    folders tests make count as one, beside the defaults."""
    import os

    from engine.data.roots import ENV, data_roots

    roots = [*data_roots(), tmp_path_factory.getbasetemp()]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV, os.pathsep.join(str(r) for r in roots))
        yield


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    """A fresh runs folder, also set as WORKBENCH_RUNS_DIR so nothing lands in the repo's runs/."""
    path = tmp_path / "runs"
    monkeypatch.setenv("WORKBENCH_RUNS_DIR", str(path))
    return path


def _tiny_config(image_size: int = 16, **overrides) -> RunConfig:
    """Digits + small_cnn on the CPU; 16x16 images keep an epoch well under a second."""
    cfg = RunConfig(
        data=DataConfig(name="digits", image_size=image_size),
        model=ModelConfig(name="small_cnn"),
        optim=OptimConfig(name="adam", lr=3e-3, schedule="cosine"),
        epochs=2,
        batch_size=64,
        seed=0,
        device="cpu",
        snapshot_every=1,
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg.validate()


@pytest.fixture(scope="session")
def tiny_config():
    """Factory: `tiny_config(epochs=3, image_size=32, ...)` -> a validated RunConfig."""
    return _tiny_config


@pytest.fixture(autouse=True)
def weight_cache(tmp_path, monkeypatch):
    """A private, empty (not yet created) weight cache for every test, inherited by launched
    runs: what a developer has in checkpoints/ never changes a result."""
    path = tmp_path / "weights"
    monkeypatch.setenv("WORKBENCH_WEIGHTS_DIR", str(path))
    return path


@pytest.fixture
def engine_process():
    """A live process whose command line names the engine, as a training run's does."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()", "engine"], stdin=subprocess.PIPE
    )
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def run_process():
    """`start(run_dir)`: a live stand-in for a run's training process, writing to the run's
    log as a launched run does (what `stop` takes as proof that the process is the run's)."""
    procs = []

    def start(run_dir):
        from engine.store.layout import RunLayout

        with open(RunLayout(run_dir).log, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", "import sys; sys.stdin.read()", "engine"],
                stdin=subprocess.PIPE, stdout=log,
            )  # fmt: skip
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()
