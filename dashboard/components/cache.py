"""The one cache of the dashboard. Files are read again when their size or mtime changes
(a fragment that reruns every second only re-reads what grew); the models and datasets the
pages load are loaded once per server, whichever page asks first, and shared by all."""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from engine.config import DataConfig, FewShotConfig
from engine.store import runs
from engine.store.layout import RunLayout

# What the server imports in the background at start, in this order: torch and the data code
# (the first "Start the demo", or any start, otherwise spends 1.2 s importing them before its
# run exists), then scipy.stats through the comparisons' statistics (1.0-1.4 s the first time a
# comparison page is drawn: a transfer, ablation or long-tail quick demo's page), then
# torchvision's model zoo, which the backbone tables read their weights' sizes from (1.5 s on
# the first Transfer, Inside or Segmentation page).
WARM_MODULES = ("engine.data", "engine.analysis.comparison", "torchvision.models")


@st.cache_resource(show_spinner=False)
def warm_imports():
    """Import WARM_MODULES in a background thread, once per server; the thread, or None when
    WORKBENCH_PREWARM=0."""
    import importlib
    import os
    import threading

    if os.environ.get("WORKBENCH_PREWARM", "1") == "0":
        return None

    def load() -> None:
        for name in WARM_MODULES:
            importlib.import_module(name)

    thread = threading.Thread(target=load, name="import-warmup", daemon=True)
    thread.start()
    return thread


def file_stamp(path: Path) -> tuple[int, int]:
    try:
        s = path.stat()
        return s.st_size, s.st_mtime_ns
    except OSError:
        return -1, -1


@st.cache_data(show_spinner=False, max_entries=64)
def _metrics_cached(path: str, stamp: tuple[int, int]) -> list[dict]:
    # `stamp` (size, mtime) is part of the cache key: a grown file is read again.
    return runs.read_metrics(path)


def load_metrics(run_dir: Path) -> list[dict]:
    return _metrics_cached(str(run_dir), file_stamp(RunLayout(run_dir).metrics))


def data_key(data: DataConfig) -> str:
    """A DataConfig as the key of a cached dataset (its JSON, keys sorted)."""
    return json.dumps(data.__dict__, sort_keys=True)


@st.cache_resource(show_spinner="Loading the model…", max_entries=6)
def run_model(run_dir: str, stamp: int):
    """A run's best.pt rebuilt (engine.inspect.loading). `stamp`: the checkpoint's mtime, so
    a rewritten best.pt is loaded again."""
    from engine.inspect.loading import load_run_model

    return load_run_model(run_dir)


@st.cache_resource(show_spinner="Loading the pretrained model…", max_entries=2)
def imagenet_model(name: str):
    from engine.inspect.loading import load_imagenet_model

    return load_imagenet_model(name)


@st.cache_resource(show_spinner="Loading the run's dataset…", max_entries=4)
def dataset(data_json: str):
    """The splits of a run's data (`data_key` of its DataConfig), shared by every page."""
    from engine.data import load_dataset

    return load_dataset(DataConfig(**json.loads(data_json)))


@st.cache_resource(show_spinner="Loading the meta-test images…", max_entries=2)
def fewshot_data(data_json: str, meta_test: tuple[str, ...]):
    """A few-shot run's splits, shared by every run on the same data (not reloaded per run)."""
    from engine.data.episodes import load_fewshot

    data = DataConfig(**json.loads(data_json))
    return load_fewshot(FewShotConfig(data=data, meta_test_classes=list(meta_test)))
