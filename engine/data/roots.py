"""Where the dashboard may read data: a folder typed into it must lie under a data root.

The dashboard can be opened by someone other than the person who started it (`make run
ADDRESS=...`); a typed path must not let them point the engine at any folder the server can
read. The roots are $WORKBENCH_DATA_ROOTS (folders separated by the platform's path
separator, ':' on Linux) or, by default, the project's data/ folder, $WORKBENCH_DATA_DIR and
the home folder of the user running the dashboard. The command line is not restricted: its
user already has a shell.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.config import ConfigError

ENV = "WORKBENCH_DATA_ROOTS"


def data_roots() -> list[Path]:
    """The allowed roots, resolved (symbolic links followed)."""
    from engine.data.landcover import data_root
    from engine.layout import REPO_ROOT

    listed = os.environ.get(ENV)
    if listed:
        roots = [Path(p).expanduser() for p in listed.split(os.pathsep) if p.strip()]
    else:
        roots = [REPO_ROOT / "data", data_root(), Path.home()]
    unique: list[Path] = []
    for root in roots:
        resolved = root.resolve()
        if resolved == Path(resolved.anchor):  # "/" (a HOME of /, say) would allow anything
            continue
        if resolved not in unique:
            unique.append(resolved)
    return unique


def check_data_path(typed: str, roots: list[Path] | None = None) -> Path:
    """The folder or file `typed`, resolved, if it lies under a data root; else ConfigError.

    Resolution follows symbolic links and '..', so neither leads out of a root."""
    roots = data_roots() if roots is None else roots
    path = Path(typed).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    path = path.resolve()
    if any(path.is_relative_to(root) for root in roots):
        return path
    where = ", ".join(str(r) for r in roots) or "none are configured"
    raise ConfigError(
        f"{typed} is outside the folders the dashboard may read ({where}). Move or link the "
        f"data under one of them, or start the dashboard with {ENV} listing its folder "
        f"(separated by '{os.pathsep}')"
    )
