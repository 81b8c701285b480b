"""Pretrained weight files: the project's cache under `checkpoints/`, offline first.

Nothing here touches the network unless `fetch` is called (by `python -m engine weights fetch`).
A backbone whose file is not cached fails at once with a message that says which file to put
where, so a run never hangs on a download.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.core.errors import WorkbenchError, first_line
from engine.core.settings import weights_dir


class WeightsError(WorkbenchError, RuntimeError):
    """A weight file is missing or unusable; the message says what to do about it."""


@dataclass(frozen=True)
class WeightFile:
    backbone: str
    url: str  # where torchvision publishes it; the file name is the URL's last part
    megabytes: float
    enum: str  # the torchvision weights enum, for people who know it by that name
    trained_on: str = "ImageNet"  # what the weights were trained on, as a message says it

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def path(self) -> Path:
        return weights_dir() / self.filename

    def cached(self) -> bool:
        return self.path().is_file()


def torchvision_weight_file(
    backbone: str, enum_name: str, trained_on: str = "ImageNet"
) -> WeightFile:
    """The file behind torchvision's weights `enum_name` (e.g. "ResNet18_Weights.IMAGENET1K_V1",
    "FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1"), its URL and size read from torchvision."""
    from torchvision.models import get_weight

    weights = get_weight(enum_name)  # any of torchvision's model modules, segmentation's too
    megabytes = float(weights.meta.get("_file_size", 0.0))
    return WeightFile(backbone, weights.url, megabytes, enum_name, trained_on)


def missing_message(wf: WeightFile) -> str:
    return (
        f"{wf.trained_on} weights for {wf.backbone} ({wf.enum}, {wf.megabytes:.0f} MB) "
        "are not cached. "
        f"Where there is a network, run `python -m engine weights fetch {wf.backbone}`; "
        f"or download {wf.url} and place it at {wf.path()}"
    )


def torch_file_problem(path: Path) -> str | None:
    """Why `path` cannot be a file torch.save wrote, from its first bytes (a zip since torch
    1.6, a pickle before), or None. torch's own errors for, say, a text file are riddles
    ("list index out of range")."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        return f"cannot be read: {e.strerror or e}"
    if not head:
        return "is empty"
    if head.startswith(b"PK") or head[:1] == b"\x80":
        return None
    return "is not a PyTorch file (torch.save writes a zip, or a pickle in old versions)"


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a weight file (or the `model` entry of a workbench checkpoint),
    loaded as data only (`weights_only=True`); a damaged file is named in the error."""
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsError(f"weight file {path} does not exist")
    if path.is_dir():
        raise WeightsError(f"weight file {path} is a folder; give the file inside it (a .pt/.pth)")
    if not path.is_file():
        raise WeightsError(f"weight file {path} is not a regular file (a device or a pipe?)")
    if problem := torch_file_problem(path):
        raise WeightsError(f"weight file {path} {problem}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, corrupt, not torch's at all, or pickled code
        raise WeightsError(
            f"weight file {path} cannot be read as PyTorch weights: {first_line(e)}"
        ) from None
    if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping):
        state = state["model"]  # a run's best.pt / last.pt
    elif isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]  # the common {"state_dict": ...} wrapping
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise WeightsError(f"{path} is not a state dict (a mapping of names to tensors)")
    return dict(state)


def load_cached(wf: WeightFile) -> dict[str, torch.Tensor]:
    if not wf.cached():
        raise WeightsError(missing_message(wf))
    return load_state_dict_file(wf.path())


def fetch(
    wf: WeightFile,
    progress: bool = True,
    timeout: float = 30.0,
    download: Callable[..., None] | None = None,
) -> Path:
    """Download `wf` into the cache (atomically: a partial download is never left as the file).
    The hash prefix in torchvision's file names is checked, as torch.hub does."""
    if wf.cached():
        return wf.path()
    from torch.hub import download_url_to_file

    download = download or download_url_to_file
    dst = wf.path()
    dst.parent.mkdir(parents=True, exist_ok=True)
    stem = wf.filename.rsplit(".", 1)[0]
    hash_prefix = stem.rsplit("-", 1)[-1] if "-" in stem else None
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # a dead network fails in seconds instead of hanging
    try:
        # download_url_to_file writes to a temporary file and renames it when the hash matches.
        download(wf.url, str(dst), hash_prefix=hash_prefix, progress=progress)
    except (OSError, RuntimeError) as e:
        raise WeightsError(
            f"could not download {wf.url}: {e}. Download it elsewhere and place it at {dst}"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)
    return dst
