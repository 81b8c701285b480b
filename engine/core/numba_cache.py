"""numba's on-disk cache in the project (`.cache/numba/`), so that UMAP's kernels compile once
per machine instead of once per process. $NUMBA_CACHE_DIR, when set, wins."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from engine.core.settings import REPO_ROOT

ENV = "NUMBA_CACHE_DIR"


def project_cache_dir() -> Path:
    return REPO_ROOT / ".cache" / "numba"


def use_project_cache() -> str:
    """Set $NUMBA_CACHE_DIR to the project's folder unless it is set already; the folder in
    effect. Children started with this environment share it.

    Call it before umap or pynndescent is imported: numba picks a function's cache folder when
    the function is decorated. A folder numba cannot write to is skipped by numba itself (it
    falls back to `__pycache__` beside the library, then to the user's cache).
    """
    if not os.environ.get(ENV):  # numba takes an empty value as unset, so do we
        os.environ[ENV] = str(project_cache_dir())
        if "numba" in sys.modules:  # it read its config when imported; read it again
            from numba.core.config import reload_config

            reload_config()
    return os.environ[ENV]
