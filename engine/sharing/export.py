"""Export: a snapshot's embeddings for TensorBoard's Embedding Projector, as .npz or as CSV;
the metrics as CSV. A whole run folder as a zip, and its import: engine.sharing.archive.

A snapshot is read as untrusted data (it may come from a zip or a shared disk): its sizes,
types and ranges are checked before use, and text from the run (class names) cannot break a
TSV line or become a spreadsheet formula."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.config import ConfigError
from engine.core.atomic import save_npz, write_atomic, write_bytes
from engine.store.events import read_events
from engine.store.layout import RunLayout, epoch_name
from engine.store.runs import load_config, read_status

# The Embedding Projector's files (TensorBoard reads paths relative to the config's folder).
TENSORS, METADATA, SPRITE, PROJECTOR_CONFIG = (
    "tensors.tsv", "metadata.tsv", "sprite.png", "projector_config.pbtxt",
)  # fmt: skip
SPRITE_MAX_PX = 8192  # the projector's documented limit on each side of the sprite
MAX_THUMBNAIL_PX = 64  # larger thumbnails only make the sprite heavy: points are drawn small
EXPORTS = "exports"  # default outputs, inside the run folder
# Characters that would end a TSV cell or line (or a line in some readers): a space instead.
_BREAKS_A_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class SpriteTooLarge(ValueError):
    """More points than thumbnails of one pixel fit in the projector's sprite."""


# --- snapshots ----------------------------------------------------------------------------
def snapshot(run_dir: str | Path, epoch: int | None = None) -> tuple[int, dict[str, np.ndarray]]:
    """The epoch (default: the last) and arrays of one of the run's embedding snapshots;
    ConfigError naming the file when it is damaged, too large or holds the wrong arrays."""
    from engine.inspect.snapshots import load_embedding

    layout = RunLayout(Path(run_dir))
    epochs = layout.embedding_epochs()
    if not epochs:
        raise ConfigError(f"{Path(run_dir).name} has no embedding snapshots yet")
    epoch = epochs[-1] if epoch is None else epoch
    if epoch not in epochs:
        raise ConfigError(f"no snapshot at epoch {epoch}; snapshots exist at epochs {epochs}")
    path = layout.embedding_file(epoch)
    try:
        emb = load_embedding(run_dir, epoch)
    # MemoryError: a header's shape that lies; NotImplementedError, RuntimeError: zipfile's
    # words for a member it cannot read (a damaged header, encryption)
    except (ValueError, OSError, MemoryError, NotImplementedError, RuntimeError) as e:
        why = str(e) or type(e).__name__
        raise ConfigError(why if str(path) in why else f"{path}: {why}") from None
    return epoch, emb


def class_names(run_dir: str | Path, emb: dict[str, np.ndarray]) -> list[str]:
    """The run's class names (status.json, written when its data loaded), else 0..n-1; each
    on one line (no tab, newline or other control character: one TSV cell each)."""
    n = int(max(emb["labels"].max(initial=-1), emb["predictions"].max(initial=-1))) + 1
    status = read_status(run_dir)
    summary = status.get("summary")
    names = status.get("classes") or (summary.get("classes") if isinstance(summary, dict) else None)
    if isinstance(names, list) and len(names) >= n:
        return [_BREAKS_A_LINE.sub(" ", str(c)) for c in names]
    return [str(i) for i in range(n)]


def run_images(run_dir: str | Path, sample_ids: np.ndarray) -> np.ndarray:
    """(n, 3, H, W) uint8 images of a run's sample ids, from its dataset loaded as it trained."""
    from engine.data import load_dataset

    cfg = load_config(run_dir)
    if cfg.kind == "fewshot":
        from engine.data.episodes import load_fewshot

        splits = load_fewshot(cfg)
    else:
        splits = load_dataset(cfg.data)
    return splits.images_by_id(sample_ids).numpy()


def default_output(run_dir: str | Path, fmt: str, epoch: int | None = None) -> Path:
    run_dir = Path(run_dir)
    if fmt == "zip":
        return Path.cwd() / f"{run_dir.name}.zip"
    if fmt == "metrics":
        return run_dir / EXPORTS / "metrics.csv"
    stem = epoch_name(epoch, "")
    if fmt == "projector":
        return run_dir / EXPORTS / f"projector_{stem}"
    return run_dir / EXPORTS / f"embeddings_{stem}.{fmt}"


def check_output(
    out: Path,
    run_dir: Path,
    runs_dir: Path,
    *,
    folder: bool,
    force: bool = False,
    ours: bool = False,
) -> None:
    """ConfigError unless an export may write `out` (a file; with `folder`, the projector's
    folder). Never inside a run folder's own files (`run_dir`, any run in `runs_dir`, any
    folder with config.json and status.json; symbolic links resolved): only under its
    exports/. Never over an existing file or into a folder that is not empty, unless `force`
    or `ours` (our own default output, which a re-export replaces)."""
    resolved = out.resolve()
    run, runs = run_dir.resolve(), runs_dir.resolve()
    for parent in (resolved, *resolved.parents):
        if _is_run_folder(parent, run, runs) and not resolved.is_relative_to(parent / EXPORTS):
            shown = out if resolved == out.absolute() else f"{out} (which is {resolved})"
            raise ConfigError(
                f"refused to write {shown}: it is inside the run folder {parent}, whose own "
                f"files an export must not replace; write it under {parent / EXPORTS} or "
                "outside the run"
            )
    if folder and (out.exists() or out.is_symlink()) and not out.is_dir():
        raise ConfigError(
            f"refused to write {out}: it is a file, and the projector writes a folder"
        )
    if not folder and out.exists() and not out.is_file():  # a folder was handled by the caller
        raise ConfigError(f"refused to write {out}: it is not a regular file (a device, a FIFO, "
                          "a socket or a folder); --force replaces files only")  # fmt: skip
    if force or ours:
        return
    if folder and out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"refused to write into {out}: the folder is not empty (add --force "
                          "to write the projector files into it, replacing those of their names)")  # fmt: skip
    if not folder and (out.exists() or out.is_symlink()):
        raise ConfigError(f"refused to overwrite {out}: it exists (add --force to replace it)")


def _is_run_folder(folder: Path, run: Path, runs: Path) -> bool:
    if folder == run:
        return True
    layout = RunLayout(folder)
    return layout.config.is_file() and (folder.parent == runs or layout.status.is_file())


# --- the Embedding Projector --------------------------------------------------------------
@dataclass
class ProjectorExport:
    folder: Path
    epoch: int
    shape: tuple[int, int]  # (points, feature dimensions)
    thumbnail: int | None  # side of one sprite thumbnail in pixels; None: no sprite
    no_sprite: str | None = None  # why there is no sprite


def sprite_grid(
    points: int, image_px: int, max_thumbnail: int = MAX_THUMBNAIL_PX
) -> tuple[int, int]:
    """(columns, thumbnail side) of a square sprite holding `points` thumbnails row by row
    within SPRITE_MAX_PX: the images' own size when it fits (never enlarged), else smaller."""
    columns = math.isqrt(points - 1) + 1 if points > 0 else 1
    side = min(image_px, max_thumbnail, SPRITE_MAX_PX // columns)
    if side < 1:
        raise SpriteTooLarge(
            f"{points:,} points do not fit a {SPRITE_MAX_PX}x{SPRITE_MAX_PX} sprite even at one "
            "pixel each"
        )
    return columns, side


def thumbnail(image: np.ndarray, side: int) -> np.ndarray:
    """(C, H, W) uint8 -> (side, side, 3) uint8; shrunk bilinearly (Pillow antialiases)."""
    from PIL import Image

    hwc = np.ascontiguousarray(np.transpose(image, (1, 2, 0)))
    if hwc.shape[2] == 1:
        hwc = np.repeat(hwc, 3, axis=2)
    if hwc.shape[:2] == (side, side):
        return hwc
    return np.asarray(Image.fromarray(hwc).resize((side, side), Image.Resampling.BILINEAR))


def sprite_image(images: np.ndarray, columns: int, side: int) -> np.ndarray:
    """(columns*side, columns*side, 3) uint8: thumbnail i at row i // columns, column
    i % columns; the last rows may stay black (the projector's documented layout)."""
    sheet = np.zeros((columns * side, columns * side, 3), np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        sheet[r * side : (r + 1) * side, c * side : (c + 1) * side] = thumbnail(image, side)
    return sheet


def _quote(text: str) -> str:
    """A protobuf text-format string: backslash, quote and control characters escaped."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\{ord(m[0]):03o}", escaped) + '"'


def export_projector(
    run_dir: str | Path,
    out_dir: str | Path,
    epoch: int | None = None,
    sprite: bool = True,
    max_thumbnail: int = MAX_THUMBNAIL_PX,
) -> ProjectorExport:
    """tensors.tsv, metadata.tsv, sprite.png (when the images load here) and
    projector_config.pbtxt in `out_dir`: `tensorboard --logdir out_dir` shows them."""
    run_dir, out = Path(run_dir), Path(out_dir)
    epoch, emb = snapshot(run_dir, epoch)
    names = class_names(run_dir, emb)
    features, labels, predictions = emb["features"], emb["labels"], emb["predictions"]
    n, d = features.shape
    # %.9g: float32 values read back exactly.
    write_atomic(out / TENSORS, lambda f: np.savetxt(f, features, fmt="%.9g", delimiter="\t"))
    cells = [_defused(name) for name in names]  # one line each already (class_names)
    rows = ["sample_id\tlabel\tpredicted\tcorrect"] + [
        f"{i}\t{cells[y]}\t{cells[p]}\t{'true' if y == p else 'false'}"
        for i, y, p in zip(
            emb["sample_ids"].tolist(), labels.tolist(), predictions.tolist(), strict=True
        )
    ]
    write_bytes(out / METADATA, ("\n".join(rows) + "\n").encode())

    side, why = None, None if sprite else "not asked for"
    if sprite:
        try:
            images = run_images(run_dir, emb["sample_ids"])
            columns, side = sprite_grid(n, images.shape[-1], max_thumbnail)
        except KeyError:
            why = "some sample ids are not in the run's dataset as it loads here (has it changed?)"
        except SpriteTooLarge as e:
            why = str(e)
        except (ValueError, OSError, RuntimeError) as e:  # DataError, ConfigError: ValueErrors
            why = f"the run's images cannot be found here: {e}"
        else:
            from PIL import Image

            sheet = Image.fromarray(sprite_image(images, columns, side))
            write_atomic(out / SPRITE, lambda f: sheet.save(f, format="PNG"))
    if side is None:
        (out / SPRITE).unlink(missing_ok=True)  # a previous export's, of other points

    config = [
        "embeddings {",
        f"  tensor_name: {_quote(f'{run_dir.name} epoch {epoch}')}",
        f"  tensor_path: {_quote(TENSORS)}",
        f"  metadata_path: {_quote(METADATA)}",
        f"  tensor_shape: {n}",
        f"  tensor_shape: {d}",
    ]
    if side is not None:  # single_image_dim is [width, height]
        config += ["  sprite {", f"    image_path: {_quote(SPRITE)}",
                   f"    single_image_dim: {side}", f"    single_image_dim: {side}", "  }"]  # fmt: skip
    write_bytes(out / PROJECTOR_CONFIG, ("\n".join([*config, "}"]) + "\n").encode())
    return ProjectorExport(out, epoch, (n, d), side, why)


# --- .npz and CSV ---------------------------------------------------------------------------
def export_npz(run_dir: str | Path, out: str | Path, epoch: int | None = None) -> int:
    """The snapshot's arrays plus `classes`, `epoch` and `run_id`; loads without pickle."""
    epoch, emb = snapshot(run_dir, epoch)
    classes = np.array(class_names(run_dir, emb), dtype=str)
    save_npz(
        out, **emb, classes=classes, epoch=np.int64(epoch), run_id=np.array(Path(run_dir).name)
    )
    return epoch


def _formula(cell) -> bool:
    """A text cell a spreadsheet would run: starts with = + - @ tab or CR (OWASP's list) and
    is not a number."""
    if not isinstance(cell, str) or cell[:1] not in ("=", "+", "-", "@", "\t", "\r"):
        return False
    try:
        float(cell)
    except ValueError:
        return True
    return False


def _defused(cell):
    """`cell`, with a leading apostrophe when a spreadsheet would run it as a formula."""
    return "'" + cell if _formula(cell) else cell


class _SafeWriter:
    """csv.writer whose text cells cannot become spreadsheet formulas: a cell that starts
    with = + - @ (a class name from an imported run, say) gets a leading apostrophe."""

    def __init__(self, writer) -> None:
        self._writer = writer

    def writerow(self, row) -> None:
        self._writer.writerow(_defused(c) for c in row)

    def writerows(self, rows) -> None:
        for row in rows:
            self.writerow(row)


def _write_csv(path: str | Path, write_rows) -> None:
    def write(f) -> None:
        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        write_rows(_SafeWriter(csv.writer(text)))
        text.flush()
        text.detach()  # write_atomic closes the file itself

    write_atomic(path, write)


def export_csv(run_dir: str | Path, out: str | Path, epoch: int | None = None) -> int:
    """sample_id,label,prediction,correct,f0..f{D-1}: one row per point, labels by name."""
    epoch, emb = snapshot(run_dir, epoch)
    names = class_names(run_dir, emb)
    features = emb["features"]

    def rows(w) -> None:
        w.writerow(["sample_id", "label", "prediction", "correct"]
                   + [f"f{j}" for j in range(features.shape[1])])  # fmt: skip
        points = zip(
            emb["sample_ids"].tolist(), emb["labels"].tolist(), emb["predictions"].tolist(),
            features, strict=True,
        )  # fmt: skip
        for sid, y, p, f in points:
            w.writerow([sid, names[y], names[p], int(y == p), *(f"{v:.9g}" for v in f.tolist())])

    _write_csv(out, rows)
    return epoch


METRIC_COLUMNS = ("time", "name", "split", "epoch", "step", "value")


def export_metrics(run_dir: str | Path, out: str | Path) -> int:
    """Every event of metrics.jsonl as time,name,split,epoch,step,value and any other fields
    (sorted) as extra columns; a missing field is an empty cell. Returns the row count."""
    events = read_events(RunLayout(Path(run_dir)).metrics)[0]
    extra = sorted({k for e in events for k in e} - set(METRIC_COLUMNS))
    columns = [*METRIC_COLUMNS, *extra]

    def cell(value) -> str:
        if value is None:
            return ""
        return json.dumps(value) if isinstance(value, (dict, list)) else str(value)

    def rows(w) -> None:
        w.writerow(columns)
        for e in events:
            w.writerow([cell(e.get(c)) for c in columns])

    _write_csv(out, rows)
    return len(events)


def folder_zip_bytes(folder: Path, top: str) -> bytes:
    """The files of `folder` (one level, as the projector writes them) zipped in memory under
    `top/`: what the dashboard offers as one download."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(folder.iterdir()):
            z.write(f, f"{top}/{f.name}")
    return buf.getvalue()
