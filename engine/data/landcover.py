"""Land-cover segmentation data (DLCV HW1 problem 3): DeepGlobe-style `xxxx_sat.jpg` /
`xxxx_mask.png` pairs, and a deterministic generator of synthetic scenes in the same format.

Masks are RGB; each channel is thresholded at 128 and the colour names one of seven classes.
Of the eight colours that thresholding can give, only red is outside the map: the course's
reader maps it to Unknown, like black, and so does this one (the data summary says how many
pixels were red).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from engine.data.datasets import DataError, ImageSet, Splits, resize_uint8
from engine.data.images import check_image, open_image, pil_to_rgb
from engine.data.sources import _entries, check_bounds, read_many

CLASS_NAMES = ("Urban", "Agriculture", "Rangeland", "Forest", "Water", "Barren", "Unknown")
CLASS_COLOURS = (
    (0, 255, 255),  # Urban: cyan
    (255, 255, 0),  # Agriculture: yellow
    (255, 0, 255),  # Rangeland: magenta
    (0, 255, 0),  # Forest: green
    (0, 0, 255),  # Water: blue
    (255, 255, 255),  # Barren: white
    (0, 0, 0),  # Unknown: black
)
UNKNOWN = 6
SCORED_CLASSES = list(CLASS_NAMES[:UNKNOWN])  # mean IoU is over these six

# Thresholded colour -> class, indexed by 4*R + 2*G + B (each 0 or 1). Red (code 4) is not in
# the map; the course's reader makes it Unknown.
RED = 4
_CODE_TO_CLASS = np.full(8, UNKNOWN, dtype=np.int16)
for _label, (_r, _g, _b) in enumerate(CLASS_COLOURS):
    _CODE_TO_CLASS[4 * (_r >= 128) + 2 * (_g >= 128) + (_b >= 128)] = _label

_SAT = re.compile(r"^(?P<stem>.+)_sat\.(jpg|jpeg|png)$", re.IGNORECASE)
_MASK = re.compile(r"^(?P<stem>.+)_mask\.png$", re.IGNORECASE)
SPLIT_FOLDERS = {"train": ("train",), "val": ("validation", "val", "valid"), "test": ("test",)}


def _codes(rgb: np.ndarray) -> np.ndarray:
    bits = rgb[..., :3] >= 128
    return 4 * bits[..., 0] + 2 * bits[..., 1] + bits[..., 2]


def mask_to_labels(rgb: np.ndarray, source: str | Path = "mask") -> np.ndarray:
    """(H, W, 3) uint8 colour mask -> (H, W) uint8 class indices 0..6 (red: Unknown)."""
    return _CODE_TO_CLASS[_codes(rgb)].astype(np.uint8)


def red_pixels(rgb: np.ndarray) -> int:
    """How many pixels of the mask are red after thresholding (read as Unknown)."""
    return int((_codes(rgb) == RED).sum())


def labels_to_rgb(labels: np.ndarray) -> np.ndarray:
    """(..., H, W) class indices 0..6 -> (..., H, W, 3) uint8 colours."""
    return np.asarray(CLASS_COLOURS, dtype=np.uint8)[np.asarray(labels, dtype=np.int64)]


# --- reading pairs ---------------------------------------------------------------------------
def find_pairs(folder: Path) -> list[tuple[str, Path, Path]]:
    """(stem, sat file, mask file) of every pair in `folder`, sorted; a half without its
    other half is an error that names it."""
    sats, masks = {}, {}
    for p in _entries(folder):
        if m := _SAT.match(p.name):
            sats[m.group("stem")] = p
        elif m := _MASK.match(p.name):
            masks[m.group("stem")] = p
    for stem in sorted(sats.keys() ^ masks.keys()):
        have = sats.get(stem) or masks[stem]
        lacking = f"{stem}_mask.png" if stem in sats else f"{stem}_sat.jpg"
        raise DataError(f"{have} has no partner: {lacking} is missing in {folder}")
    if not sats:
        raise DataError(f"{folder} holds no xxxx_sat.jpg / xxxx_mask.png pairs")
    return [(stem, sats[stem], masks[stem]) for stem in sorted(sats)]


# Masks are colour images; a one-channel mask (class numbers 0..6, or grey levels) would be
# read as all black, Unknown everywhere, without a word.
MASK_MODES = ("RGB", "RGBA", "RGBX", "P", "PA")


def _colour_mask(im, mask: Path) -> None:
    if im.mode not in MASK_MODES:
        raise DataError(
            f"mask {mask} is not a colour image (PIL mode {im.mode}); masks are RGB colour "
            "images (cyan Urban, yellow Agriculture, magenta Rangeland, green Forest, blue "
            "Water, white Barren, black Unknown)"
        )


def _same_size(sat: Path, width_height: tuple[int, int], mask: Path, mask_wh: tuple[int, int]):
    if width_height != mask_wh:
        (w, h), (mw, mh) = width_height, mask_wh
        raise DataError(
            f"{sat} is {w}x{h} but its mask {mask} is {mw}x{mh}; they must be the same size"
        )


def read_pair(
    sat: Path, mask: Path, size: int, red: list[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """-> image (3, size, size) uint8 and labels (size, size) uint8 (nearest-neighbour).
    `red`: a list to which the mask's count of red pixels (read as Unknown) is appended."""
    from PIL import Image

    with open_image(sat) as im:
        image = pil_to_rgb(im)  # (H, W, 3) uint8
    with open_image(mask, "mask") as im:
        _colour_mask(im, mask)
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    _same_size(sat, image.shape[1::-1], mask, rgb.shape[1::-1])
    labels = mask_to_labels(rgb, mask)
    if red is not None:
        red.append(red_pixels(rgb))
    x = resize_uint8(torch.from_numpy(image.copy()).permute(2, 0, 1)[None], size)[0]
    if labels.shape != (size, size):
        labels = np.asarray(Image.fromarray(labels).resize((size, size), Image.Resampling.NEAREST))
    return x, torch.from_numpy(labels.copy())


def read_pairs(
    folder: Path, size: int, within: Path | None = None, red: list[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Every pair in `folder`: images (N, 3, S, S) uint8, masks (N, S, S) uint8, stems. Every
    file must lie in `within` (default: `folder`) or under a data root. `red`: each mask's
    count of red pixels is appended to it."""
    pairs = find_pairs(folder)
    check_bounds([p for _, sat, mask in pairs for p in (sat, mask)], within or folder)
    read = read_many(lambda p: read_pair(p[1], p[2], size, red), pairs)
    return (
        torch.stack([r[0] for r in read]),
        torch.stack([r[1] for r in read]),
        [stem for stem, _, _ in pairs],
    )


def check_pairs(root: Path) -> None:
    """Before a run: every pair complete, in bounds, both files whole (see `check_image`) and
    of one size, and a folder without splits large enough to split. The masks' colours are
    read by the run."""

    def check(pair: tuple[str, Path, Path]) -> None:
        _, sat, mask = pair
        with open_image(mask, "mask") as im:
            _colour_mask(im, mask)
        _same_size(sat, check_image(sat), mask, check_image(mask, "mask"))

    folders = split_folders(root)
    for folder in folders.values() or [root]:
        pairs = find_pairs(folder)
        if not folders and len(pairs) < 3:
            raise DataError(f"{root} holds {len(pairs)} pair(s): too few to split into "
                            "train/val/test")  # fmt: skip
        check_bounds([p for _, sat, mask in pairs for p in (sat, mask)], root)
        read_many(check, pairs)


def split_folders(root: Path) -> dict[str, Path]:
    """train/ and validation/ (or val/), optionally test/, as in the course; {} when
    the pairs lie directly in `root`."""
    found = {}
    for split, names in SPLIT_FOLDERS.items():
        for name in names:
            if (root / name).is_dir():
                found[split] = root / name
                break
    if found and "train" not in found:
        raise DataError(f"{root} has {', '.join(p.name for p in found.values())}/ but no train/")
    if found and "val" not in found:
        raise DataError(f"{root} has train/ but no validation/ (or val/) folder")
    return found


def load_landcover(
    root: str | Path, size: int, val_fraction: float, test_fraction: float, seed: int, source: str
) -> Splits:
    """Splits whose labels are (N, S, S) masks; `Splits.names[id]` is each pair's stem.

    With train/ and validation/ folders (and no test/), the test split is the validation
    split, and the source says so: the seed reports its mIoU on validation.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"land-cover folder {root} does not exist or is not a folder")
    folders = split_folders(root)
    parts, names, red = {}, [], []
    if folders:
        for split, folder in folders.items():
            x, y, stems = read_pairs(folder, size, within=root, red=red)
            ids = torch.arange(len(names), len(names) + len(stems))
            parts[split] = ImageSet(x, y, ids)
            names += stems
        if "test" not in parts:
            parts["test"] = parts["val"]
            source += " (no test/ folder: the test split is validation/)"
    else:
        x, y, names = read_pairs(root, size, red=red)
        n = len(names)
        n_val, n_test = max(1, round(val_fraction * n)), max(1, round(test_fraction * n))
        if n - n_val - n_test < 1:
            raise DataError(f"{root} holds {n} pair(s): too few to split into train/val/test")
        order = np.random.default_rng(seed).permutation(n)
        full = ImageSet(x, y, torch.arange(n))
        parts["test"] = full.subset(np.sort(order[:n_test]))
        parts["val"] = full.subset(np.sort(order[n_test : n_test + n_val]))
        parts["train"] = full.subset(np.sort(order[n_test + n_val :]))
    if sum(red):
        source += (f"; {sum(red):,} red mask pixel(s) in {sum(1 for n in red if n)} mask(s) read "
                   "as Unknown, as the course's reader does")  # fmt: skip
    return Splits(
        parts["train"], parts["val"], parts["test"], list(SCORED_CLASSES), source, names=names
    )


# --- the synthetic default -------------------------------------------------------------------
SYNTHETIC_VERSION = 2  # part of the folder name: a changed generator writes a new folder
SYNTHETIC_COUNTS = {"train": 240, "validation": 60, "test": 60}
SYNTHETIC_SIZE = 128
# How often each class seeds a region (Urban, Agriculture, Rangeland, Forest, Water, Barren).
_REGION_WEIGHTS = np.array([0.14, 0.26, 0.2, 0.2, 0.08, 0.12])


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a random (cells+1)^2 grid, bicubically upsampled."""
    from PIL import Image

    grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
    up = Image.fromarray(grid, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(up), 0, 1)


def synthetic_scene(index: int, size: int = SYNTHETIC_SIZE, seed: int = 0):
    """One deterministic scene: (image (S, S, 3) uint8, labels (S, S) uint8).

    Regions are a warped Voronoi partition, each of one class; rivers cut through some
    scenes and a black no-data corner (Unknown) sits in a few. Each class has its own texture
    (striped fields, speckled forest canopy, building blocks, smooth water), and every scene
    has its own tint and brightness, so colour alone does not give the answer away.
    """
    rng = np.random.default_rng([seed, index, SYNTHETIC_VERSION])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    k = int(rng.integers(4, 9))
    centres = rng.random((k, 2)) * size
    region_class = rng.choice(6, size=k, p=_REGION_WEIGHTS / _REGION_WEIGHTS.sum())
    dist = np.stack(
        [
            np.hypot(yy - cy, xx - cx) + 0.35 * size * _smooth_noise(rng, size, 4)
            for cy, cx in centres
        ]
    )
    region = dist.argmin(0)
    labels = region_class[region].astype(np.uint8)
    if rng.random() < 0.45:  # a river
        phase, freq = rng.random() * 6.3, 1.5 + rng.random() * 2.5
        centre = size * (0.2 + 0.6 * rng.random())
        width = size * (0.03 + 0.04 * rng.random())
        along, across = (xx, yy) if rng.random() < 0.5 else (yy, xx)  # west-east or north-south
        line = centre + 0.12 * size * np.sin(freq * 2 * np.pi * along / size + phase)
        labels[np.abs(across - line) < width] = 4
    unknown = np.zeros((size, size), dtype=bool)
    if rng.random() < 0.15:  # a no-data wedge at a corner, as at the edge of a satellite tile
        flip_y, flip_x = rng.random() < 0.5, rng.random() < 0.5
        ty, tx = (size - 1 - yy if flip_y else yy), (size - 1 - xx if flip_x else xx)
        unknown = ty + tx < size * (0.15 + 0.2 * rng.random())
        labels[unknown] = UNKNOWN

    img = np.zeros((size, size, 3), dtype=np.float32)
    fine = rng.random((size, size)).astype(np.float32)  # pixel noise
    for r in range(k):
        img[region == r] = _texture(int(region_class[r]), rng, yy, xx, fine, size)[region == r]
    water = labels == 4
    img[water] = _texture(4, rng, yy, xx, fine, size)[water]
    tint = 1 + 0.12 * (rng.random(3) - 0.5)
    img = img * tint * (0.85 + 0.3 * rng.random())
    img[unknown] = 0
    return np.clip(img, 0, 255).astype(np.uint8), labels


def _texture(cls: int, rng, yy, xx, fine, size) -> np.ndarray:
    """A (S, S, 3) float texture of land-cover class `cls`, drawn for the whole scene."""

    def shade(base, spread, field):
        return np.asarray(base, np.float32) + spread * (field[..., None] - 0.5)

    if cls == 0:  # Urban: grey blocks with darker streets
        block = int(rng.integers(5, 9))
        streets = ((yy % block) < 1.5) | ((xx % block) < 1.5)
        roofs = _smooth_noise(rng, size, size // block)
        t = shade((150, 150, 158), 90, roofs)
        t[streets] = (95, 95, 100)
        return t + 20 * (fine[..., None] - 0.5)
    if cls == 1:  # Agriculture: fields of parallel stripes
        angle = rng.random() * np.pi
        period = 4 + rng.random() * 5
        phase = (np.cos(angle) * xx + np.sin(angle) * yy) / period
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * phase)
        base = [(176, 168, 92), (132, 158, 78), (196, 176, 122)][int(rng.integers(3))]
        return shade(base, 60, stripes) + 14 * (fine[..., None] - 0.5)
    if cls == 2:  # Rangeland: pale olive, fine grass speckle
        return shade((158, 154, 104), 40, _smooth_noise(rng, size, 16)) + 36 * (
            fine[..., None] - 0.5
        )
    if cls == 3:  # Forest: dark green canopy, blotchy
        crowns = _smooth_noise(rng, size, size // 3)
        return shade((44, 86, 44), 70, crowns) + 18 * (fine[..., None] - 0.5)
    if cls == 4:  # Water: dark blue, smooth
        return shade((32, 62, 104), 24, _smooth_noise(rng, size, 3)) + 6 * (fine[..., None] - 0.5)
    # Barren: sandy, low-frequency variation
    return shade((204, 184, 150), 50, _smooth_noise(rng, size, 6)) + 16 * (fine[..., None] - 0.5)


def data_root() -> Path:
    """Where generated data lives: $WORKBENCH_DATA_DIR, or the project's data/ folder."""
    from engine.core.settings import REPO_ROOT

    return Path(os.environ.get("WORKBENCH_DATA_DIR") or REPO_ROOT / "data")


def synthetic_landcover_dir(size: int = SYNTHETIC_SIZE, seed: int = 0) -> Path:
    """The synthetic scenes as DeepGlobe-style files, generated on first use.

    The folder appears all at once (written beside it, then renamed): a run reading it never
    sees half of it, and two runs generating it at the same time both end with one copy.
    """
    counts = "-".join(str(n) for n in SYNTHETIC_COUNTS.values())
    target = data_root() / "generated" / f"landcover-v{SYNTHETIC_VERSION}-{size}px-{counts}-s{seed}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".landcover-", dir=target.parent))
    try:
        write_synthetic_landcover(tmp, size, seed)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first: its copy is identical
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def write_synthetic_landcover(folder: Path, size: int = SYNTHETIC_SIZE, seed: int = 0) -> Path:
    """train/, validation/ and test/ folders of `xxxx_sat.jpg` / `xxxx_mask.png` pairs."""
    from PIL import Image

    index = 0
    for split, n in SYNTHETIC_COUNTS.items():
        out = Path(folder) / split
        out.mkdir(parents=True, exist_ok=True)
        for _ in range(n):
            image, labels = synthetic_scene(index, size, seed)
            Image.fromarray(image).save(out / f"{index:04d}_sat.jpg", quality=92)
            Image.fromarray(labels_to_rgb(labels)).save(out / f"{index:04d}_mask.png")
            index += 1
    return Path(folder)
