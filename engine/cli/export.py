"""CLI commands to share a run: export (for TensorBoard's Embedding Projector, numpy,
spreadsheets; the whole run folder as a zip) and import (such a zip)."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.config import ConfigError

FORMATS = ("projector", "npz", "csv", "metrics", "zip")
SNAPSHOT_FORMATS = ("projector", "npz", "csv")


def cmd_export(a: argparse.Namespace) -> int:
    from engine.sharing import archive, export
    from engine.store import runs

    run_dir = runs.resolve_run(a.run, a.runs_dir)
    misplaced = [
        flag
        for flag, given, formats in (
            ("--epoch", a.epoch is not None, SNAPSHOT_FORMATS),
            ("--no-sprite", a.no_sprite, ("projector",)),
            ("--no-checkpoints", a.no_checkpoints, ("zip",)),
        )
        if given and a.format not in formats
    ]
    if misplaced:
        raise ConfigError(f"{', '.join(misplaced)} does not apply to --format {a.format}")
    epoch = None
    if a.format in SNAPSHOT_FORMATS:
        epoch, _ = export.snapshot(run_dir, a.epoch)  # a missing epoch is said before writing
    default = export.default_output(run_dir, a.format, epoch)
    out = Path(a.out).expanduser() if a.out else default
    if a.format != "projector" and out.is_dir():  # a folder: the default name inside it
        out = out / default.name
    # Re-running the same export replaces its own previous output under <run>/exports/ (the
    # zip's default, ./<run-id>.zip, lies outside the run: it is not ours to replace).
    ours = a.format != "zip" and out.resolve() == default.resolve()
    runs_dir = Path(a.runs_dir) if a.runs_dir else runs.default_runs_dir()
    export.check_output(
        out, run_dir, runs_dir, folder=a.format == "projector", force=a.force, ours=ours
    )

    if a.format == "projector":
        result = export.export_projector(run_dir, out, epoch, sprite=not a.no_sprite)
        n, d = result.shape
        sprite = (
            f"sprite of {result.thumbnail} px thumbnails"
            if result.thumbnail
            else f"no sprite: {result.no_sprite}"
        )
        print(f"projector files of {run_dir.name}, epoch {epoch} ({n} points x {d}; {sprite})")
        print(f"wrote {out}")
        print(f"open it: tensorboard --logdir {out}   (then the Projector tab)")
        print(
            "     or: upload tensors.tsv and metadata.tsv at https://projector.tensorflow.org (Load)"
        )
    elif a.format == "npz":
        export.export_npz(run_dir, out, epoch)
        print(f"embeddings of {run_dir.name}, epoch {epoch}, with class names -> wrote {out}")
    elif a.format == "csv":
        export.export_csv(run_dir, out, epoch)
        print(f"embeddings of {run_dir.name}, epoch {epoch} -> wrote {out}")
    elif a.format == "metrics":
        rows = export.export_metrics(run_dir, out)
        print(f"{rows} metric events of {run_dir.name} -> wrote {out}")
    else:
        if runs.is_active(run_dir):
            print(f"note: {run_dir.name} is still active; the zip holds its files as they are now")
        files = archive.pack_run(run_dir, out, checkpoints=not a.no_checkpoints)
        left_out = " (checkpoints left out)" if a.no_checkpoints else ""
        print(f"{run_dir.name}: {files} files{left_out} -> wrote {out} "
              f"({out.stat().st_size / 2**20:.1f} MB)")  # fmt: skip
        print(f"import it elsewhere with: python -m engine import {out.name}")
    return 0


def cmd_import(a: argparse.Namespace) -> int:
    from engine.sharing import archive
    from engine.store import runs

    root = Path(a.runs_dir) if a.runs_dir else runs.default_runs_dir()
    run_dir = archive.unpack_run(a.zip, root)
    status = runs.read_status(run_dir)
    print(f"imported {a.zip} -> {run_dir}")
    original = str(status.get("imported_run_id") or run_dir.name)
    safe = archive.safe_file_name(original, "imported-run")
    if safe != original:
        print(f"(its id {original!r} holds characters a run id may not: imported as {safe})")
    if run_dir.name != safe:
        print(f"(a run {safe} already exists here: imported as {run_dir.name})")
    if status.get("note"):
        print(f"{run_dir.name} is {status.get('state')}: {status['note']}")
    print(f"see it with: python -m engine show {run_dir.name}")
    return 0


def add_export_commands(sub: argparse._SubParsersAction) -> None:
    """`export` and `import`, registered on the main parser's subcommands."""
    e = sub.add_parser(
        "export", help="a snapshot for TensorBoard's projector, .npz or CSV; metrics as CSV; "
        "the run folder as a zip",
        description="Export a run. projector: tensors.tsv, metadata.tsv, sprite.png and "
        "projector_config.pbtxt for TensorBoard's Embedding Projector (default <run>/exports/"
        "projector_epoch_NNNN/); npz, csv: a snapshot's embeddings (default <run>/exports/"
        "embeddings_epoch_NNNN.*); metrics: metrics.jsonl as CSV (<run>/exports/metrics.csv); "
        "zip: the run folder, to import elsewhere (default ./<run-id>.zip).",
    )  # fmt: skip
    e.add_argument("run", help="run id (or unique prefix) or folder")
    e.add_argument("--format", default="projector", choices=FORMATS, help="default: projector")
    e.add_argument("--epoch", type=int, default=None, help="snapshot epoch (default: the last)")
    e.add_argument("--out", default=None, help="file (projector: folder) to write")
    e.add_argument("--no-sprite", action="store_true", help="projector: no thumbnail sprite")
    e.add_argument("--no-checkpoints", action="store_true", help="zip: leave checkpoints/ out")
    e.add_argument("--force", action="store_true", help="overwrite an existing file (projector: "
                   "write into a folder that is not empty); never allowed inside a run's own "
                   "files, only under its exports/")  # fmt: skip
    e.set_defaults(func=cmd_export)

    i = sub.add_parser("import", help="import a run zip (from `export --format zip`)")
    i.add_argument("zip", help="the zip file")
    i.set_defaults(func=cmd_import)
