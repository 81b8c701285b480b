"""Export: a snapshot's embeddings for TensorBoard's Embedding Projector, as .npz or as CSV;
the metrics as CSV. A whole run folder as a zip, and its import: engine.archive."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.atomic import save_npz, write_atomic, write_bytes
from engine.config import ConfigError
from engine.layout import RunLayout, epoch_name
from engine.runs import load_config, read_status
from engine.train.events import read_events

# The Embedding Projector's files (TensorBoard reads paths relative to the config's folder).
TENSORS, METADATA, SPRITE, PROJECTOR_CONFIG = (
    "tensors.tsv", "metadata.tsv", "sprite.png", "projector_config.pbtxt",
)  # fmt: skip
SPRITE_MAX_PX = 8192  # the projector's documented limit on each side of the sprite
MAX_THUMBNAIL_PX = 64  # larger thumbnails only make the sprite heavy: points are drawn small
EXPORTS = "exports"  # default outputs, inside the run folder


class SpriteTooLarge(ValueError):
    """More points than thumbnails of one pixel fit in the projector's sprite."""


# --- snapshots ----------------------------------------------------------------------------
def snapshot(run_dir: str | Path, epoch: int | None = None) -> tuple[int, dict[str, np.ndarray]]:
    """The epoch (default: the last) and arrays of one of the run's embedding snapshots."""
    from engine.analysis.projections import load_embedding

    epochs = RunLayout(Path(run_dir)).embedding_epochs()
    if not epochs:
        raise ConfigError(f"{Path(run_dir).name} has no embedding snapshots yet")
    epoch = epochs[-1] if epoch is None else epoch
    if epoch not in epochs:
        raise ConfigError(f"no snapshot at epoch {epoch}; snapshots exist at epochs {epochs}")
    return epoch, load_embedding(run_dir, epoch)


def class_names(run_dir: str | Path, emb: dict[str, np.ndarray]) -> list[str]:
    """The run's class names (status.json, written when its data loaded), else 0..n-1."""
    n = int(max(emb["labels"].max(initial=-1), emb["predictions"].max(initial=-1))) + 1
    status = read_status(run_dir)
    names = status.get("classes") or (status.get("summary") or {}).get("classes")
    if isinstance(names, list) and len(names) >= n:
        return [re.sub(r"[\t\r\n]", " ", str(c)) for c in names]  # one TSV cell each
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
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


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
    rows = ["sample_id\tlabel\tpredicted\tcorrect"] + [
        f"{i}\t{names[y]}\t{names[p]}\t{'true' if y == p else 'false'}"
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
    """A text cell a spreadsheet would run: starts with = + - @ and is not a number."""
    if not isinstance(cell, str) or cell[:1] not in ("=", "+", "-", "@"):
        return False
    try:
        float(cell)
    except ValueError:
        return True
    return False


class _SafeWriter:
    """csv.writer whose text cells cannot become spreadsheet formulas: a cell that starts
    with = + - @ (a class name from an imported run, say) gets a leading apostrophe."""

    def __init__(self, writer) -> None:
        self._writer = writer

    def writerow(self, row) -> None:
        self._writer.writerow("'" + c if _formula(c) else c for c in row)

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
