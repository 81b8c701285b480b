"""The run store: one folder per run, created, resolved, read back (status.json as typed
values), listed and deleted. No torch, no processes: starting and stopping a run's process
is engine.execution's (executor, launcher); every reader goes through this module and the
files it names (engine.store.layout), so a run can be watched from anywhere.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.config import ConfigError, RunConfig
from engine.core.atomic import CAUSES, write_json
from engine.core.devices import device_problem
from engine.core.errors import WorkbenchError
from engine.core.jsonfile import JsonFileError, read_json, read_json_object
from engine.core.settings import REPO_ROOT
from engine.store.events import read_events
from engine.store.layout import RunLayout
from engine.store.liveness import judge
from engine.store.status import clean_status, config_problem

ACTIVE = ("queued", "running", "stale")  # stale: alive as far as anyone can tell


class RunError(WorkbenchError, RuntimeError):
    pass


def default_runs_dir() -> Path:
    return Path(os.environ.get("WORKBENCH_RUNS_DIR", REPO_ROOT / "runs")).expanduser()


# --- the store ---------------------------------------------------------------------------
def create_run(cfg: RunConfig, runs_dir: str | Path | None = None) -> Path:
    """A new run folder with its config; the id is unique even for simultaneous calls."""
    cfg.validate()
    cfg.resolve_for_run()
    problem = device_problem(cfg.device)
    if problem:  # before the folder exists: a run that cannot start is not made
        raise ConfigError(f"{problem}; use device 'auto' (the best one here) or 'cpu'")
    if cfg.data.path:  # the run's process may start elsewhere: store where the data really is
        cfg.data.path = str(Path(cfg.data.path).expanduser().resolve())
    weights = getattr(cfg, "weights", None)
    if weights not in (None, "imagenet", "none"):  # a weight file: the same, for the same reason
        cfg.weights = str(Path(weights).expanduser().resolve())
    root = Path(runs_dir) if runs_dir else default_runs_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"cannot create the runs folder {root}: {_cause(e)}{RUNS_HINT}") from None
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for _ in range(100):
        run_dir = root / f"{stamp}-{cfg.model.name}-{secrets.token_hex(3)}"
        try:
            run_dir.mkdir()  # exclusive: two callers never get the same folder
            break
        except FileExistsError:
            continue
        except OSError as e:
            raise RunError(
                f"cannot create a run folder in {root}: {_cause(e)}{RUNS_HINT}"
            ) from None
    else:
        raise RunError(f"could not find a free run id in {root}")
    try:
        write_json(RunLayout(run_dir).config, cfg.to_dict())
        write_status(run_dir, state="queued", created=time.time())
    except OSError as e:  # never leave a folder that looks like a run but is not one
        shutil.rmtree(run_dir, ignore_errors=True)
        raise RunError(f"cannot create a run in {root}: {_cause(e)}{RUNS_HINT}") from None
    return run_dir


RUNS_HINT = " (choose another with WORKBENCH_RUNS_DIR or --runs-dir)"


def _cause(e: OSError) -> str:
    return CAUSES.get(e.errno, e.strerror or str(e))


def resolve_run(run: str | Path, runs_dir: str | Path | None = None) -> Path:
    """A run given as a path or as an id (or a unique prefix of one) in the runs folder. The
    text is taken literally: `*` or `[` are characters of a name, never a pattern."""
    p = Path(run)
    if (p / "config.json").exists():
        return p
    root = Path(runs_dir) if runs_dir else default_runs_dir()
    text = str(run)
    bare_name = bool(text) and len(p.parts) == 1 and not p.is_absolute() and text not in (".", "..")
    if bare_name and (root / text / "config.json").exists():
        return root / text
    matches = (
        [d for d in root.iterdir() if d.name.startswith(text) and (d / "config.json").exists()]
        if bare_name and root.is_dir()
        else []
    )
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        names = ", ".join(sorted(m.name for m in matches))
        raise RunError(f"{run!r} matches several runs: {names}")
    raise RunError(f"no run {run!r} (looked for a folder with config.json, and in {root})")


def load_config(run_dir: str | Path) -> RunConfig:
    return RunConfig.load(RunLayout(Path(run_dir)).config)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created if missing), held for the `with` block."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def write_status(run_dir: str | Path, **fields: Any) -> dict:
    """Merge `fields` into status.json (atomic replace) and return the new status.

    The dashboard and the run both write it; the lock keeps one from undoing the other."""
    layout = RunLayout(Path(run_dir))
    with _locked(layout.root / ".status.lock"):
        status = _read_raw_status(layout.root)[0]  # damaged fields are dropped, not kept
        status.update(fields, updated=time.time())
        write_json(layout.status, status)
    return status


def _read_json(path: Path) -> dict | None:
    """A JSON object from `path`; None when missing, unreadable, or not an object."""
    try:
        return read_json_object(path)
    except JsonFileError:
        return None


def _read_raw_status(run_dir: Path) -> tuple[dict, list[str], str | None]:
    """The valid fields of status.json, the problems of the others, and why the whole file
    could not be read (or None)."""
    path = RunLayout(run_dir).status
    try:
        raw = read_json(path)
    except JsonFileError as e:
        return {}, [], str(e)
    clean, problems = clean_status(raw, str(path))
    if not isinstance(raw, dict):
        return {}, [], problems[0]
    return clean, problems, None


def read_status(run_dir: str | Path) -> dict:
    """status.json as typed values (engine.store.status), with a run whose process has died
    reported as failed instead of running, and one whose heartbeat stopped as stale
    (engine.store.liveness). A status file that cannot be read, or whose fields are damaged, gives
    state "damaged" and an error that says why (a live run keeps its state: the problem is
    then under "damaged")."""
    run_dir = Path(run_dir)
    status, problems, unreadable = _read_raw_status(run_dir)
    if unreadable:
        return {"state": "damaged", "error": unreadable}
    path = RunLayout(run_dir).status
    damage = f"{path}: {'; '.join(problems)}" if problems else None
    if "state" not in status and not damage:
        damage = f"{path} has no state"
    status = _judged(status)
    if damage and not status_is_active(status):
        status.update(state="damaged", error=damage)
    elif damage:
        status["damaged"] = damage
    return status


def _judged(status: dict) -> dict:
    state, pid = status.get("state"), status.get("pid")
    # Queued runs get a pid once launched: a launched run that died before starting is failed too.
    if not (state == "running" or (state == "queued" and pid)):
        return status
    verdict, why = judge(status)
    if verdict == "stale":
        status.update(state="stale", error=why)
    elif verdict == "dead":
        if status.get("stop_requested"):  # stopped while starting, before it could save
            status["state"] = "stopped"
            return status
        status["state"] = "failed"
        if not status.get("error"):  # execute() writes error=None when it starts
            status["error"] = why or "the training process ended without saying why (killed?)"
    return status


@dataclass
class RunSummary:
    run_id: str
    path: Path
    status: dict
    config: dict | None
    error: str | None = None

    @property
    def state(self) -> str:
        return self.status.get("state", "damaged")

    @property
    def active(self) -> bool:
        return status_is_active(self.status)

    @property
    def model(self) -> str:
        return self._section_name("model")

    @property
    def dataset(self) -> str:
        return self._section_name("data")

    def _section_name(self, section: str) -> str:
        value = (self.config or {}).get(section)
        return str(value.get("name", "?")) if isinstance(value, dict) else "?"


def list_runs(runs_dir: str | Path | None = None) -> list[RunSummary]:
    """Every run folder, newest first; a damaged folder is listed with its problem, not hidden."""
    root = Path(runs_dir) if runs_dir else default_runs_dir()
    if not root.is_dir():
        return []
    runs = []
    for d in (p for p in root.iterdir() if p.is_dir()):
        layout = RunLayout(d)
        if not layout.config.exists():
            continue
        try:
            config = read_json(layout.config)
            why = config_problem(config)
        except JsonFileError as e:
            config, why = None, str(e)
        if why:
            config, error = None, why if str(layout.config) in why else f"{layout.config}: {why}"
        else:
            error = None
        status = read_status(d)
        if error and not status_is_active(status):
            status = {**status, "state": "damaged", "error": error}
        runs.append(RunSummary(d.name, d, status, config, error))
    # Ids share a one-second stamp and end in random hex: order by creation time, not by name.
    runs.sort(key=_created, reverse=True)
    return runs


def _created(run: RunSummary) -> tuple[float, str]:
    created = run.status.get("created")
    if not isinstance(created, (int, float)):  # status.json damaged: when config.json was written
        try:
            created = RunLayout(run.path).config.stat().st_mtime
        except OSError:  # deleted while we listed it
            created = 0.0
    return float(created), run.run_id


def read_metrics(run_dir: str | Path) -> list[dict]:
    return read_events(RunLayout(Path(run_dir)).metrics)[0]


# --- the launcher ------------------------------------------------------------------------
def status_is_active(status: dict) -> bool:
    """True while a process is training (or was started to train) the run of `status` (as
    read by `read_status`); a run that was created but never launched is queued with no pid,
    and not active."""
    return status.get("state") in ("running", "stale") or (
        status.get("state") == "queued" and bool(status.get("pid"))
    )


def is_active(run_dir: str | Path) -> bool:
    return status_is_active(read_status(run_dir))


def delete_run(run_dir: str | Path) -> None:
    """Remove a run folder; refused while the run is active (stop it first)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise RunError(f"{run_dir} is not a run folder")
    if is_active(run_dir):
        raise RunError(f"{run_dir.name} is still active; stop it before removing it")
    shutil.rmtree(run_dir)
