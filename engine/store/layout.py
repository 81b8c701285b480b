"""Where things live inside a run folder; the one place that knows the file names."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_EPOCH_FILE = re.compile(r"epoch_(\d{4,})\.(npz|npy)$")


def epoch_name(epoch: int, suffix: str) -> str:
    return f"epoch_{epoch:04d}{suffix}"


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def test_outcomes(self) -> Path:
        """Per test item: right or wrong, per-image IoU counts, or per-episode accuracy."""
        return self.root / "test_outcomes.json"

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def embeddings(self) -> Path:
        return self.artifacts / "embeddings"

    @property
    def confusion(self) -> Path:
        return self.artifacts / "confusion"

    @property
    def projections(self) -> Path:
        return self.artifacts / "projections"

    @property
    def masks(self) -> Path:
        return self.artifacts / "masks"

    def mask_dir(self, epoch: int) -> Path:
        """Predicted masks of the chosen validation images: `<stem>.png` in class colours."""
        return self.masks / epoch_name(epoch, "")

    @property
    def mask_inputs(self) -> Path:
        """The chosen images themselves and their ground truth: `<stem>_sat.png`, `_mask.png`."""
        return self.masks / "inputs"

    def mask_epochs(self) -> list[int]:
        if not self.masks.is_dir():
            return []
        found = (re.fullmatch(r"epoch_(\d{4,})", p.name) for p in self.masks.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def drop_snapshots_after(self, epoch: int) -> None:
        """Remove snapshots of epochs after `epoch` (a resume trains them again)."""
        import shutil

        for e in self.embedding_epochs() + self.confusion_epochs():
            if e > epoch:
                self.embedding_file(e).unlink(missing_ok=True)
                self.confusion_file(e).unlink(missing_ok=True)
        for e in self.mask_epochs():
            if e > epoch:
                shutil.rmtree(self.mask_dir(e), ignore_errors=True)

    def embedding_file(self, epoch: int) -> Path:
        return self.embeddings / epoch_name(epoch, ".npz")

    def confusion_file(self, epoch: int) -> Path:
        return self.confusion / epoch_name(epoch, ".npy")

    def embedding_epochs(self) -> list[int]:
        return _epochs_in(self.embeddings)

    def confusion_epochs(self) -> list[int]:
        return _epochs_in(self.confusion)


def _epochs_in(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    found = (_EPOCH_FILE.search(p.name) for p in folder.iterdir())
    return sorted(int(m.group(1)) for m in found if m)
