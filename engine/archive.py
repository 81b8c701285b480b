"""A run folder as a zip to share, and such a zip imported back: checked (paths, links, one
top-level folder, a valid config, its unpacked size) before anything lands in the runs folder,
extracted beside it and renamed into place, so a refused or failed import leaves nothing."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

from engine.atomic import CAUSES, write_atomic
from engine.config import ConfigError, RunConfig
from engine.layout import RunLayout
from engine.runs import RunError, write_status

# What a run folder may unpack to. Module attributes, read at each call.
MAX_UNPACKED_BYTES = 20 * 10**9
MAX_MEMBERS = 200_000
MAX_CONFIG_BYTES = 10 * 2**20
# Written while a run lives, meaningless elsewhere: never packed, never unpacked.
_LEFT_OUT = re.compile(r"\..*\.tmp|\.status\.lock|\.train\.lock")
_ALREADY_COMPRESSED = {".npz", ".png", ".jpg", ".jpeg", ".zip", ".gz"}


class ArchiveError(RunError):
    """A zip refused as a run: the message names the zip, the member and why."""


def pack_run(run_dir: str | Path, out_zip: str | Path, checkpoints: bool = True) -> int:
    """Zip the run folder's files under one folder named after the run id (no lock or
    temporary files; without `checkpoints`, no checkpoints/). Returns the number of files."""
    run_dir, out = Path(run_dir), Path(out_zip).resolve()
    if not RunLayout(run_dir).config.is_file():
        raise RunError(f"{run_dir} is not a run folder (no config.json)")
    files = []
    for folder, dirs, names in os.walk(run_dir):  # symbolic links are not followed
        rel = Path(folder).relative_to(run_dir)
        if not checkpoints and rel == Path("."):
            dirs[:] = [d for d in dirs if d != RunLayout(run_dir).checkpoints.name]
        dirs.sort()
        for name in sorted(names):
            path = Path(folder) / name
            if _LEFT_OUT.fullmatch(name) or path.is_symlink() or path.resolve() == out:
                continue
            files.append(rel / name)

    def write(f) -> None:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as z:
            for rel in files:
                stored = rel.suffix.lower() in _ALREADY_COMPRESSED
                z.write(run_dir / rel, f"{run_dir.name}/{rel.as_posix()}",
                        zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)  # fmt: skip

    write_atomic(out, write)
    return len(files)


def _refused(zip_path: Path, why: str, member: str | None = None) -> ArchiveError:
    where = f"{zip_path}" + (f", member {member!r}" if member else "")
    return ArchiveError(f"refused to import {where}: {why}; nothing was written to the runs folder")


def _checked_members(z: zipfile.ZipFile, zip_path: Path) -> list[tuple[zipfile.ZipInfo, list[str]]]:
    """Every member with its path components, or ArchiveError for the first one that is not
    a plain file or folder inside one top-level folder."""
    members = []
    for info in z.infolist():
        name = info.filename
        if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
            raise _refused(zip_path, "an absolute path", name)
        parts = re.split(r"[/\\]", name[:-1] if name.endswith("/") else name)
        if ".." in parts:
            raise _refused(zip_path, "a '..' in its path would write outside the run folder", name)
        if any(p in ("", ".") for p in parts):
            raise _refused(zip_path, "an empty or '.' part in its path", name)
        mode = info.external_attr >> 16  # Unix mode, when the zip was made on Unix
        if stat.S_ISLNK(mode):
            raise _refused(zip_path, "a symbolic link", name)
        if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise _refused(zip_path, f"not a file or a folder (mode {mode:o})", name)
        members.append((info, parts))
    return members


def unpack_run(zip_path: str | Path, runs_dir: str | Path) -> Path:
    """Import a zip made by `pack_run` into `runs_dir`; returns the new run folder.

    The zip is checked before anything is written (paths, links, one top-level folder, a
    valid config.json, its unpacked size), extracted into a temporary folder inside
    `runs_dir`, and renamed into place; a failure leaves nothing behind. A run id already
    present gets a suffix. A run that was queued or running when packed is marked stopped
    (its process is not here); status.json notes where it was imported from."""
    zip_path, root = Path(zip_path), Path(runs_dir)
    try:
        z = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as e:
        raise _refused(
            zip_path, f"not a readable zip file ({getattr(e, 'strerror', None) or e})"
        ) from None
    with z:
        members = _checked_members(z, zip_path)
        if len(members) > MAX_MEMBERS:
            raise _refused(zip_path, f"{len(members):,} members, over the limit of {MAX_MEMBERS:,}")
        tops = sorted({parts[0] for _, parts in members})
        if len(tops) != 1:
            raise _refused(zip_path, f"{len(tops)} top-level entries ({', '.join(tops[:5])}); "
                           "a run zip holds one folder, the run", tops[1] if tops[1:] else None)  # fmt: skip
        run_id = tops[0]
        if run_id.startswith("."):
            raise _refused(zip_path, "a run id does not start with '.'", run_id)
        files = [(i, p) for i, p in members if not i.is_dir()]
        total = sum(i.file_size for i, _ in files)
        if total > MAX_UNPACKED_BYTES:
            largest = max(files, key=lambda m: m[0].file_size)[0]
            raise _refused(zip_path, f"it unpacks to {total:,} bytes, over the limit of "
                           f"{MAX_UNPACKED_BYTES:,} (largest member: {largest.file_size:,} bytes)",
                           largest.filename)  # fmt: skip
        _check_config(z, zip_path, f"{run_id}/config.json")
        try:
            free = shutil.disk_usage(root if root.exists() else root.parent).free
        except OSError:
            free = None
        if free is not None and total > free:
            raise _refused(zip_path, f"it unpacks to {total:,} bytes and the disk of {root} has "
                           f"{free:,} free")  # fmt: skip
        try:
            root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".import-", dir=root))
        except OSError as e:
            raise RunError(
                f"cannot import into {root}: {CAUSES.get(e.errno, e.strerror)}"
            ) from None
        try:
            _extract(z, zip_path, files, staging)
            _mark_imported(staging / run_id, zip_path, run_id)
            return _rename_free(staging / run_id, root, run_id)
        except OSError as e:  # the disk, not the zip: a full disk, a read-only folder
            raise RunError(f"cannot import {zip_path} into {root}: "
                           f"{CAUSES.get(e.errno, e.strerror or e)}; nothing was left there") from None  # fmt: skip
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def safe_file_name(name: str, default: str = "download") -> str:
    """`name` with only letters, digits, '.', '-' and '_' (no folders, no leading dot), at
    most 100 characters: safe to write as, or to offer for download as, a file name."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return cleaned[:100] or default


def unpack_upload(data: bytes, name: str, runs_dir: str | Path) -> Path:
    """`unpack_run` of a zip received as bytes (a browser upload): written to a private
    temporary folder under a sanitised name (the name only labels messages), then removed."""
    safe = safe_file_name(Path(name).name, "upload.zip")
    with tempfile.TemporaryDirectory(prefix="workbench-import-") as tmp:
        path = Path(tmp) / safe
        path.write_bytes(data)
        return unpack_run(path, runs_dir)


def _check_config(z: zipfile.ZipFile, zip_path: Path, member: str) -> None:
    try:
        info = z.getinfo(member)
    except KeyError:
        raise _refused(zip_path, "no config.json in its folder: not a run folder", member) from None
    if info.is_dir() or info.file_size > MAX_CONFIG_BYTES:
        raise _refused(zip_path, "config.json is not a config file", member)
    try:
        RunConfig.from_json(z.read(info).decode(), source="config.json")
    except (ConfigError, UnicodeDecodeError) as e:
        raise _refused(zip_path, f"invalid config: {e}", member) from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise _refused(zip_path, f"damaged ({e})", member) from None


def _extract(z: zipfile.ZipFile, zip_path: Path, files, staging: Path) -> None:
    written = 0
    for info, parts in files:
        if _LEFT_OUT.fullmatch(parts[-1]):
            continue
        target = staging.joinpath(*parts)  # parts were checked: no '..', not absolute
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with z.open(info) as src, open(target, "xb") as dst:
                while chunk := src.read(2**20):
                    written += len(chunk)  # the headers' sizes may lie: count what comes out
                    if written > MAX_UNPACKED_BYTES:
                        why = f"it unpacks to more than {MAX_UNPACKED_BYTES:,} bytes"
                        raise _refused(zip_path, why, info.filename)
                    dst.write(chunk)
        except FileExistsError:
            raise _refused(zip_path, "the same path twice", info.filename) from None
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:
            raise _refused(zip_path, f"damaged ({e})", info.filename) from None


def _mark_imported(run_dir: Path, zip_path: Path, run_id: str) -> None:
    try:
        state = json.loads(RunLayout(run_dir).status.read_text()).get("state")
    except (OSError, ValueError, AttributeError):
        state = None
    fields = {"imported_from": str(zip_path.resolve()), "imported_run_id": run_id,
              "imported": time.time()}  # fmt: skip
    # Its process, if any, is not here: nothing of it may be taken for one of ours.
    fields.update(pid=None, pid_start=None, host=None, heartbeat=None)
    if state not in ("finished", "stopped", "failed"):
        fields.update(
            state="stopped", stop_requested=False, after=[],
            note=f"imported while {state or 'without a status'}; resume it to continue",
        )  # fmt: skip
    write_status(run_dir, **fields)


def _rename_free(staged: Path, root: Path, run_id: str) -> Path:
    for k in range(1000):
        name = run_id if k == 0 else f"{run_id}-imported" + (f"-{k}" if k > 1 else "")
        dest = root / name
        if dest.exists() or dest.is_symlink():
            continue
        try:
            os.rename(staged, dest)
            return dest
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
    raise RunError(f"no free run id for {run_id} in {root}")
