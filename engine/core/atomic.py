"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine.core.errors import WorkbenchError

CAUSES = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.ENOTDIR: "part of the path is a file, not a folder",
    errno.EEXIST: "part of the path is a file, not a folder",
}


class WriteError(WorkbenchError, OSError):
    """A write that failed, said in words: the file, the cause, and that nothing was left
    half-written. Its `errno` is the operating system's."""

    def __init__(self, path: str | os.PathLike, error: OSError) -> None:
        super().__init__(error.errno, error.strerror)
        cause = CAUSES.get(error.errno, error.strerror or str(error))
        self.message = (
            f"cannot write {path}: {cause}. Nothing was half-written: the previous version of "
            "the file, if any, is intact"
        )

    def __str__(self) -> str:
        return self.message


def write_atomic(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write through `write(fileobj)` to a temporary file beside `path`, fsync, then rename.

    A failure of the file system raises WriteError (an OSError) naming `path`."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The writer's pid in the name: a file left by a writer killed mid-write is told from
        # one being written now, and swept (sweep_temporaries).
        prefix = f".{path.name}.{os.getpid()}-"
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if isinstance(e, OSError) and not isinstance(e, WriteError) and e.errno in CAUSES:
            raise WriteError(path, e) from e
        raise


_TEMPORARY = re.compile(r"\..+\.(\d+)-[A-Za-z0-9_]+\.tmp")
_OLD_TEMPORARY = re.compile(r"\..+\.[A-Za-z0-9_]{8}\.tmp")  # before the pid was in the name
OLD_SECONDS = 3600.0


def sweep_temporaries(folder: str | os.PathLike, alive: Callable[[int], bool]) -> list[Path]:
    """Remove, under `folder`, the temporary files of atomic writes whose writer is dead
    (kill -9 mid-write leaves one behind); returns what was removed. `alive(pid)` says
    whether a writer lives. Files of live writers, and anything else, are left alone."""
    removed = []
    now = time.time()
    for tmp in Path(folder).rglob(".*.tmp"):
        m = _TEMPORARY.fullmatch(tmp.name)
        try:
            if m:
                stale = not alive(int(m.group(1)))
            else:
                stale = bool(_OLD_TEMPORARY.fullmatch(tmp.name)) and (
                    now - tmp.lstat().st_mtime > OLD_SECONDS
                )
            if stale and tmp.is_file() and not tmp.is_symlink():
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue  # removed meanwhile, or not ours to remove
    return removed


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    write_atomic(path, lambda f: f.write(data))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    write_atomic(path, lambda f: np.save(f, array))


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    write_atomic(path, lambda f: np.savez_compressed(f, **arrays))
