"""Opening image files users bring: every file is checked for its pixel count from its header,
before a pixel is decoded, and any failure is a DataError naming the file."""

from __future__ import annotations

import os
import re
import stat
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from engine.data.datasets import DataError

# The most pixels an image file may declare. A 64-megapixel RGB image decodes to 192 MB, and a
# few are decoded at once (engine.data.sources.read_many): enough for any camera's photo or a
# DeepGlobe tile (6 MP), while a PNG of a few KB that declares 400 MP (a decompression bomb)
# is refused from its header. Below PIL's own limit (89 MP), whose warning and error this
# replaces with one line naming the file.
MAX_IMAGE_MEGAPIXELS = 64
MAX_IMAGE_PIXELS = MAX_IMAGE_MEGAPIXELS * 1_000_000

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}

# PIL warns (over 89 MP) or raises (over 179 MP) inside Image.open, before the size can be
# read; its warning is made an error while a file is opened. Opening reads only the header,
# and the warnings filters are global: one file is opened at a time.
_OPENING = threading.Lock()
_PIL_PIXELS = re.compile(r"\((\d+) pixels\)")
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError)  # what PIL raises on bad files


def _too_large(path: Path, what: str, pixels: int | None) -> DataError:
    has = f"has {pixels / 1e6:.0f} megapixels" if pixels else "has too many pixels"
    return DataError(
        f"{what} {path} {has}; at most {MAX_IMAGE_MEGAPIXELS} are read (a file that small "
        "declaring that many pixels may be a decompression bomb)"
    )


def _reason(e: BaseException) -> str:
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__


@contextmanager
def open_image(path: Path, what: str = "image") -> Iterator:
    """The PIL image in `path`, opened lazily, after its header's pixel count was checked
    against MAX_IMAGE_MEGAPIXELS; a file that cannot be opened, or that fails to decode in the
    `with` body, is a DataError naming it (`what`: "image", "mask", ...)."""
    from PIL import Image

    try:  # a FIFO would block the open forever; a device is no image
        regular = stat.S_ISREG(os.stat(path).st_mode)
    except OSError as e:
        raise DataError(f"cannot read {what} {path}: {_reason(e)}") from None
    if not regular:
        raise DataError(f"cannot read {what} {path}: it is not a regular file")
    try:
        with _OPENING, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        found = _PIL_PIXELS.search(str(e))
        raise _too_large(path, what, int(found.group(1)) if found else None) from None
    except _DECODE_ERRORS as e:
        raise DataError(f"cannot read {what} {path}: {_reason(e)}") from None
    with im:
        width, height = im.size
        if width * height > MAX_IMAGE_PIXELS:
            raise _too_large(path, what, width * height)
        try:
            yield im
        except DataError:
            raise
        except _DECODE_ERRORS as e:
            raise DataError(f"cannot read {what} {path}: {_reason(e)}") from None


def pil_to_rgb(im) -> np.ndarray:
    """(H, W, 3) uint8 of any PIL image. 16-bit images are scaled from their 0-65535 range
    (PIL's own conversion clips them at 255: nearly white), 32-bit and float ones from their
    own range; transparency is composited onto white, not dropped (a transparent pixel's
    hidden colour is not what a person sees)."""
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L"):
        a = np.asarray(im, dtype=np.float64) / 257.0  # 65535 -> 255
        return np.repeat(a.round().astype(np.uint8)[..., None], 3, axis=2)
    if im.mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
        return np.repeat(a.round().astype(np.uint8)[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(im.convert("RGB"))


def read_image(path: Path, size: int) -> torch.Tensor:
    """One image file -> (3, size, size) uint8 (any mode: see `pil_to_rgb`); a file PIL
    cannot decode, or too large, is named in the error."""
    from PIL import Image

    with open_image(path) as im:
        rgb = Image.fromarray(pil_to_rgb(im))
        arr = np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def check_image(path: Path, what: str = "image") -> tuple[int, int]:
    """(width, height) of an image file that decodes whole, at a fraction of the cost of
    decoding it: a PNG's chunks are checked (lengths and CRCs, to IEND) without inflating
    them, a JPEG is decoded at 1/8 scale (which still reads every byte of it); other
    formats are decoded. A truncated or damaged file is a DataError naming it."""
    with open_image(path, what) as im:
        size = im.size
        if im.format == "PNG":
            im.verify()
        else:
            im.draft(None, (1, 1))  # JPEG only: the smallest DCT scale
            im.load()
    return size


def preprocess(image: torch.Tensor, size: int) -> torch.Tensor:
    """(C, H, W) uint8 (any size) -> (C, size, size) float in [0, 1]: centre-cropped to a
    square, then resized, as the ImageNet models were evaluated."""
    c, h, w = image.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[:, top : top + side, left : left + side].float().unsqueeze(0) / 255.0
    out = torch.nn.functional.interpolate(
        square, size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )
    return out[0].clamp(0, 1)
