"""Run folders made without training, and zip surgery, shared by the hostile-archive tests
(tests/unit/hostile: its conftest.py imports the `present` fixture)."""

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from engine.store.layout import RunLayout

RUN_ID = "20260101-120000-small_cnn-abc123"
CONFIG = json.dumps({"model": {"name": "small_cnn"}, "epochs": 1}).encode()
EVENT = {"time": 1.0, "name": "loss/train", "value": 0.5, "split": "train", "epoch": 1, "step": 1}


def snapshot_arrays(n: int = 6, d: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "features": rng.normal(size=(n, d)).astype(np.float32),
        "labels": np.arange(n) % 3,
        "sample_ids": np.arange(100, 100 + n),
        "predictions": (np.arange(n) + 1) % 3,
    }


def make_run(runs_dir: Path, run_id: str = RUN_ID, classes=("a", "b", "c"), **arrays) -> Path:
    """A run folder as training leaves it, without training: config, status, metrics, a
    checkpoint and one embedding snapshot (epoch 1) of `arrays` over the defaults."""
    run = runs_dir / run_id
    layout = RunLayout(run)
    layout.checkpoints.mkdir(parents=True)
    layout.embeddings.mkdir(parents=True)
    layout.config.write_bytes(CONFIG)
    status = {"state": "finished", "created": 1.0, "classes": list(classes)}
    layout.status.write_text(json.dumps(status))
    layout.metrics.write_text(json.dumps(EVENT) + "\n")
    layout.last_checkpoint.write_bytes(b"weights")
    np.savez_compressed(layout.embedding_file(1), **{**snapshot_arrays(), **arrays})
    return run


def checksums(folder: Path) -> dict[str, str | None]:
    """Every path under `folder` (hidden ones too) with its sha256 (None for a folder)."""
    if not folder.exists():
        return {}
    return {
        p.relative_to(folder).as_posix(): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
        )
        for p in sorted(folder.rglob("*"))
    }


def patch_member(path: Path, member: str, method: int | None = None, flags: int = 0) -> None:
    """Rewrite `member`'s compression method and OR `flags` into its general-purpose flags,
    in both its local and its central directory header, as a hostile zip would have them."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    for signature, flag_at, method_at, name_at in (
        (b"PK\x03\x04", 6, 8, 30),  # local file header
        (b"PK\x01\x02", 8, 10, 46),  # central directory header
    ):
        at = 0
        while (at := data.find(signature, at)) >= 0:
            if data[at + name_at : at + name_at + len(name)] == name:
                old_flags, old_method = struct.unpack_from("<HH", data, at + flag_at)
                struct.pack_into("<H", data, at + flag_at, old_flags | flags)
                struct.pack_into(
                    "<H", data, at + method_at, old_method if method is None else method
                )
            at += 4
    path.write_bytes(bytes(data))


@pytest.fixture
def present(runs_dir) -> Path:
    """A run already in the runs folder, which no import may touch."""
    return make_run(runs_dir, "20250101-000000-small_cnn-000000")
