"""What a person types or sees go wrong: errors in one line, typed paths confined to the data roots."""

from __future__ import annotations

import os
import pickle
import zipfile

import streamlit as st

from engine.core.errors import WorkbenchError
from engine.store import runs

# The one boundary of the pages: what loading a run's data, snapshots or model, or computing
# on them (attributions, dreams), may raise for a damaged or missing file: the workbench's own
# errors (WorkbenchError: each names the file and says why), the file system's, and what
# numpy, torch, PIL and captum raise for content they cannot use. A page catches these and
# says them in one line (show_error), and stays up; anything else is a bug and shows as one.
LOAD_ERRORS: tuple[type[BaseException], ...] = (
    WorkbenchError, OSError, ValueError, RuntimeError, LookupError, TypeError, EOFError,
    MemoryError, AssertionError, zipfile.BadZipFile, pickle.UnpicklingError,
)  # fmt: skip


def show_error(e: Exception) -> None:
    """Errors as the user can act on them; never a traceback."""
    st.error(str(e) or type(e).__name__)


DATASET_LABELS = {
    "digits": "Handwritten digits (embedded, offline)",
    "folder": "Image folder (one sub-folder per class)",
    "prefixed": "Labelled file names (<label>_<n>.png)",
    "csv": "Image lists (train.csv, val.csv: filename,label)",
    "unlabelled": "Unlabelled images (a flat folder or a CSV list)",
    "cifar10": "CIFAR-10 python batches",
    "fashion_mnist": "Fashion-MNIST (70,000 real images)",
    "mnist": "MNIST (70,000 handwritten digits)",
    "kmnist": "Kuzushiji-MNIST (70,000 characters)",
}


def datasets_offered(names: list[str]) -> list[str]:
    """`names`, then the MNIST-family datasets whose files are where the workbench finds them
    without a path (engine.data.idx: Debian's package, the project's data/ folder)."""
    from engine.config.base import IDX_DATASETS
    from engine.data.datasets import DataError
    from engine.data.idx import find_idx_files

    found = []
    for name in IDX_DATASETS:
        try:
            find_idx_files(name)
        except DataError:
            continue
        found.append(name)
    return [*names, *found]


def typed_path(text: str) -> str | None:
    """A data folder typed into a form: None when blank; ConfigError (naming the allowed
    folders) when it lies outside the data roots (engine.data.roots)."""
    from engine.data.roots import check_data_path

    return str(check_data_path(text.strip())) if text.strip() else None


def check_run_data(run_dir) -> None:
    """ConfigError when the run's data folder lies outside the data roots: a run imported
    from another machine can name any folder, and the dashboard reads only under its roots."""
    from engine.data.roots import check_data_path

    cfg = runs.load_config(run_dir)
    for path in (cfg.data.path, cfg.data.val_path, getattr(cfg, "knn_data_path", None)):
        if path:
            check_data_path(path)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")
