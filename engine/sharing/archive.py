"""A run folder as a zip to share, and such a zip imported back: checked (paths, links, one
top-level folder, a valid config and status, its unpacked size and compression ratio) before
anything lands in the runs folder, extracted beside it and renamed into place, so a refused or
failed import leaves nothing."""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from engine.config import ConfigError, RunConfig
from engine.core.atomic import CAUSES, write_atomic
from engine.core.jsonfile import JsonFileError, parse_json, read_json_object
from engine.core.ziplimits import (  # noqa: F401  (re-exported)
    MAX_COMPRESSION_RATIO,
    RATIO_FREE_BYTES,
    unpack_ratio_problem,
)
from engine.store.layout import RunLayout
from engine.store.runs import RunError, write_status

# What a run folder may unpack to. Module attributes, read at each call.
MAX_UNPACKED_BYTES = 20 * 10**9
MAX_MEMBERS = 200_000
MAX_DEPTH = 16  # folders in a member's path; a run's are at most 5 deep
MAX_CONFIG_BYTES = 10 * 2**20  # config.json and status.json are a few KB
# What `pack_run` writes; anything else (bzip2, lzma, Deflate64, AES...) is refused up front.
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
# What reading a damaged zip raises (a seek to a negative offset is an OSError, for one).
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # newlines, tabs, escapes: never in a name
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
            if _LEFT_OUT.fullmatch(name) or not _is_plain_file(path) or path.resolve() == out:
                continue  # links, pipes (reading one would wait forever), devices: not the run's
            if _CONTROL.search((rel / name).as_posix()):
                raise RunError(f"cannot pack {str(path)!r}: a control character in its name (an "
                               "import would refuse it); rename or remove it")  # fmt: skip
            files.append(rel / name)
    top = safe_file_name(run_dir.name, "run")  # what an import accepts as a run id

    def write(f) -> None:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as z:
            for rel in files:
                stored = rel.suffix.lower() in _ALREADY_COMPRESSED
                try:
                    z.write(run_dir / rel, f"{top}/{rel.as_posix()}",
                            zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)  # fmt: skip
                except OSError as e:  # the run's file, not the zip being written
                    raise RunError(f"cannot read {run_dir / rel}: "
                                   f"{CAUSES.get(e.errno, e.strerror or e)}") from None  # fmt: skip

    write_atomic(out, write)
    return len(files)


def _is_plain_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:  # gone while we listed it
        return False


def _refused(zip_path: Path, why: str, member: str | None = None) -> ArchiveError:
    where = f"{zip_path}" + (f", member {member!r}" if member else "")
    return ArchiveError(f"refused to import {where}: {why}; nothing was written to the runs folder")


def _checked_members(z: zipfile.ZipFile, zip_path: Path) -> list[tuple[zipfile.ZipInfo, list[str]]]:
    """Every member with its path components, or ArchiveError for the first one that is not
    a plain file or folder inside one top-level folder, or that cannot be read here."""
    members = []
    for info in z.infolist():
        name = info.filename
        if _CONTROL.search(name):
            raise _refused(zip_path, "a control character (a newline, a tab...) in its name", name)
        if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
            raise _refused(zip_path, "an absolute path", name)
        parts = re.split(r"[/\\]", name[:-1] if name.endswith("/") else name)
        if ".." in parts:
            raise _refused(zip_path, "a '..' in its path would write outside the run folder", name)
        if any(p in ("", ".") for p in parts):
            raise _refused(zip_path, "an empty or '.' part in its path", name)
        if len(parts) > MAX_DEPTH:
            raise _refused(zip_path, f"{len(parts)} folders deep, over the limit of {MAX_DEPTH}",
                           name[:200] + ("..." if len(name) > 200 else ""))  # fmt: skip
        mode = info.external_attr >> 16  # Unix mode, when the zip was made on Unix
        if stat.S_ISLNK(mode):
            raise _refused(zip_path, "a symbolic link", name)
        if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise _refused(zip_path, f"not a file or a folder (mode {mode:o})", name)
        if info.flag_bits & 0x41:  # bit 0: encrypted; bit 6: strongly encrypted
            raise _refused(zip_path, "it is encrypted", name)
        if info.compress_type not in _METHODS:
            raise _refused(zip_path, f"compression method {info.compress_type} is not supported "
                           f"(a run zip's members are {' or '.join(_METHODS.values())})", name)  # fmt: skip
        members.append((info, parts))
    _check_unique(members, zip_path)
    return members


def _check_unique(members: list[tuple[zipfile.ZipInfo, list[str]]], zip_path: Path) -> None:
    """Each path once, and no file where another member needs a folder."""
    files, folders = {}, set()
    for info, parts in members:
        key = tuple(parts)
        if not info.is_dir():
            if key in files:
                raise _refused(zip_path, "the same path twice", info.filename)
            files[key] = info.filename
        folders.update(key[:k] for k in range(1, len(key) + (1 if info.is_dir() else 0)))
    if clash := folders & files.keys():
        raise _refused(zip_path, "a file where other members need a folder", files[min(clash)])


def unpack_run(zip_path: str | Path, runs_dir: str | Path) -> Path:
    """Import a zip made by `pack_run` into `runs_dir`; returns the new run folder.

    The zip is checked before anything is written (paths, names, links, compression, one
    top-level folder, a valid config.json and status.json, its unpacked size and ratio),
    extracted into a temporary folder inside `runs_dir`, and renamed into place; a failure
    leaves nothing behind. A run id that is not a safe folder name is sanitised
    (`safe_file_name`); one already present gets a suffix. Its process, if any, is not here:
    the pid is dropped, and a run that was queued or running when packed is marked stopped;
    status.json notes where it was imported from."""
    zip_path, root = Path(zip_path), Path(runs_dir)
    try:
        z = zipfile.ZipFile(zip_path)
        packed = zip_path.stat().st_size
    except (*_DAMAGED, NotImplementedError) as e:  # NotImplementedError: "zip file version"
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
        if problem := unpack_ratio_problem([i for i, _ in files], packed):
            why, member = problem
            raise _refused(zip_path, why, member.filename if member else None)
        _check_own_files(members, zip_path, run_id)
        _check_config(z, zip_path, f"{run_id}/config.json")
        _check_status(z, zip_path, f"{run_id}/status.json")
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
            _extract(z, zip_path, files, staging, packed)
            _mark_imported(staging / run_id, zip_path, run_id)
            return _rename_free(staging / run_id, root, safe_file_name(run_id, "imported-run"))
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


def _check_own_files(members, zip_path: Path, run_id: str) -> None:
    """The run's own files are files: a folder in their place would stop the import from
    writing status.json, and every reader of the run from reading them."""
    layout = RunLayout(Path(run_id))
    own = {layout.config.name, layout.status.name, layout.metrics.name, layout.log.name}
    for info, parts in members:
        if len(parts) > 1 and parts[1] in own and (info.is_dir() or len(parts) > 2):
            why = f"a run's {parts[1]} is a file, not a folder"
            raise _refused(zip_path, why, info.filename)


def _read_member(z: zipfile.ZipFile, zip_path: Path, member: str, what: str) -> bytes | None:
    """A small member's bytes (None when there is none), refused when it is a folder, too
    large or damaged."""
    try:
        info = z.getinfo(member)
    except KeyError:
        return None
    if info.is_dir():
        raise _refused(zip_path, f"a run's {what} is a file, not a folder", member)
    if info.file_size > MAX_CONFIG_BYTES:
        why = f"{what} of {info.file_size:,} bytes, over the limit of {MAX_CONFIG_BYTES:,}"
        raise _refused(zip_path, why, member)
    return b"".join(_chunks(z, zip_path, info))


def _chunks(z: zipfile.ZipFile, zip_path: Path, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """A member's unpacked bytes, a MB at a time; ArchiveError when the zip cannot give them
    (errors of reading the zip only: writing them elsewhere is the caller's)."""
    try:
        with z.open(info) as src:
            while chunk := src.read(2**20):
                yield chunk
    except (*_DAMAGED, NotImplementedError, RuntimeError) as e:
        raise _refused(
            zip_path, f"damaged ({getattr(e, 'strerror', None) or e})", info.filename
        ) from None


def _check_config(z: zipfile.ZipFile, zip_path: Path, member: str) -> None:
    data = _read_member(z, zip_path, member, "config.json")
    if data is None:
        raise _refused(zip_path, "no config.json in its folder: not a run folder", member)
    try:
        parse_json(data, "config.json")  # not UTF-8, not JSON, nested too deep: said here
        RunConfig.from_json(data.decode(), source="config.json")
    except (ConfigError, JsonFileError) as e:
        raise _refused(zip_path, f"invalid config: {e}", member) from None


def _check_status(z: zipfile.ZipFile, zip_path: Path, member: str) -> None:
    """status.json, when there is one, is a JSON object (its fields are read as untrusted
    values wherever they are used; the import itself drops the pid)."""
    data = _read_member(z, zip_path, member, "status.json")
    if data is None:
        return
    try:
        status = parse_json(data, "status.json")
    except JsonFileError as e:
        raise _refused(zip_path, f"invalid status: {e}", member) from None
    if not isinstance(status, dict):
        why = f"invalid status: status.json must hold a JSON object, not {type(status).__name__}"
        raise _refused(zip_path, why, member)


def _extract(z: zipfile.ZipFile, zip_path: Path, files, staging: Path, packed: int) -> None:
    """Extract `files`, counting the bytes that come out: the headers' sizes may lie, so the
    size and ratio limits are held again here, on what is actually written."""
    limit = min(MAX_UNPACKED_BYTES, max(RATIO_FREE_BYTES, MAX_COMPRESSION_RATIO * packed))
    written = 0
    for info, parts in files:
        if _LEFT_OUT.fullmatch(parts[-1]):
            continue
        target = staging.joinpath(*parts)  # parts were checked: no '..', not absolute
        target.parent.mkdir(parents=True, exist_ok=True)
        member_limit = max(RATIO_FREE_BYTES, MAX_COMPRESSION_RATIO * info.compress_size)
        member_written = 0
        try:
            with open(target, "xb") as dst:
                for chunk in _chunks(z, zip_path, info):
                    member_written += len(chunk)
                    written += len(chunk)
                    if why := _too_much(info, member_written, member_limit, written, limit, packed):
                        raise _refused(zip_path, why, info.filename)
                    dst.write(chunk)
        except FileExistsError:  # the same name in another case, on a file system without case
            raise _refused(zip_path, "the same path twice", info.filename) from None


def _too_much(
    info: zipfile.ZipInfo,
    member_written: int,
    member_limit: int,
    written: int,
    limit: int,
    packed: int,
) -> str | None:
    if member_written > info.file_size:
        return f"it unpacks to more than the {info.file_size:,} bytes it declares"
    if member_written > member_limit:
        return (f"{info.compress_size:,} bytes unpack to more than {member_limit:,}, over the "
                f"limit of {MAX_COMPRESSION_RATIO}:1 (a decompression bomb?)")  # fmt: skip
    if written > limit:
        if limit == MAX_UNPACKED_BYTES:
            return f"it unpacks to more than {limit:,} bytes"
        return (f"it unpacks to more than {limit:,} bytes, over {MAX_COMPRESSION_RATIO} times "
                f"its own {packed:,} (a decompression bomb?)")  # fmt: skip
    return None


def _mark_imported(run_dir: Path, zip_path: Path, run_id: str) -> None:
    try:
        state = read_json_object(RunLayout(run_dir).status).get("state")
    except JsonFileError:  # none: checked before extracting, so it is not a damaged one
        state = None
    fields = {"imported_from": str(zip_path.resolve()), "imported_run_id": run_id,
              "imported": time.time()}  # fmt: skip
    # Its process, if any, is not here: nothing of it may be taken for one of ours.
    fields.update(pid=None, pid_start=None, host=None, heartbeat=None)
    if state not in ("finished", "stopped", "failed"):
        was = f"while {state}" if state in ("queued", "running", "stale") else "in no known state"
        fields.update(state="stopped", stop_requested=False, after=[],
                      note=f"imported {was}; resume it to continue")  # fmt: skip
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
