"""Reading a run's embedding snapshots (`artifacts/embeddings/epoch_NNNN.npz`) as untrusted
data: keys, shapes, types, class range and unpacked size checked before any page uses one."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from engine.core.ziplimits import unpack_ratio_problem
from engine.store.layout import RunLayout

EMBEDDING_KEYS = ("features", "labels", "sample_ids", "predictions")


def load_embedding(run_dir: str | Path, epoch: int) -> dict[str, np.ndarray]:
    """The arrays of one embedding snapshot, checked for keys and consistent shapes."""
    path = RunLayout(Path(run_dir)).embedding_file(epoch)
    if not path.is_file():
        raise FileNotFoundError(f"no embedding snapshot for epoch {epoch}: {path} does not exist")
    _check_npz_sizes(path)
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array, not named arrays")
        with loaded as npz:
            arrays = {k: npz[k] for k in EMBEDDING_KEYS if k in npz.files}
    # MemoryError: a header's shape that lies; NotImplementedError, RuntimeError: zipfile's
    # words for a member it cannot read (a damaged header, encryption)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, MemoryError,
            NotImplementedError, RuntimeError) as e:  # fmt: skip
        raise ValueError(f"{path} is not a readable embedding snapshot (.npz): {e}") from None
    missing = [k for k in EMBEDDING_KEYS if k not in arrays]
    if missing:
        raise ValueError(
            f"{path} is missing {', '.join(missing)} "
            f"(an embedding snapshot holds {', '.join(EMBEDDING_KEYS)})"
        )
    _check_embedding_shapes(path, arrays)
    _check_embedding_types(path, arrays)
    return arrays


# A snapshot is a few thousand points of a few thousand features (tens of MB): anything past
# these limits is a damaged or hostile file, not ours (it may come from a zip or a shared disk).
MAX_SNAPSHOT_BYTES = 2 * 2**30  # unpacked, all arrays together
MAX_CLASSES = 100_000  # labels and predictions are class indices below this


def _check_npz_sizes(path: Path) -> None:
    """An .npz is a zip: what its directory says it unpacks to is bounded before numpy
    unpacks it (a small file can declare gigabytes of zeros)."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
        packed = path.stat().st_size
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:
        why = getattr(e, "strerror", None) or e
        raise ValueError(f"{path} is not a readable embedding snapshot (.npz): {why}") from None
    for info in infos:  # numpy writes them stored or deflated, never encrypted or patched
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or (
            info.flag_bits & 0x61
        ):
            raise ValueError(f"{path}, member {info.filename!r}: not a readable embedding "
                              "snapshot (compressed or encrypted as numpy never writes)")  # fmt: skip
    total = sum(i.file_size for i in infos)
    if total > MAX_SNAPSHOT_BYTES:
        raise ValueError(f"{path} unpacks to {total:,} bytes, over the limit of "
                          f"{MAX_SNAPSHOT_BYTES:,} for an embedding snapshot")  # fmt: skip
    if problem := unpack_ratio_problem(infos, packed):
        why, member = problem
        raise ValueError(f"{path}" + (f", member {member.filename!r}" if member else "")
                          + f": {why}")  # fmt: skip


def _check_embedding_types(path: Path, emb: dict[str, np.ndarray]) -> None:
    """Numbers where numbers are read, class indices that index a list of names."""
    if emb["features"].dtype.kind not in "fiu":
        raise ValueError(f"{path}: features must be numbers, not {emb['features'].dtype}")
    for key in ("sample_ids", "labels", "predictions"):
        if emb[key].dtype.kind not in "iu":
            raise ValueError(f"{path}: {key} must be whole numbers, not {emb[key].dtype}")
    for key in ("labels", "predictions"):
        values = emb[key]
        if values.size and not (values.min() >= 0 and values.max() < MAX_CLASSES):
            raise ValueError(
                f"{path}: {key} must be class indices from 0 to {MAX_CLASSES - 1:,}, found "
                f"{values.min()} to {values.max()}"
            )


def _check_embedding_shapes(path: Path, arrays: dict[str, np.ndarray]) -> None:
    features = arrays["features"]
    if features.ndim != 2:
        raise ValueError(f"{path}: features must be 2-D (N, D), got shape {features.shape}")
    n = features.shape[0]
    for key in EMBEDDING_KEYS[1:]:
        if arrays[key].shape != (n,):
            raise ValueError(
                f"{path}: {key} must have shape ({n},) to match features, got {arrays[key].shape}"
            )


# What names the images a snapshot's sample ids point into: two runs whose data agree on these
# number the same images the same way (image size and augmentation do not change which).
SAME_IMAGES_KEYS = ("name", "path", "val_path", "val_fraction", "test_fraction", "split_seed",
                    "classes", "imbalance_ratio", "class_counts")  # fmt: skip


def linked_rows(data_a: dict, ids_a: np.ndarray, data_b: dict, ids_b: np.ndarray) -> np.ndarray:
    """For each row of snapshot A, the row of snapshot B that holds the same image, so that a
    selection in one view can be shown in the other. ValueError, saying why, when the two
    cannot be linked: different data, or snapshots of different images."""
    differ = [k for k in SAME_IMAGES_KEYS if data_a.get(k) != data_b.get(k)]
    if differ:
        shown = "; ".join(f"{k}: {data_a.get(k)!r} vs {data_b.get(k)!r}" for k in differ)
        raise ValueError(f"the two runs were trained on different data ({shown}): the same "
                         "sample number is not the same image")  # fmt: skip
    ids_a, ids_b = np.asarray(ids_a), np.asarray(ids_b)
    for ids in (ids_a, ids_b):
        if len(np.unique(ids)) != len(ids):
            raise ValueError(f"a snapshot lists the same sample more than once ({len(ids)} "
                             f"points, {len(np.unique(ids))} different samples): its points "
                             "cannot be linked one to one")  # fmt: skip
    order = np.argsort(ids_b, kind="stable")
    where = np.searchsorted(ids_b, ids_a, sorter=order).clip(0, max(len(ids_b) - 1, 0))
    found = len(ids_b) > 0 and (ids_b[order[where]] == ids_a)
    if len(ids_a) != len(ids_b) or not np.all(found):
        missing = int(len(ids_a) - np.count_nonzero(found)) if len(ids_b) else len(ids_a)
        raise ValueError(f"the snapshots hold different images ({len(ids_a)} and {len(ids_b)} "
                         f"points, {missing} of the first not in the second; a different "
                         "snapshot size?): their points cannot be linked")  # fmt: skip
    return order[where]
