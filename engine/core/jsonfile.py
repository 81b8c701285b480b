"""Reading JSON that came from outside (a run folder, a zip, a shared disk) as untrusted data.

`json.loads` can fail in more ways than `JSONDecodeError`: bytes that are not UTF-8, and
nesting deep enough to exhaust the interpreter's stack (`RecursionError`). Every one of them
becomes a `JsonFileError` whose message names the file, so a damaged file is one line for a
person, never a traceback.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

from engine.core.errors import WorkbenchError

MAX_JSON_BYTES = 64 * 2**20  # a config or a status is a few KB; anything this big is not ours


class JsonFileError(WorkbenchError, ValueError):
    """A JSON file (or text) that cannot be read; the message names it and says why."""


def parse_json(data: str | bytes, source: str) -> Any:
    """The value of JSON `data`; JsonFileError naming `source` when it is not valid JSON."""
    if len(data) > MAX_JSON_BYTES:
        raise JsonFileError(f"{source} is {len(data) / 2**20:.0f} MB: too large to be ours")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text)
    except UnicodeDecodeError as e:
        raise JsonFileError(f"{source} is not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise JsonFileError(f"{source} is not valid JSON: {e}") from None
    except RecursionError:
        raise JsonFileError(f"{source} is nested too deeply to be ours") from None
    except ValueError as e:  # a number of more than 4300 digits
        raise JsonFileError(f"{source} holds a number too long to read ({e})") from None


def read_regular(path: str | Path, limit: int, offset: int = 0) -> bytes:
    """At most `limit` bytes of regular file `path` from `offset` on. A name that leads to a
    device (/dev/zero never ends), a FIFO (never answers) or a folder is refused with
    OSError before anything is read: the file is opened without blocking, then looked at."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            if stat.S_ISDIR(mode):
                raise IsADirectoryError(errno.EISDIR, "it is a folder", str(path))
            raise OSError(errno.EINVAL, "it is not a regular file (a device or a FIFO)", str(path))
        os.lseek(fd, offset, os.SEEK_SET)
        chunks, left = [], limit
        while left > 0:
            chunk = os.read(fd, min(left, 2**24))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_json(path: str | Path) -> Any:
    """The value in JSON file `path`; JsonFileError (also for a missing or unreadable file)."""
    path = Path(path)
    try:
        data = read_regular(path, MAX_JSON_BYTES + 1)
    except FileNotFoundError:
        raise JsonFileError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise JsonFileError(f"{path} is a folder, not a JSON file") from None
    except OSError as e:
        raise JsonFileError(f"cannot read {path}: {e.strerror or e}") from None
    if len(data) > MAX_JSON_BYTES:
        raise JsonFileError(f"{path} is over {MAX_JSON_BYTES // 2**20} MB: too large to be ours")
    return parse_json(data, str(path))


def read_json_object(path: str | Path) -> dict[str, Any]:
    """A JSON object from `path`; JsonFileError when it is anything else."""
    value = read_json(path)
    if not isinstance(value, dict):
        raise JsonFileError(f"{path} must hold a JSON object, not {type(value).__name__}")
    return value
