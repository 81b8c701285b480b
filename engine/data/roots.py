"""Where the dashboard may read data: a folder typed into it must lie under a data root.

The dashboard can be opened by someone other than the person who started it (`make run
ADDRESS=...`); a typed path must not let them point the engine at any folder the server can
read. The roots are $WORKBENCH_DATA_ROOTS (folders separated by the platform's path
separator, ':' on Linux) or, by default, the project's data/ folder, $WORKBENCH_DATA_DIR and
the home folder of the user running the dashboard. The command line may name any folder: its
user already has a shell.

Inside a dataset, every file a reader opens must lie in the dataset's folder or under a data
root (DatasetBounds), from the dashboard and the command line alike.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.config import ConfigError

ENV = "WORKBENCH_DATA_ROOTS"


def data_roots() -> list[Path]:
    """The allowed roots, resolved (symbolic links followed)."""
    from engine.core.settings import REPO_ROOT
    from engine.data.landcover import data_root

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


class DatasetBounds:
    """Where the files of the dataset in `folder` may lie: in the folder itself, or under a
    data root. Every file a reader opens is checked, not only the folder typed: a class
    folder that is a symbolic link, or a file name in a CSV image list (absolute, or with
    '..'), cannot lead the dashboard out of the data roots. The command line gets the same
    rule, so a run reads the same files wherever it was started; a dataset built of links to
    files elsewhere names their folder in WORKBENCH_DATA_ROOTS."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.allowed = [self.folder.resolve(), *data_roots()]

    def check(self, path: Path, where: str = "") -> Path:
        """`path` resolved, if it lies in bounds; else DataError naming it (after `where`,
        e.g. "train.csv, line 4: ")."""
        from engine.data.datasets import DataError

        try:
            resolved = Path(path).resolve()
        except (OSError, RuntimeError, ValueError) as e:  # a link loop, a NUL byte
            raise DataError(f"{where}{str(path)!r} cannot be resolved: {e}") from None
        if any(resolved.is_relative_to(folder) for folder in self.allowed):
            return resolved
        raise DataError(
            f"{where}{path} leads outside the dataset folder {self.folder} (to {resolved}), "
            f"and outside the data roots; move the file into the dataset folder, or list "
            f"its folder in {ENV}"
        )
