"""Where the workbench keeps things, read in one place: the repository root and the
WORKBENCH_* variables that move a folder."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def weights_dir() -> Path:
    """`checkpoints/torchvision/` in the repository, or $WORKBENCH_WEIGHTS_DIR."""
    env = os.environ.get("WORKBENCH_WEIGHTS_DIR")
    return Path(env).expanduser() if env else REPO_ROOT / "checkpoints" / "torchvision"
